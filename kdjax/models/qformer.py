"""BLIP-2's Querying Transformer (Li et al. 2023) as a Flax NNX module, built from kdjax's BERT layers.

Learned query tokens pass through BERT layers: self-attention among the queries, cross-attention to the
encoder tokens in every `cross_attention_frequency`-th layer (layer i has it when i % frequency == 0), and
the query feed-forward. Only the query path exists (transformers' `use_qformer_text_input=False`).

Two ways to read an encoder sequence (`window`):
  0   plain BLIP-2: `num_query_tokens` queries attend to all encoder tokens -> (b, N, hidden).
  k   LOAE: the tokens are cut into windows of k (stride k, the remainder dropped), each window is its
      own Q-Former input with `num_query_tokens` queries (1 in LOAE), windows batched -> (b, W * N,
      hidden). 252 CED tokens per 10 s with k = 17 give 14 audio tokens.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from kdjax.models import invariants
from kdjax.models.bert import Attention, BertConfig, DenseResidualNorm, Intermediate, _norm
from kdjax.models.layers import padding_bias

LOGICAL_AXES = (
    (r"attention\.self\.query\.kernel$", ("embed", "heads")),
    (r"attention\.self\.(key|value)\.kernel$", (None, "heads")),
    (r"attention\.self\.(query|key|value)\.bias$", ("heads",)),
    (r"attention\.output\.dense\.kernel$", ("heads", "embed")),
    (r"intermediate_query\.dense\.kernel$", ("embed", "mlp")),
    (r"intermediate_query\.dense\.bias$", ("mlp",)),
    (r"output_query\.dense\.kernel$", ("mlp", "embed")),
)


@dataclasses.dataclass(frozen=True)
class QFormerConfig:
    hidden_size: int = 768
    num_hidden_layers: int = 2
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    cross_attention_frequency: int = 1
    encoder_hidden_size: int = 768
    num_query_tokens: int = 1
    window: int = 17  # 0: plain BLIP-2 (queries over all tokens)
    dtype: str = "float32"

    def __post_init__(self):
        invariants.positive(self, "intermediate_size", "cross_attention_frequency", "encoder_hidden_size",
                            "num_query_tokens")
        invariants.non_negative(self, "num_hidden_layers", "window")
        invariants.multiple(self, "hidden_size", "num_attention_heads")
        invariants.fraction(self, "hidden_dropout_prob", "attention_probs_dropout_prob")

    def bert(self) -> BertConfig:
        return BertConfig(hidden_size=self.hidden_size, num_attention_heads=self.num_attention_heads,
                          intermediate_size=self.intermediate_size, hidden_act=self.hidden_act,
                          hidden_dropout_prob=self.hidden_dropout_prob,
                          attention_probs_dropout_prob=self.attention_probs_dropout_prob,
                          layer_norm_eps=self.layer_norm_eps, initializer_range=self.initializer_range,
                          dtype=self.dtype)

    @classmethod
    def from_hf(cls, d: dict[str, Any], **overrides) -> "QFormerConfig":
        """From a Blip2QFormerConfig dict (`num_query_tokens` and `window` are kdjax's)."""
        if d.get("use_qformer_text_input"):
            raise ValueError("Q-Former text input (use_qformer_text_input) is not supported")
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute position embeddings are supported")
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names and v is not None}
        kw.update(overrides)
        return cls(**kw)

    def to_hf(self) -> dict[str, Any]:
        return {"model_type": "blip_2_qformer", "hidden_size": self.hidden_size,
                "num_hidden_layers": self.num_hidden_layers, "num_attention_heads": self.num_attention_heads,
                "intermediate_size": self.intermediate_size, "hidden_act": self.hidden_act,
                "hidden_dropout_prob": self.hidden_dropout_prob,
                "attention_probs_dropout_prob": self.attention_probs_dropout_prob,
                "layer_norm_eps": self.layer_norm_eps, "initializer_range": self.initializer_range,
                "cross_attention_frequency": self.cross_attention_frequency,
                "encoder_hidden_size": self.encoder_hidden_size, "use_qformer_text_input": False,
                "kdjax_num_query_tokens": self.num_query_tokens, "kdjax_window": self.window}


