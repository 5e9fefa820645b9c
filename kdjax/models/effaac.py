"""EffAAC's student "EffNet-Trm" (seed 002, Table 2; ../shared/reference/effaac.md): log-mel front end,
EfficientNet-B2 over the (mel, frames) image with one input channel, frequency-averaged to a (frames/32,
1408) sequence, and a 2-layer post-LN Transformer caption decoder (kdjax.models.caption_decoder).

Encoder-level KD heads live here too, since they are trained with the student:
- contrastive (paper eq. 6): `student_proj` and `teacher_proj` map the mean-pooled embeddings to a shared
  width, with a learnable `logit_scale` (initialised to log(1/0.07)); dropped at inference (`audio_only`).
- MSE (paper eq. 7): `enc_proj` maps every student frame to the teacher's width; the decoder reads the
  projected frames, so the projection stays at inference. The mean of projected frames equals the
  projection of the mean frame (an affine map commutes with averaging), which is eq. 7's Proj(mean e).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from kdjax.audio.features import frame_mask, log_mel
from kdjax.models.caption_decoder import CaptionDecoderConfig, TransformerCaptionDecoder
from kdjax.models.efficientnet import EfficientNet, EfficientNetConfig
from kdjax.models.generate import GenerateConfig, generate
from kdjax.models.layers import masked_mean, pool_mask


@dataclasses.dataclass(frozen=True)
class FrontEndConfig:
    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 512
    hop_length: int = 160
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float | None = None  # None: Nyquist (EffAAC's front end; CED's stops at 8 kHz)
    top_db: float | None = 120.0

    def mel(self, wave: jax.Array) -> jax.Array:
        """(b, samples) -> (b, n_mels, frames) dB."""
        return log_mel(wave, self.sample_rate, self.n_fft, self.win_length, self.hop_length, self.n_mels,
                       self.f_min, self.f_max if self.f_max is not None else self.sample_rate / 2, self.top_db)


@dataclasses.dataclass(frozen=True)
class EffAACConfig:
    encoder: EfficientNetConfig = dataclasses.field(default_factory=lambda: EfficientNetConfig.from_name(
        "efficientnet-b2"))
    decoder: CaptionDecoderConfig = dataclasses.field(default_factory=lambda: CaptionDecoderConfig(vocab_size=4981))
    front_end: FrontEndConfig = dataclasses.field(default_factory=FrontEndConfig)
    enc_proj_dim: int = 0  # > 0: the MSE variant's per-frame projection to the teacher's width
    contra_dim: int = 0  # > 0: the contrastive variant's shared projection width (1024 in the paper)
    teacher_dim: int = 0  # the teacher embedding's width (for teacher_proj)
    logit_scale_init: float = math.log(1 / 0.07)
    downsample: int = 32  # the encoder's time stride (EfficientNet: 2^5)


class EffAAC(nnx.Module):
    """`external_encoder` replaces the EfficientNet (Table 1: the teacher's encoder in the student): a module
    with `dim` and `embed(wave, mask) -> {"last_hidden_state", "mask", "pooler_output"}` reading the
    student's waveform."""

    def __init__(self, cfg: EffAACConfig, *, rngs: nnx.Rngs, external_encoder: nnx.Module | None = None):
        c = external_encoder.dim if external_encoder is not None else cfg.encoder.out_channels
        memory_dim = cfg.enc_proj_dim or c
        if cfg.decoder.memory_dim != memory_dim:
            cfg = dataclasses.replace(cfg, decoder=dataclasses.replace(cfg.decoder, memory_dim=memory_dim))
        self.cfg = cfg
        self.external_encoder = external_encoder
        self.encoder = EfficientNet(cfg.encoder, rngs=rngs) if external_encoder is None else None
        self.decoder = TransformerCaptionDecoder(cfg.decoder, rngs=rngs)
        self.enc_proj = nnx.Linear(c, cfg.enc_proj_dim, rngs=rngs) if cfg.enc_proj_dim else None
        if cfg.contra_dim:
            if not cfg.teacher_dim:
                raise ValueError("contra_dim needs teacher_dim (the teacher embedding's width)")
            self.student_proj = nnx.Linear(c, cfg.contra_dim, rngs=rngs)
            self.teacher_proj = nnx.Linear(cfg.teacher_dim, cfg.contra_dim, rngs=rngs)
            self.logit_scale = nnx.Param(jnp.asarray(cfg.logit_scale_init, jnp.float32))
        else:
            self.student_proj = self.teacher_proj = self.logit_scale = None

    def encode(self, wave: jax.Array, mask: jax.Array | None = None, *, deterministic: bool = True,
               rngs: nnx.Rngs | None = None) -> dict[str, jax.Array]:
        """wave (b, samples) with `mask` marking real samples ->
          last_hidden_state (b, T, memory_dim)  what the decoder reads (projected in the MSE variant)
          features          (b, T, 1408)        the encoder's frequency-averaged output
          mask              (b, T) bool         frames that see real audio
          pooler_output     (b, 1408)           length-masked mean of `features` (the clip embedding)"""
        if self.external_encoder is not None:
            ext = self.external_encoder.embed(wave, mask)
            feats = jax.lax.stop_gradient(ext["last_hidden_state"])
            memory = self.enc_proj(feats) if self.enc_proj is not None else feats
            return {"last_hidden_state": memory, "features": feats, "mask": ext["mask"],
                    "pooler_output": jax.lax.stop_gradient(ext["pooler_output"])}
        mel = self.cfg.front_end.mel(wave)
        fmap = self.encoder(mel[..., None], deterministic=deterministic, rngs=rngs)["last_hidden_state"]
        feats = fmap.mean(axis=1)  # over frequency
        t = feats.shape[1]
        if mask is None:
            tmask = jnp.ones(feats.shape[:2], bool)
        else:
            tmask = pool_mask(frame_mask(mask, mel.shape[-1], self.cfg.front_end.hop_length), self.cfg.downsample)
            tmask = jnp.pad(tmask, [(0, 0), (0, max(0, t - tmask.shape[1]))])[:, :t]
        memory = self.enc_proj(feats) if self.enc_proj is not None else feats
        return {"last_hidden_state": memory, "features": feats, "mask": tmask,
                "pooler_output": masked_mean(feats, tmask)}

    def __call__(self, wave: jax.Array, mask: jax.Array | None, input_ids: jax.Array, *, deterministic: bool = True,
                 rngs: nnx.Rngs | None = None, memory: tuple[jax.Array, jax.Array] | None = None
                 ) -> dict[str, Any]:
        """Teacher-forced logits for `input_ids` (BOS first). `memory` = (sequence, mask) replaces the
        student encoder (Table 1's "teacher encoder in the student"); `wave` is then unused."""
        if memory is None:
            enc = self.encode(wave, mask, deterministic=deterministic, rngs=rngs)
            memory = (enc["last_hidden_state"], enc["mask"])
        else:
            enc = None
        out = self.decoder(*memory, input_ids, deterministic=deterministic, rngs=rngs)
        return {**out, "encoder": enc}

    def contrastive_embeddings(self, student: jax.Array, teacher: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Pooled student (b, 1408) and teacher (b, teacher_dim) embeddings in the shared space (unnormalised)."""
        return self.student_proj(student), self.teacher_proj(teacher)

    def caption(self, wave: jax.Array, mask: jax.Array | None, cfg: GenerateConfig, *,
                memory: tuple[jax.Array, jax.Array] | None = None) -> tuple[jax.Array, jax.Array]:
        if memory is None:
            enc = self.encode(wave, mask)
            memory = (enc["last_hidden_state"], enc["mask"])
        bound = self.decoder.bind(*memory)
        b = memory[0].shape[0]
        return generate(bound, bound.start_embeds(b), jnp.ones((b, 1), jnp.int32), cfg)

    def audio_only(self) -> "EffAAC":
        """The inference model: the contrastive heads are training-only."""
        self.student_proj = self.teacher_proj = self.logit_scale = None
        self.cfg = dataclasses.replace(self.cfg, contra_dim=0, teacher_dim=0)
        return self
