"""Vision Transformer (Dosovitskiy et al. 2021) as a Flax NNX module, and the pre-LN transformer block it
shares with CED (an audio ViT).

The block reads its sizes from any config with `embed_dim`, `num_heads`, `head_dim`, `mlp_ratio`,
`layer_norm_eps`, `dropout`, `dtype` (and optionally `hidden_act`); its submodule names are timm's
(norm1, attn.{q,k,v}_proj, attn.proj, norm2, mlp.fc1, mlp.fc2), which CED's checkpoints use directly and
kdjax.convert.hf_vit maps to transformers' ViTModel names.

`ViT` takes channels-last images (b, H, W, 3), already normalised (kdjax.data.images), and returns HF's
names: last_hidden_state (after the final LayerNorm, [CLS] first), pooler_output (tanh dense on [CLS],
when the model has a pooler), hidden_states, and `features`: the pooled image embedding a teacher hands
to distillation (cfg.feature: "cls", "pooler" or "mean" of the patch tokens).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from kdjax.models import invariants
from kdjax.models.layers import activation, linear

BLOCK_LOGICAL_AXES = (
    (r"attn\.(q|k|v)_proj\.kernel$", ("embed", "heads")),
    (r"attn\.(q|k|v)_proj\.bias$", ("heads",)),
    (r"attn\.proj\.kernel$", ("heads", "embed")),
    (r"mlp\.fc1\.kernel$", ("embed", "mlp")),
    (r"mlp\.fc1\.bias$", ("mlp",)),
    (r"mlp\.fc2\.kernel$", ("mlp", "embed")),
)
LOGICAL_AXES = BLOCK_LOGICAL_AXES


def _linear(n_in: int, n_out: int, cfg: Any, rngs: nnx.Rngs) -> nnx.Linear:
    # timm's ViT init: truncated normal 0.02 on weights, zero biases
    return nnx.Linear(n_in, n_out, dtype=cfg.dtype, kernel_init=nnx.initializers.truncated_normal(0.02),
                      rngs=rngs)


def _norm(n: int, cfg: Any, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(n, epsilon=cfg.layer_norm_eps, dtype=cfg.dtype, rngs=rngs)


class Attention(nnx.Module):
    def __init__(self, cfg: Any, rngs: nnx.Rngs):
        self.cfg = cfg
        d = cfg.embed_dim
        self.q_proj = _linear(d, d, cfg, rngs)
        self.k_proj = _linear(d, d, cfg, rngs)
        self.v_proj = _linear(d, d, cfg, rngs)
        self.proj = _linear(d, d, cfg, rngs)

    def __call__(self, x: jax.Array, mask: jax.Array | None, **kw) -> jax.Array:
        b, n, _ = x.shape
        shape = (b, n, self.cfg.num_heads, self.cfg.head_dim)
        q, k, v = (linear(p, x, **kw).reshape(shape) for p in (self.q_proj, self.k_proj, self.v_proj))
        key_mask = None if mask is None else mask[:, None, None, :].astype(bool)
        ctx = jax.nn.dot_product_attention(q, k, v, mask=key_mask)
        return linear(self.proj, ctx.reshape(b, n, -1), **kw)


class Mlp(nnx.Module):
    def __init__(self, cfg: Any, rngs: nnx.Rngs):
        hidden = int(cfg.embed_dim * cfg.mlp_ratio)
        self.fc1 = _linear(cfg.embed_dim, hidden, cfg, rngs)
        self.fc2 = _linear(hidden, cfg.embed_dim, cfg, rngs)
        self.act = activation(getattr(cfg, "hidden_act", "gelu"))

    def __call__(self, x, **kw):
        return linear(self.fc2, self.act(linear(self.fc1, x, **kw)), **kw)


class Block(nnx.Module):
    def __init__(self, cfg: Any, rngs: nnx.Rngs):
        self.norm1 = _norm(cfg.embed_dim, cfg, rngs)
        self.attn = Attention(cfg, rngs)
        self.norm2 = _norm(cfg.embed_dim, cfg, rngs)
        self.mlp = Mlp(cfg, rngs)
        self.dropout = nnx.Dropout(cfg.dropout)

    def __call__(self, x, mask, *, deterministic: bool, rngs: nnx.Rngs | None):
        drop = lambda y: self.dropout(y, deterministic=deterministic, rngs=rngs)
        kw = dict(deterministic=deterministic, rngs=rngs)  # for LoRA layers (kdjax.models.lora)
        x = x + drop(self.attn(self.norm1(x), mask, **kw))
        return x + drop(self.mlp(self.norm2(x), **kw))


@dataclasses.dataclass(frozen=True)
class ViTConfig:
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    qkv_bias: bool = True
    add_pooling_layer: bool = True
    feature: str = "cls"  # the pooled embedding for distillation: "cls", "pooler" or "mean"
    dropout: float = 0.0
    dtype: Any = jnp.float32

    def __post_init__(self):
        invariants.positive(self, "intermediate_size", "image_size", "patch_size", "num_channels")
        invariants.non_negative(self, "num_hidden_layers")
        invariants.multiple(self, "hidden_size", "num_attention_heads")
        invariants.fraction(self, "dropout")

    # the block's view of the config
    embed_dim = property(lambda self: self.hidden_size)
    num_heads = property(lambda self: self.num_attention_heads)
    head_dim = property(lambda self: self.hidden_size // self.num_attention_heads)
    mlp_ratio = property(lambda self: self.intermediate_size / self.hidden_size)

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @classmethod
    def from_hf(cls, d: dict[str, Any], **overrides) -> "ViTConfig":
        if not d.get("qkv_bias", True):
            raise ValueError("ViT without qkv bias is not supported")
        names = {f.name for f in dataclasses.fields(cls)} - {"dropout", "dtype", "feature", "add_pooling_layer"}
        kw = {k: v for k, v in d.items() if k in names and v is not None}
        kw.update(overrides)
        return cls(**kw)

    def to_hf(self) -> dict[str, Any]:
        return {"model_type": "vit", "architectures": ["ViTModel"], "hidden_size": self.hidden_size,
                "num_hidden_layers": self.num_hidden_layers, "num_attention_heads": self.num_attention_heads,
                "intermediate_size": self.intermediate_size, "hidden_act": self.hidden_act,
                "layer_norm_eps": self.layer_norm_eps, "image_size": self.image_size, "patch_size": self.patch_size,
                "num_channels": self.num_channels, "qkv_bias": True, "hidden_dropout_prob": 0.0,
                "attention_probs_dropout_prob": 0.0}


class ViT(nnx.Module):
    def __init__(self, cfg: ViTConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        d, p = cfg.hidden_size, cfg.patch_size
        init = nnx.initializers.truncated_normal(0.02)
        self.patch_embed = nnx.Conv(cfg.num_channels, d, (p, p), strides=(p, p), padding="VALID", dtype=cfg.dtype,
                                    rngs=rngs)
        self.cls_token = nnx.Param(init(rngs.params(), (1, 1, d)))
        self.pos_embed = nnx.Param(init(rngs.params(), (1, cfg.grid * cfg.grid + 1, d)))
        self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.num_hidden_layers)])
        self.norm = _norm(d, cfg, rngs)
        self.pooler = _linear(d, d, cfg, rngs) if cfg.add_pooling_layer else None

    def __call__(self, pixels: jax.Array, *, output_hidden_states: bool = False, deterministic: bool = True,
                 rngs: nnx.Rngs | None = None) -> dict[str, Any]:
        cfg = self.cfg
        if pixels.shape[1:] != (cfg.image_size, cfg.image_size, cfg.num_channels):
            raise ValueError(f"ViT expects (b, {cfg.image_size}, {cfg.image_size}, {cfg.num_channels}) images, "
                             f"got {pixels.shape}")
        x = self.patch_embed(pixels.astype(cfg.dtype))
        b = x.shape[0]
        x = x.reshape(b, -1, cfg.hidden_size)
        cls = jnp.broadcast_to(self.cls_token[...].astype(x.dtype), (b, 1, cfg.hidden_size))
        x = jnp.concatenate([cls, x], axis=1) + self.pos_embed[...].astype(x.dtype)
        hidden = [x]
        for blk in self.blocks:
            x = blk(x, None, deterministic=deterministic, rngs=rngs)
            hidden.append(x)
        x = self.norm(x)
        out: dict[str, Any] = {"last_hidden_state": x}
        if self.pooler is not None:
            out["pooler_output"] = jnp.tanh(self.pooler(x[:, 0]))
        if output_hidden_states:
            out["hidden_states"] = tuple(hidden)
        if cfg.feature == "cls":
            out["features"] = x[:, 0]
        elif cfg.feature == "pooler":
            if self.pooler is None:
                raise ValueError("feature='pooler' needs a pooler (add_pooling_layer=True)")
            out["features"] = out["pooler_output"]
        elif cfg.feature == "mean":
            out["features"] = x[:, 1:].mean(axis=1)
        else:
            raise ValueError(f"unknown ViT feature {cfg.feature!r} (cls, pooler, mean)")
        return out
