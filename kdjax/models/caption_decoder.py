"""A small post-LayerNorm Transformer caption decoder over encoder features (EffAAC's "Trm").

The layer is PyTorch's `nn.TransformerDecoderLayer(norm_first=False)`: x = LN(x + SelfAttn(x)),
x = LN(x + CrossAttn(x, memory)), x = LN(x + FFN(x)), with dropout on attention probabilities, after each
sub-layer and inside the FFN, as PyTorch places it. Around the layers:
- `memory_proj` maps the encoder's width (1408 for EfficientNet-B2) to the decoder's;
- word embeddings are scaled by sqrt(d_model) and get fixed sinusoidal positions (no position parameters,
  so any caption length decodes), then dropout;
- the output layer is the word embedding matrix transposed, without bias (tied).

Generation goes through kdjax.models.generate: `bind(memory, mask)` gives an object with the
(init_cache, __call__) interface that module expects. The per-beam state (self-attention keys/values and the
cross-attention keys/values of the memory, computed once) lives in the cache pytree, so beam search's
repeat/reorder of the cache carries the memory along.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from kdjax.models.layers import activation, attention_with_probs

LOGICAL_AXES = (
    (r"embed\.embedding$", ("vocab", "embed")),
    (r"(self_attn|cross_attn)\.(query|key|value)\.kernel$", ("embed", "heads")),
    (r"(self_attn|cross_attn)\.out\.kernel$", ("heads", "embed")),
    (r"linear1\.kernel$", ("embed", "mlp")),
    (r"linear2\.kernel$", ("mlp", "embed")),
)


@dataclasses.dataclass(frozen=True)
class CaptionDecoderConfig:
    vocab_size: int
    d_model: int = 256
    num_heads: int = 4
    ffn_dim: int = 1024
    num_layers: int = 2
    dropout: float = 0.2
    memory_dim: int = 1408
    activation: str = "relu"
    scale_embedding: bool = True
    layer_norm_eps: float = 1e-5
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int = 0
    dtype: Any = jnp.float32

    def __post_init__(self):
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by num_heads {self.num_heads}")


def sinusoidal_positions(positions: jax.Array, dim: int) -> jax.Array:
    """(...,) integer positions -> (..., dim): sin on even channels, cos on odd ones (Vaswani et al. 2017)."""
    inv = jnp.asarray(np.exp(np.arange(0, dim, 2) * (-np.log(10000.0) / dim)), jnp.float32)
    angle = positions[..., None].astype(jnp.float32) * inv
    return jnp.stack([jnp.sin(angle), jnp.cos(angle)], axis=-1).reshape(*positions.shape, dim)


class MultiHeadAttention(nnx.Module):
    def __init__(self, cfg: CaptionDecoderConfig, rngs: nnx.Rngs):
        d = cfg.d_model
        dense = lambda: nnx.Linear(d, d, dtype=cfg.dtype, rngs=rngs)
        self.query, self.key, self.value, self.out = dense(), dense(), dense(), dense()
        self.heads, self.rate = cfg.num_heads, cfg.dropout

    def split(self, x: jax.Array) -> jax.Array:
        return x.reshape(*x.shape[:-1], self.heads, -1)

    def __call__(self, x, k, v, bias, *, deterministic: bool, rngs) -> jax.Array:
        """x (b, q, d); k, v already projected and split (b, k, h, hd); bias broadcastable to (b, h, q, k)."""
        drop = None
        if not deterministic and self.rate > 0:
            drop = lambda p: _dropout(p, self.rate, rngs)
        ctx, _ = attention_with_probs(self.split(self.query(x)), k, v, bias, drop)
        return self.out(ctx.reshape(*ctx.shape[:2], -1))

    def project_kv(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.split(self.key(x)), self.split(self.value(x))


def _dropout(x: jax.Array, rate: float, rngs) -> jax.Array:
    keep = jax.random.bernoulli(rngs.dropout(), 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


def _maybe_dropout(x, rate, deterministic, rngs):
    return x if deterministic or rate == 0 else _dropout(x, rate, rngs)


class DecoderLayer(nnx.Module):
    def __init__(self, cfg: CaptionDecoderConfig, rngs: nnx.Rngs):
        d = cfg.d_model
        self.self_attn = MultiHeadAttention(cfg, rngs)
        self.cross_attn = MultiHeadAttention(cfg, rngs)
        self.linear1 = nnx.Linear(d, cfg.ffn_dim, dtype=cfg.dtype, rngs=rngs)
        self.linear2 = nnx.Linear(cfg.ffn_dim, d, dtype=cfg.dtype, rngs=rngs)
        norm = lambda: nnx.LayerNorm(d, epsilon=cfg.layer_norm_eps, dtype=cfg.dtype, rngs=rngs)
        self.norm1, self.norm2, self.norm3 = norm(), norm(), norm()
        self.rate, self.act = cfg.dropout, activation(cfg.activation)

    def __call__(self, x, self_kv, self_bias, mem_kv, mem_bias, *, deterministic, rngs):
        drop = lambda y: _maybe_dropout(y, self.rate, deterministic, rngs)
        kw = dict(deterministic=deterministic, rngs=rngs)
        x = self.norm1(x + drop(self.self_attn(x, *self_kv, self_bias, **kw)))
        x = self.norm2(x + drop(self.cross_attn(x, *mem_kv, mem_bias, **kw)))
        return self.norm3(x + drop(self.linear2(drop(self.act(self.linear1(x))))))


def _memory_bias(mask: jax.Array | None, n: int, b: int) -> jax.Array:
    if mask is None:
        return jnp.zeros((b, 1, 1, n), jnp.float32)
    return jnp.where(mask.astype(bool)[:, None, None, :], 0.0, jnp.finfo(jnp.float32).min)


class TransformerCaptionDecoder(nnx.Module):
    """Returns `logits` (b, t, vocab) and `last_hidden_state` (b, t, d_model) for teacher-forced `input_ids`
    (b, t) (BOS first) over `memory` (b, n, memory_dim) with `memory_mask` (b, n) marking real frames."""

    def __init__(self, cfg: CaptionDecoderConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.memory_proj = nnx.Linear(cfg.memory_dim, cfg.d_model, dtype=cfg.dtype, rngs=rngs)
        self.embed = nnx.Embed(cfg.vocab_size, cfg.d_model, dtype=cfg.dtype,
                               embedding_init=nnx.initializers.normal(cfg.d_model ** -0.5), rngs=rngs)
        self.layers = nnx.List([DecoderLayer(cfg, rngs) for _ in range(cfg.num_layers)])

    def embed_tokens(self, ids: jax.Array) -> jax.Array:
        x = self.embed(ids)
        return x * np.sqrt(self.cfg.d_model) if self.cfg.scale_embedding else x

    def encode_memory(self, memory: jax.Array, memory_mask: jax.Array | None) -> dict[str, Any]:
        """The cross-attention keys/values of every layer, computed once per clip."""
        mem = self.memory_proj(memory.astype(self.cfg.dtype))
        return {"kv": [layer.cross_attn.project_kv(mem) for layer in self.layers],
                "bias": _memory_bias(memory_mask, mem.shape[1], mem.shape[0])}

    def _run(self, x, positions, self_kvs, self_bias, memory, *, deterministic, rngs):
        x = x + sinusoidal_positions(positions, self.cfg.d_model).astype(x.dtype)
        x = _maybe_dropout(x, self.cfg.dropout, deterministic, rngs)
        for layer, kv, mkv in zip(self.layers, self_kvs, memory["kv"]):
            x = layer(x, kv(layer, x), self_bias, mkv, memory["bias"], deterministic=deterministic, rngs=rngs)
        logits = jnp.einsum("btd,vd->btv", x, self.embed.embedding[...].astype(x.dtype))
        return x, logits

    def __call__(self, memory: jax.Array, memory_mask: jax.Array | None, input_ids: jax.Array, *,
                 deterministic: bool = True, rngs: nnx.Rngs | None = None) -> dict[str, jax.Array]:
        t = input_ids.shape[1]
        causal = jnp.where(jnp.tril(jnp.ones((t, t), bool)), 0.0, jnp.finfo(jnp.float32).min)[None, None]
        kv = lambda layer, x: layer.self_attn.project_kv(x)
        mem = self.encode_memory(memory, memory_mask)
        x, logits = self._run(self.embed_tokens(input_ids), jnp.arange(t)[None], [kv] * len(self.layers),
                              causal, mem, deterministic=deterministic, rngs=rngs)
        return {"logits": logits, "last_hidden_state": x}

    def bind(self, memory: jax.Array, memory_mask: jax.Array | None) -> "BoundDecoder":
        return BoundDecoder(self, memory, memory_mask)


class BoundDecoder:
    """The decoder with its memory fixed, in the interface of kdjax.models.generate (a causal LM with a
    KV cache): `init_cache(b, slots)` and `__call__(ids | inputs_embeds, attention_mask, position_ids,
    cache, cache_index)`. Generation is deterministic (no dropout)."""

    def __init__(self, decoder: TransformerCaptionDecoder, memory: jax.Array, memory_mask: jax.Array | None):
        self.decoder, self.memory, self.memory_mask = decoder, memory, memory_mask

    def start_embeds(self, b: int) -> jax.Array:
        """The prompt: BOS's embedding, (b, 1, d)."""
        return self.decoder.embed_tokens(jnp.full((b, 1), self.decoder.cfg.bos_token_id, jnp.int32))

    def init_cache(self, b: int, slots: int) -> dict[str, Any]:
        c = self.decoder.cfg
        hd = c.d_model // c.num_heads
        if self.memory.shape[0] != b:
            raise ValueError(f"cache for {b} rows but the memory has {self.memory.shape[0]}")
        zeros = jnp.zeros((b, slots, c.num_heads, hd), c.dtype)
        return {"self": [(zeros, zeros) for _ in range(c.num_layers)],
                "memory": self.decoder.encode_memory(self.memory, self.memory_mask)}

    def __call__(self, input_ids=None, *, inputs_embeds=None, attention_mask, position_ids, cache, cache_index):
        dec = self.decoder
        x = dec.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        q, slots = x.shape[1], attention_mask.shape[1]
        # a key slot is visible if it is real and not after the query's own slot
        visible = attention_mask.astype(bool)[:, None, :] & (
            jnp.arange(slots)[None, None, :] <= cache_index + jnp.arange(q)[None, :, None])
        bias = jnp.where(visible, 0.0, jnp.finfo(jnp.float32).min)[:, None]
        new_self = []

        def kv_of(i):
            def kv(layer, h):
                k, v = layer.self_attn.project_kv(h)
                ck, cv = cache["self"][i]
                ck = jax.lax.dynamic_update_slice_in_dim(ck, k.astype(ck.dtype), cache_index, axis=1)
                cv = jax.lax.dynamic_update_slice_in_dim(cv, v.astype(cv.dtype), cache_index, axis=1)
                new_self.append((ck, cv))
                return ck, cv
            return kv

        _, logits = dec._run(x, position_ids, [kv_of(i) for i in range(len(dec.layers))], bias, cache["memory"],
                             deterministic=True, rngs=None)
        return {"logits": logits, "cache": {"self": new_self, "memory": cache["memory"]}}