class QFormerLayer(nnx.Module):
    def __init__(self, cfg: QFormerConfig, index: int, rngs: nnx.Rngs):
        b = cfg.bert()
        self.attention = Attention(b, rngs)
        self.crossattention = (Attention(b, rngs, kv_dim=cfg.encoder_hidden_size)
                               if index % cfg.cross_attention_frequency == 0 else None)
        self.intermediate_query = Intermediate(b, rngs)
        self.output_query = DenseResidualNorm(b, cfg.intermediate_size, rngs)

    def __call__(self, x, enc, enc_bias, *, deterministic, rngs):
        kw = dict(deterministic=deterministic, rngs=rngs)
        x, self_probs = self.attention(x, None, **kw)
        cross_probs = None
        if self.crossattention is not None:
            x, cross_probs = self.crossattention(x, enc_bias, kv=enc, **kw)
        return self.output_query(self.intermediate_query(x), x, **kw), self_probs, cross_probs


class QFormerEncoder(nnx.Module):
    def __init__(self, cfg: QFormerConfig, rngs: nnx.Rngs):
        self.layer = nnx.List([QFormerLayer(cfg, i, rngs) for i in range(cfg.num_hidden_layers)])


class QFormer(nnx.Module):
    """Returns last_hidden_state (b, T, hidden), token_mask (b, T) (a window with no valid encoder token is
    False), and on request hidden_states / attentions / cross_attentions (per window: leading axis b*W)."""

    def __init__(self, cfg: QFormerConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.query_tokens = nnx.Param(
            nnx.initializers.normal(cfg.initializer_range)(rngs.params(), (1, cfg.num_query_tokens, cfg.hidden_size)))
        self.layernorm = _norm(cfg.bert(), cfg.hidden_size, rngs)
        self.dropout = nnx.Dropout(cfg.hidden_dropout_prob)
        self.encoder = QFormerEncoder(cfg, rngs)

    def __call__(self, encoder_hidden_states: jax.Array, encoder_attention_mask: jax.Array | None = None, *,
                 output_hidden_states: bool = False, output_attentions: bool = False,
                 deterministic: bool = True, rngs: nnx.Rngs | None = None) -> dict[str, Any]:
        cfg = self.cfg
        enc = encoder_hidden_states.astype(jnp.dtype(cfg.dtype))
        b, n, e = enc.shape
        mask = (jnp.ones((b, n), bool) if encoder_attention_mask is None
                else encoder_attention_mask.astype(bool))
        if cfg.window:
            w = n // cfg.window
            if w == 0:
                raise ValueError(f"{n} encoder tokens are fewer than one window of {cfg.window}")
            enc = enc[:, :w * cfg.window].reshape(b * w, cfg.window, e)
            mask = mask[:, :w * cfg.window].reshape(b * w, cfg.window)
        rows = enc.shape[0]
        x = jnp.broadcast_to(self.query_tokens[...], (rows,) + self.query_tokens.shape[1:]).astype(enc.dtype)
        x = self.dropout(self.layernorm(x), deterministic=deterministic, rngs=rngs)
        bias = padding_bias(mask)
        hidden, attns, cross = [x], [], []
        for layer in self.encoder.layer:
            x, sp, cp = layer(x, enc, bias, deterministic=deterministic, rngs=rngs)
            hidden.append(x)
            attns.append(sp)
            if cp is not None:
                cross.append(cp)
        window_ok = jnp.repeat(mask.any(axis=1), cfg.num_query_tokens)  # (rows * N,)
        out: dict[str, Any] = {"last_hidden_state": x.reshape(b, -1, cfg.hidden_size),
                               "token_mask": window_ok.reshape(b, -1)}
        if output_hidden_states:
            out["hidden_states"] = tuple(hidden)
        if output_attentions:
            out["attentions"], out["cross_attentions"] = tuple(attns), tuple(cross)
        return out
