"""LLaMA-family decoder (LLaMA 1/2/3, SmolLM2, TinyLlama, ...) as a Flax NNX module.

RMSNorm, rotary embeddings (every schedule in kdjax.models.rope), grouped-query attention, SwiGLU MLP,
tied or untied output embeddings. Submodule names follow transformers' LlamaForCausalLM, so the parameter
map (kdjax.convert.hf_llama) is the identity on module paths.

Incremental decoding uses an explicit KV cache pytree (`init_cache`): the caller owns it, which keeps
generation a pure function that jit, beam reordering and sharding can see through. `scan_layers` stores the
decoder layers as one stack (kdjax.models.stack) run by lax.scan, so a 32-layer model compiles as fast as a
one-layer one; generation then loops over layer slices, since its cache is one entry per layer. Compute runs in
`cfg.dtype` (e.g. bfloat16) while parameters are stored in `cfg.param_dtype` (float32 master weights by
default; bfloat16 for a frozen base that is never updated).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from kdjax.models import invariants
from kdjax.models import stack
from kdjax.models.layers import activation, linear
from kdjax.models.rope import Rope, apply_rotary

# Logical axes per parameter path (kdjax.train.sharding): FSDP over the model width, tensor parallel
# over heads, MLP and vocabulary.
_LAYER_AXES = (
    (r"self_attn\.q_proj\.kernel$", ("embed", "heads")),
    (r"self_attn\.(k|v)_proj\.kernel$", ("embed", "kv_heads")),
    (r"self_attn\.(q|k|v)_proj\.bias$", ("heads",)),
    (r"self_attn\.o_proj\.kernel$", ("heads", "embed")),
    (r"mlp\.(gate|up)_proj\.kernel$", ("embed", "mlp")),
    (r"mlp\.down_proj\.kernel$", ("mlp", "embed")),
    (r"lora_a$", ("embed", None)),
    (r"lora_b$", (None, "heads")),
)
# a scanned stack (`layers.` not followed by an index): the same axes after an unsharded layer axis
LOGICAL_AXES = (
    *((r"layers\.(?!\d).*" + pat, (None, *axes)) for pat, axes in _LAYER_AXES),
    (r"embed_tokens\.embedding$", ("vocab", "embed")),
    (r"lm_head\.kernel$", ("embed", "vocab")),
    *_LAYER_AXES,
)

Cache = tuple[dict[str, jax.Array], ...]


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None  # None: multi-head attention
    head_dim: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 4096
    rms_norm_eps: float = 1e-6
    rope: Rope | None = None  # None: default rotary schedule, theta 10000
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    attention_dropout: float = 0.0
    initializer_range: float = 0.02
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    pad_token_id: int | None = None
    dtype: str = "float32"  # compute
    param_dtype: str = "float32"  # storage
    remat: bool = False  # recompute each layer's activations in the backward pass
    scan_layers: bool = False  # the layers as one stack run by lax.scan (compile time independent of depth)

    def __post_init__(self):
        invariants.positive(self, "vocab_size", "hidden_size", "intermediate_size", "num_attention_heads",
                            "max_position_embeddings")
        invariants.non_negative(self, "num_hidden_layers")
        if self.head_dim is None:
            invariants.multiple(self, "hidden_size", "num_attention_heads")
        else:
            invariants.positive(self, "head_dim")
        if self.num_key_value_heads is not None:
            invariants.multiple(self, "num_attention_heads", "num_key_value_heads")  # each kv head serves a group
        if self.dim % 2:
            raise invariants.ConfigError(f"LlamaConfig: the head dimension ({self.dim}) must be even for rotary "
                                         "embeddings")
        invariants.fraction(self, "attention_dropout")

    @property
    def kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads

    @property
    def dim(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def rotary(self) -> Rope:
        return self.rope or Rope(self.dim, max_position_embeddings=self.max_position_embeddings)

    @classmethod
    def from_hf(cls, d: Mapping[str, Any], **overrides) -> "LlamaConfig":
        if d.get("model_type", "llama") not in ("llama", "mistral") or d.get("sliding_window"):
            raise ValueError(f"model_type {d.get('model_type')!r} with sliding_window={d.get('sliding_window')} "
                             "is not a LLaMA architecture kdjax supports")
        if int(d.get("pretraining_tp", 1) or 1) != 1:
            raise ValueError("pretraining_tp != 1 is not supported")
        names = {f.name for f in dataclasses.fields(cls)} - {"rope", "dtype", "param_dtype", "remat", "scan_layers"}
        kw = {k: v for k, v in d.items() if k in names and v is not None}
        head_dim = d.get("head_dim") or d["hidden_size"] // d["num_attention_heads"]
        kw["rope"] = Rope.from_hf(d, head_dim)
        kw.update(overrides)
        return cls(**kw)

    def to_hf(self) -> dict[str, Any]:
        out = {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size, "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers, "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.kv_heads, "head_dim": self.dim, "hidden_act": self.hidden_act,
            "max_position_embeddings": self.max_position_embeddings, "rms_norm_eps": self.rms_norm_eps,
            "rope_parameters": self.rotary.to_hf(), "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.attention_bias, "mlp_bias": self.mlp_bias,
            "attention_dropout": self.attention_dropout, "initializer_range": self.initializer_range,
            "bos_token_id": self.bos_token_id, "eos_token_id": self.eos_token_id,
            "pad_token_id": self.pad_token_id, "torch_dtype": "float32",
        }
        return out


class RMSNorm(nnx.Module):
    """x / rms(x) * weight, computed in float32 and cast back (as transformers' LlamaRMSNorm)."""

    def __init__(self, n: int, eps: float, param_dtype: Any):
        self.eps = eps
        self.scale = nnx.Param(jnp.ones((n,), param_dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        h = x.astype(jnp.float32)
        h = h * jax.lax.rsqrt(jnp.mean(h * h, axis=-1, keepdims=True) + self.eps)
        return self.scale[...].astype(x.dtype) * h.astype(x.dtype)


def _dense(cfg: LlamaConfig, n_in: int, n_out: int, bias: bool, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(n_in, n_out, use_bias=bias, dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.dtype(cfg.param_dtype),
                      kernel_init=nnx.initializers.normal(cfg.initializer_range), rngs=rngs)


class Attention(nnx.Module):
    def __init__(self, cfg: LlamaConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        h, d = cfg.hidden_size, cfg.dim
        self.q_proj = _dense(cfg, h, cfg.num_attention_heads * d, cfg.attention_bias, rngs)
        self.k_proj = _dense(cfg, h, cfg.kv_heads * d, cfg.attention_bias, rngs)
        self.v_proj = _dense(cfg, h, cfg.kv_heads * d, cfg.attention_bias, rngs)
        self.o_proj = _dense(cfg, cfg.num_attention_heads * d, h, cfg.attention_bias, rngs)
        self.dropout = nnx.Dropout(cfg.attention_dropout)

    def __call__(self, x, cos, sin, mask, cache, cache_index, *, deterministic, rngs):
        """mask: (b, 1, q, k) bool, True where a query may attend to a key."""
        cfg = self.cfg
        b, l, _ = x.shape
        kw = dict(deterministic=deterministic, rngs=rngs)
        q = linear(self.q_proj, x, **kw).reshape(b, l, cfg.num_attention_heads, cfg.dim)
        k = linear(self.k_proj, x, **kw).reshape(b, l, cfg.kv_heads, cfg.dim)
        v = linear(self.v_proj, x, **kw).reshape(b, l, cfg.kv_heads, cfg.dim)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        new_cache = None
        if cache is not None:  # write this call's keys/values at cache_index, attend over the whole cache
            start = (0, cache_index, 0, 0)
            k = jax.lax.dynamic_update_slice(cache["k"], k.astype(cache["k"].dtype), start)
            v = jax.lax.dynamic_update_slice(cache["v"], v.astype(cache["v"].dtype), start)
            new_cache = {"k": k, "v": v}
        if cfg.attention_dropout and not deterministic:
            ctx = _attention_with_dropout(q, k.astype(q.dtype), v.astype(q.dtype), mask,
                                          lambda p: self.dropout(p, deterministic=False, rngs=rngs))
        else:
            # grouped-query attention natively (k/v heads divide q heads); float32 softmax inside
            ctx = jax.nn.dot_product_attention(q, k.astype(q.dtype), v.astype(q.dtype), mask=mask)
        return linear(self.o_proj, ctx.reshape(b, l, -1), **kw), new_cache


def _attention_with_dropout(q, k, v, mask, dropout):
    b, l, hq, d = q.shape
    groups = hq // k.shape[2]
    k, v = jnp.repeat(k, groups, axis=2), jnp.repeat(v, groups, axis=2)
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) / jnp.sqrt(d).astype(
        jnp.float32)
    scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
    probs = dropout(jax.nn.softmax(scores, axis=-1)).astype(v.dtype)
    return jnp.einsum("bhqk,bkhd->bqhd", probs, v)


class MLP(nnx.Module):
    def __init__(self, cfg: LlamaConfig, rngs: nnx.Rngs):
        h, m = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = _dense(cfg, h, m, cfg.mlp_bias, rngs)
        self.up_proj = _dense(cfg, h, m, cfg.mlp_bias, rngs)
        self.down_proj = _dense(cfg, m, h, cfg.mlp_bias, rngs)
        self.act = activation(cfg.hidden_act)

    def __call__(self, x, *, deterministic, rngs):
        kw = dict(deterministic=deterministic, rngs=rngs)
        gated = self.act(linear(self.gate_proj, x, **kw)) * linear(self.up_proj, x, **kw)
        return linear(self.down_proj, gated, **kw)


class DecoderLayer(nnx.Module):
    def __init__(self, cfg: LlamaConfig, rngs: nnx.Rngs):
        self.self_attn = Attention(cfg, rngs)
        self.mlp = MLP(cfg, rngs)
        pd = jnp.dtype(cfg.param_dtype)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, pd)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, pd)

    def __call__(self, x, cos, sin, mask, cache, cache_index, *, deterministic, rngs):
        a, new_cache = self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, cache_index,
                                      deterministic=deterministic, rngs=rngs)
        x = x + a
        x = x + self.mlp(self.post_attention_layernorm(x), deterministic=deterministic, rngs=rngs)
        return x, new_cache


def segment_positions(segment_ids: jax.Array) -> jax.Array:
    """(b, l) positions that restart at 0 where each packed segment starts (a segment is a run of equal ids)."""
    t = jnp.arange(segment_ids.shape[-1])
    starts = jnp.concatenate([jnp.ones_like(segment_ids[:, :1], bool), segment_ids[:, 1:] != segment_ids[:, :-1]], 1)
    return t - jax.lax.cummax(jnp.where(starts, t, 0), axis=1)


class LlamaModel(nnx.Module):
    def __init__(self, cfg: LlamaConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed_tokens = nnx.Embed(cfg.vocab_size, cfg.hidden_size, dtype=jnp.dtype(cfg.dtype),
                                      param_dtype=jnp.dtype(cfg.param_dtype),
                                      embedding_init=nnx.initializers.normal(cfg.initializer_range), rngs=rngs)
        if cfg.scan_layers:
            self.layers = stack.stacked(lambda r: DecoderLayer(cfg, r), cfg.num_hidden_layers, rngs)
        else:
            self.layers = nnx.List([DecoderLayer(cfg, rngs) for _ in range(cfg.num_hidden_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, jnp.dtype(cfg.param_dtype))


class LlamaForCausalLM(nnx.Module):
    """Causal LM returning HF's names: logits, last_hidden_state, hidden_states (embedding output and each
    layer's output, the last one after the final norm, as transformers), and `cache` when one is passed.

    Call with `input_ids` or `inputs_embeds` (b, l). Without a cache, `attention_mask` (b, l) marks real
    tokens and attention is causal. With a cache from `init_cache(b, S)`, the l new tokens are written at
    slots [cache_index, cache_index + l); `attention_mask` is then (b, S) over cache slots, and a query at
    slot s attends to valid slots <= s. Positions default to the slot numbers; pass `position_ids` for
    left-padded batches. `segment_ids` (b, l) packs several sequences in a row: attention stays within a segment
    and positions restart at each (`segment_positions`).

    `prefix_embeds` (1, P, h) is a prompt prefix shared by every row (Multi2Cap's "Describe ...:"): its
    keys/values are computed once at batch 1 and broadcast, which is exact under causal attention (the prefix
    never sees the rows) and saves (b - 1) * P token-passes per layer, forward and backward. The outputs
    then cover only the l rows of `inputs_embeds`, whose positions start at P. Any dropout inside the prefix
    draws one mask for the whole batch.
    """

    def __init__(self, cfg: LlamaConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.model = LlamaModel(cfg, rngs)
        self.lm_head = None if cfg.tie_word_embeddings else _dense(cfg, cfg.hidden_size, cfg.vocab_size, False, rngs)

    def keep_layers(self, n: int) -> None:
        """Keep the first `n` decoder layers, in place (quick experiments with a large checkpoint)."""
        layers = self.model.layers
        self.model.layers = stack.truncate(layers, n) if self.cfg.scan_layers else nnx.List(list(layers)[:n])
        self.cfg = dataclasses.replace(self.cfg, num_hidden_layers=n)

    def embed(self, input_ids: jax.Array) -> jax.Array:
        return self.model.embed_tokens(input_ids)

    def init_cache(self, batch: int, length: int, dtype: Any = None) -> Cache:
        cfg = self.cfg
        shape = (batch, length, cfg.kv_heads, cfg.dim)
        dt = jnp.dtype(dtype or cfg.dtype)
        return tuple({"k": jnp.zeros(shape, dt), "v": jnp.zeros(shape, dt)} for _ in range(cfg.num_hidden_layers))

    def __call__(self, input_ids: jax.Array | None = None, *, inputs_embeds: jax.Array | None = None,
                 attention_mask: jax.Array | None = None, position_ids: jax.Array | None = None,
                 cache: Cache | None = None, cache_index: jax.Array | int = 0,
                 prefix_embeds: jax.Array | None = None, output_hidden_states: bool = False,
                 logits: bool = True, deterministic: bool = True, rngs: nnx.Rngs | None = None,
                 segment_ids: jax.Array | None = None) -> dict[str, Any]:
        cfg = self.cfg
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        x = self.embed(input_ids) if inputs_embeds is None else inputs_embeds.astype(jnp.dtype(cfg.dtype))
        b, l = x.shape[:2]
        decoding = cache is not None
        if decoding and prefix_embeds is not None:
            raise ValueError("prefix_embeds and cache are exclusive (prefill the cache with the prefix instead)")
        if decoding:
            keys = cache[0]["k"].shape[1]
        elif prefix_embeds is not None:
            p = prefix_embeds.shape[1]
            keys = p + l
            cache = self._prefix_cache(prefix_embeds, b, keys, deterministic, rngs)
            real = jnp.ones((b, l), bool) if attention_mask is None else attention_mask.astype(bool)
            attention_mask = jnp.concatenate([jnp.ones((b, p), bool), real], axis=1)
            if position_ids is None:
                position_ids = jnp.broadcast_to(p + jnp.arange(l), (b, l))
            cache_index = p
        else:
            keys = l
        slots = cache_index + jnp.arange(l)  # query slots
        if segment_ids is not None and (decoding or prefix_embeds is not None):
            raise ValueError("segment_ids (packed sequences) are for a whole-sequence pass, without cache or prefix")
        if position_ids is None:
            position_ids = jnp.broadcast_to(slots, (b, l)) if segment_ids is None else segment_positions(segment_ids)
        allowed = jnp.arange(keys)[None, :] <= slots[:, None]  # causal, (l, keys)
        if segment_ids is not None:  # packed: each sequence sees only itself (padding, segment 0, only padding)
            allowed = allowed[None] & (segment_ids[:, :, None] == segment_ids[:, None, :])
        if attention_mask is not None:
            if attention_mask.shape[-1] != keys:
                raise ValueError(f"attention_mask has {attention_mask.shape[-1]} positions, expected {keys}"
                                 + (" (the cache length)" if decoding else ""))
            allowed = allowed[None] & attention_mask[:, None, :].astype(bool)
        mask = jnp.broadcast_to(allowed, (b, l, keys))[:, None]
        cos, sin = cfg.rotary.cos_sin(position_ids, x.dtype)
        # remat only outside generation: there cache_index is static (0 or the prefix length)
        x, hidden, new_cache = self._layers(x, cos, sin, mask, cache, cache_index, remat=cfg.remat and not decoding,
                                            deterministic=deterministic, rngs=rngs, want_hidden=output_hidden_states)
        x = self.model.norm(x)
        out: dict[str, Any] = {"last_hidden_state": x}
        if logits:
            out["logits"] = self.project(x)
        if output_hidden_states:
            out["hidden_states"] = (*hidden[:-1], x)
        if decoding:
            out["cache"] = new_cache
        return out

    def _prefix_cache(self, prefix_embeds, b, slots, deterministic, rngs):
        """The shared prefix's keys/values, computed at batch 1 and broadcast to `b` rows, in a cache of
        `slots` slots (per-layer tuple, or one stacked dict for a scanned stack)."""
        cfg = self.cfg
        x = prefix_embeds.astype(jnp.dtype(cfg.dtype))
        p = x.shape[1]
        pos = jnp.arange(p)[None]
        mask = (jnp.arange(slots)[None, :] <= pos.T)[None, None]
        cos, sin = cfg.rotary.cos_sin(pos, x.dtype)
        cache = self.init_cache(1, slots)
        if cfg.scan_layers:
            cache = jax.tree.map(lambda *c: jnp.stack(c), *cache)
        _, _, cache = self._layers(x, cos, sin, mask, cache, 0, remat=cfg.remat, deterministic=deterministic,
                                   rngs=rngs, want_hidden=False)
        batch_axis = 1 if cfg.scan_layers else 0
        return jax.tree.map(lambda c: jnp.broadcast_to(c, c.shape[:batch_axis] + (b,) + c.shape[batch_axis + 1:]),
                            cache)

    def _layers(self, x, cos, sin, mask, cache, cache_index, *, remat, deterministic, rngs, want_hidden):
        """All decoder layers; returns (x, per-layer outputs (embedding output first), new cache).

        `cache`: None, a tuple with one {"k", "v"} per layer, or (scanned stack, outside generation) one dict
        of arrays with a leading layer axis."""
        cfg, layers = self.cfg, self.model.layers
        kw = dict(deterministic=deterministic)
        # dropout: one key per layer from one draw, in both layouts, so scanned and unrolled drop alike
        keys = None if deterministic or rngs is None else jax.random.split(rngs.dropout(), cfg.num_hidden_layers)
        if cfg.scan_layers and not isinstance(cache, tuple):
            def body(layer, x, inp):
                layer_cache, key = inp
                x, c = layer(x, cos, sin, mask, layer_cache, cache_index, rngs=None if key is None else
                             nnx.Rngs(dropout=key), **kw)
                return x, (c, x if want_hidden else None)

            x0 = x
            x, (new_cache, hidden) = stack.scan(layers, body, x, (cache, keys), remat=remat)
            return x, ([x0, *hidden] if want_hidden else [x]), new_cache
        run = lambda layer, x, c, rngs: layer(x, cos, sin, mask, c, cache_index, rngs=rngs, **kw)
        if remat:
            run = nnx.remat(run)
        hidden, new_cache = [x], []
        for i in range(cfg.num_hidden_layers):
            layer = stack.layer(layers, i) if cfg.scan_layers else layers[i]
            x, c = run(layer, x, None if cache is None else cache[i], rngs if keys is None else
                       nnx.Rngs(dropout=keys[i]))
            hidden.append(x)
            new_cache.append(c)
        return x, hidden, tuple(new_cache)

    def head_kernel(self) -> jax.Array:
        """The (hidden, vocabulary) matrix `project` multiplies by: the embedding's transpose when tied. What chunked
        losses take instead of logits (`kdjax.losses.token_kd`: `student_head` / `teacher_head`)."""
        if self.lm_head is None:
            return self.model.embed_tokens.embedding[...].T
        return self.lm_head.kernel[...]

    def project(self, x: jax.Array) -> jax.Array:
        """Final hidden states -> vocabulary logits (float32)."""
        if self.lm_head is None:
            return self.model.embed_tokens.attend(x).astype(jnp.float32)
        return self.lm_head(x).astype(jnp.float32)
