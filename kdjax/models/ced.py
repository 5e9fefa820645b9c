"""CED audio transformer (Dinkel et al., "Consistent Ensemble Distillation") as a Flax NNX module.

Waveform -> log-mel (kdjax.audio.log_mel) -> BatchNorm over mel bins -> 16x16 patches -> separate
frequency and time position embeddings -> pre-LN ViT blocks -> final LayerNorm. Tokens come out in
(frequency, time) order, token = f * T + t, as in the released model, so windows over the flattened
sequence (LOAE's Q-Former) see the same neighbours.

The attention has separate q/k/v projections (the checkpoint's fused `qkv` is split at load time and
fused again on save, see kdjax.convert.ced) so that LoRA can target q and v alone, as LOAE does.
Submodule names otherwise follow the PyTorch state dict.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from kdjax.models import invariants
from kdjax.audio import features
from kdjax.models.layers import masked_mean, pool_mask
from kdjax.models.vit import BLOCK_LOGICAL_AXES, Block, _linear, _norm

# Logical axes per parameter path (kdjax.train.sharding); unmatched parameters are replicated.
LOGICAL_AXES = BLOCK_LOGICAL_AXES

SIZES = {  # name -> (embed_dim, num_heads); all sizes have depth 12
    "ced_tiny": (192, 3),
    "ced_mini": (256, 4),
    "ced_small": (384, 6),
    "ced_base": (768, 12),
}


@dataclasses.dataclass(frozen=True)
class CedConfig:
    embed_dim: int = 768
    num_heads: int = 12
    depth: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 16
    target_length: int = 1012  # frames per chunk; 63 time patches
    num_classes: int = 527  # AudioSet head; 0 drops the head
    layer_norm_eps: float = 1e-6
    bn_momentum: float = 0.01  # PyTorch convention: new = (1 - m) * old + m * batch
    # front end (kdjax.audio.log_mel)
    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 512
    hop_length: int = 160
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float = 8000.0
    top_db: float | None = 120.0
    top_db_scope: str = "example"  # "batch" reproduces torchaudio on 3-D input
    # long inputs: "mean" averages chunk outputs (CED), "concat" concatenates chunk tokens (LOAE)
    chunk_mode: str = "mean"
    dropout: float = 0.0
    dtype: Any = jnp.float32  # compute dtype; parameters stay float32

    def __post_init__(self):
        invariants.positive(self, "patch_size", "target_length", "sample_rate", "n_fft", "win_length", "hop_length",
                            "n_mels")
        invariants.non_negative(self, "depth", "num_classes")
        invariants.multiple(self, "embed_dim", "num_heads")
        invariants.fraction(self, "dropout")

    @classmethod
    def preset(cls, name: str, **overrides) -> "CedConfig":
        if name not in SIZES:
            raise ValueError(f"unknown CED size {name!r}; known: {', '.join(SIZES)}")
        dim, heads = SIZES[name]
        return cls(embed_dim=dim, num_heads=heads, **overrides)

    @property
    def freq_patches(self) -> int:
        return self.n_mels // self.patch_size

    @property
    def time_patches(self) -> int:
        return self.target_length // self.patch_size

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    def frames(self, samples: int) -> int:
        """Mel frames the front end makes from `samples` (center=True)."""
        return 1 + samples // self.hop_length

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["dtype"] = jnp.dtype(self.dtype).name
        return d

    @classmethod
    def from_json(cls, d: dict) -> "CedConfig":
        d = dict(d)
        if "dtype" in d:
            d["dtype"] = jnp.dtype(d["dtype"])
        return cls(**d)


class PatchEmbed(nnx.Module):
    def __init__(self, cfg: CedConfig, rngs: nnx.Rngs):
        p = cfg.patch_size
        self.proj = nnx.Conv(1, cfg.embed_dim, (p, p), strides=(p, p), padding="VALID", dtype=cfg.dtype,
                             rngs=rngs)

    def __call__(self, mel: jax.Array) -> jax.Array:
        """(b, n_mels, frames) -> (b, F, T, d)."""
        return self.proj(mel[..., None])


class OutputLayer(nnx.Module):
    """AudioSet head: LayerNorm + Linear on the mean token (`outputlayer.0`, `outputlayer.1`)."""

    def __init__(self, cfg: CedConfig, rngs: nnx.Rngs):
        self.layers = nnx.List([_norm(cfg.embed_dim, cfg, rngs),
                                _linear(cfg.embed_dim, cfg.num_classes, cfg, rngs)])

    def __call__(self, x):
        return self.layers[1](self.layers[0](x))


class CED(nnx.Module):
    """CED encoder. Call on waveforms (b, samples) or, with `mel=`, on log-mel (b, n_mels, frames).

    Returns a dict with Hugging Face-style names:
      last_hidden_state  (b, F*T, d) tokens after the final LayerNorm, (f t) order
      pooler_output      (b, d) mean token (over valid tokens when a mask is given)
      token_mask         (b, F*T) bool, tokens that see at least one real frame
      hidden_states      tuple of (b, F*T, d) per block input + final, when output_hidden_states
      logits             (b, num_classes) AudioSet logits, when the model has a head
    """

    def __init__(self, cfg: CedConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        d = cfg.embed_dim
        # BatchNorm2d over mel bins with the mel axis as channels; momentum in flax is the keep rate.
        self.init_bn = nnx.BatchNorm(cfg.n_mels, momentum=1.0 - cfg.bn_momentum, epsilon=1e-5,
                                     dtype=jnp.float32, rngs=rngs)
        self.patch_embed = PatchEmbed(cfg, rngs)
        init = nnx.initializers.truncated_normal(0.02)
        self.time_pos_embed = nnx.Param(init(rngs.params(), (1, 1, cfg.time_patches, d)))
        self.freq_pos_embed = nnx.Param(init(rngs.params(), (1, cfg.freq_patches, 1, d)))
        self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.depth)])
        self.norm = _norm(d, cfg, rngs)
        self.outputlayer = OutputLayer(cfg, rngs) if cfg.num_classes else None

    def front_end(self, wave: jax.Array) -> jax.Array:
        c = self.cfg
        return features.log_mel(wave, c.sample_rate, c.n_fft, c.win_length, c.hop_length, c.n_mels, c.f_min, c.f_max,
                       c.top_db, top_db_scope=c.top_db_scope)

    def _encode_chunk(self, mel, frame_mask, *, attend_to_padding, deterministic, rngs,
                      output_hidden_states):
        """mel (b, n_mels, frames <= target_length) after BatchNorm -> outputs of one chunk."""
        c = self.cfg
        x = self.patch_embed(mel.astype(c.dtype))  # (b, F, T, d)
        b, f, t = x.shape[:3]
        if t > c.time_patches:
            raise ValueError(f"chunk has {t} time patches, the model has {c.time_patches}")
        x = x + self.time_pos_embed[:, :, :t].astype(c.dtype) + self.freq_pos_embed.astype(c.dtype)
        x = x.reshape(b, f * t, -1)
        tok_mask = None
        if frame_mask is not None:
            tmask = pool_mask(frame_mask, c.patch_size)[:, :t]  # (b, T)
            tok_mask = jnp.broadcast_to(tmask[:, None, :], (b, f, t)).reshape(b, f * t)
        attn_mask = None if attend_to_padding else tok_mask
        hidden = [x]
        for blk in self.blocks:
            x = blk(x, attn_mask, deterministic=deterministic, rngs=rngs)
            hidden.append(x)
        x = self.norm(x)
        out = {"last_hidden_state": x, "pooler_output": masked_mean(x, tok_mask),
               "token_mask": jnp.ones((b, f * t), bool) if tok_mask is None else tok_mask}
        if output_hidden_states:
            out["hidden_states"] = tuple(hidden[:-1]) + (x,)
        if self.outputlayer is not None:
            out["logits"] = self.outputlayer(out["pooler_output"])
        return out

    def __call__(self, wave: jax.Array | None = None, mask: jax.Array | None = None, *,
                 mel: jax.Array | None = None, deterministic: bool = True, rngs: nnx.Rngs | None = None,
                 output_hidden_states: bool = False, use_running_average: bool | None = None,
                 attend_to_padding: bool = True) -> dict[str, Any]:
        """`mask` marks real samples (with `wave`) or frames (with `mel`); tokens that see no real frame
        are left out of `pooler_output` and `logits` and flagged in `token_mask`. Without a mask every
        token counts, as in the released CED. The released CED also attends to padding;
        `attend_to_padding=False` masks padded tokens out of the attention. BatchNorm uses batch
        statistics when not `deterministic` (training) unless `use_running_average` says otherwise."""
        c = self.cfg
        if (wave is None) == (mel is None):
            raise ValueError("pass exactly one of wave or mel")
        if mel is None:
            mel = self.front_end(wave)
            frame_mask = None if mask is None else features.frame_mask(mask, mel.shape[-1], c.hop_length)
        else:
            frame_mask = mask
        if use_running_average is None:
            use_running_average = deterministic
        # BatchNorm features are the mel bins: (b, mel, frames) -> (b, frames, mel) and back
        mel = jnp.swapaxes(self.init_bn(jnp.swapaxes(mel, 1, 2), use_running_average=use_running_average),
                           1, 2)
        kw = dict(attend_to_padding=attend_to_padding, deterministic=deterministic, rngs=rngs,
                  output_hidden_states=output_hidden_states)
        b, m, frames = mel.shape
        if frames <= c.target_length:
            return self._encode_chunk(mel, frame_mask, **kw)
        # Long input: chunks of target_length frames, the last zero-padded after BatchNorm (as CED),
        # encoded as one batch of n * b.
        n = math.ceil(frames / c.target_length)
        pad = n * c.target_length - frames
        to_chunks = lambda x: jnp.moveaxis(
            jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, pad)]).reshape(*x.shape[:-1], n, c.target_length),
            -2, 0).reshape(n * b, *x.shape[1:-1], c.target_length)
        fm = None if frame_mask is None else to_chunks(frame_mask.astype(bool))
        out = self._encode_chunk(to_chunks(mel), fm, **kw)
        split = lambda x: x.reshape(n, b, *x.shape[1:])
        if c.chunk_mode == "mean":
            res = {k: split(v).mean(axis=0) for k, v in out.items()
                   if k in ("last_hidden_state", "pooler_output", "logits")}
            res["token_mask"] = split(out["token_mask"]).any(axis=0)
            if output_hidden_states:
                res["hidden_states"] = tuple(split(h).mean(axis=0) for h in out["hidden_states"])
        elif c.chunk_mode == "concat":
            cat = lambda x: jnp.moveaxis(split(x), 0, 1).reshape(b, n * x.shape[1], *x.shape[2:])
            res = {"last_hidden_state": cat(out["last_hidden_state"]), "token_mask": cat(out["token_mask"])}
            res["pooler_output"] = masked_mean(res["last_hidden_state"],
                                                None if frame_mask is None else res["token_mask"])
            if "logits" in out:
                res["logits"] = split(out["logits"]).mean(axis=0)
            if output_hidden_states:
                res["hidden_states"] = tuple(cat(h) for h in out["hidden_states"])
        else:
            raise ValueError(f"chunk_mode must be 'mean' or 'concat', got {c.chunk_mode!r}")
        return res
