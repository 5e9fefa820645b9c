"""BERT-family encoders (BERT, RoBERTa and their domain variants) as Flax NNX modules.

One module covers the shapes behind KM-BERT, Clinical-BERT, Ko-BERT, BERT-base, RoBERTa and
Bio-RoBERTa: they differ only in config (RoBERTa: position ids offset by the padding index, one token
type). Outputs use Hugging Face's names, and attention maps are post-softmax probabilities.
Submodule names follow HF's so the parameter map in `kdjax.convert.hf_bert` stays one line per tensor.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from kdjax.models import invariants
from kdjax.models.layers import activation, attention_with_probs, padding_bias

_init = nnx.initializers.normal

# Logical axes per parameter path (see kdjax.train.sharding); unmatched parameters are replicated.
LOGICAL_AXES = (
    (r"word_embeddings\.embedding$", ("vocab", "embed")),
    (r"(position|token_type)_embeddings\.embedding$", (None, "embed")),
    (r"attention\.self\.(query|key|value)\.kernel$", ("embed", "heads")),
    (r"attention\.self\.(query|key|value)\.bias$", ("heads",)),
    (r"attention\.output\.dense\.kernel$", ("heads", "embed")),
    (r"intermediate\.dense\.kernel$", ("embed", "mlp")),
    (r"intermediate\.dense\.bias$", ("mlp",)),
    (r"output\.dense\.kernel$", ("mlp", "embed")),
    (r"(pooler|classifier)\.dense\.kernel$", ("embed", None)),
)


@dataclasses.dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int = 0
    model_type: str = "bert"  # "bert" or "roberta" (also xlm-roberta, camembert: RoBERTa positions)
    add_pooling_layer: bool = True
    # Sequence classification (ignored by the bare encoder).
    num_labels: int = 2
    classifier_head: str = "bert"  # "bert" | "roberta" | "dsg_kd" | "first_token"; see SequenceClassifier
    classifier_dropout: float | None = None
    dtype: str = "float32"  # compute dtype; parameters stay float32

    def __post_init__(self):
        invariants.positive(self, "vocab_size", "intermediate_size", "max_position_embeddings", "type_vocab_size",
                            "num_labels")
        invariants.non_negative(self, "num_hidden_layers")
        invariants.multiple(self, "hidden_size", "num_attention_heads")
        invariants.fraction(self, "hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def roberta_positions(self) -> bool:
        return self.model_type in ("roberta", "xlm-roberta", "camembert")

    @classmethod
    def from_hf(cls, d: dict[str, Any], **overrides) -> "BertConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names and v is not None}
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"position_embedding_type={d['position_embedding_type']!r} is not supported")
        if d.get("is_decoder") or d.get("add_cross_attention"):
            raise ValueError("decoder/cross-attention BERT configs are not supported by the encoder")
        if "id2label" in d and "num_labels" not in overrides:
            kw["num_labels"] = len(d["id2label"])
        kw.update(overrides)
        return cls(**kw)

    def to_hf(self) -> dict[str, Any]:
        arch = "RobertaModel" if self.roberta_positions else "BertModel"
        out = {
            "architectures": [arch], "model_type": self.model_type,
            "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers, "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size, "hidden_act": self.hidden_act,
            "hidden_dropout_prob": self.hidden_dropout_prob,
            "attention_probs_dropout_prob": self.attention_probs_dropout_prob,
            "max_position_embeddings": self.max_position_embeddings,
            "type_vocab_size": self.type_vocab_size, "layer_norm_eps": self.layer_norm_eps,
            "initializer_range": self.initializer_range, "pad_token_id": self.pad_token_id,
            "position_embedding_type": "absolute",
        }
        if self.roberta_positions:
            out.update(bos_token_id=0, eos_token_id=2)
        return out


def _dense(cfg: BertConfig, n_in: int, n_out: int, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(n_in, n_out, kernel_init=_init(cfg.initializer_range), dtype=jnp.dtype(cfg.dtype),
                      rngs=rngs)


def _norm(cfg: BertConfig, n: int, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(n, epsilon=cfg.layer_norm_eps, dtype=jnp.dtype(cfg.dtype), rngs=rngs)


class Embeddings(nnx.Module):
    def __init__(self, cfg: BertConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        emb = lambda n: nnx.Embed(n, cfg.hidden_size, embedding_init=_init(cfg.initializer_range),
                                  dtype=jnp.dtype(cfg.dtype), rngs=rngs)
        self.word_embeddings = emb(cfg.vocab_size)
        self.position_embeddings = emb(cfg.max_position_embeddings)
        self.token_type_embeddings = emb(cfg.type_vocab_size)
        self.LayerNorm = _norm(cfg, cfg.hidden_size, rngs)
        self.dropout = nnx.Dropout(cfg.hidden_dropout_prob)

    def __call__(self, input_ids, token_type_ids, position_ids, *, deterministic, rngs):
        x = (self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
             + self.position_embeddings(position_ids))
        return self.dropout(self.LayerNorm(x), deterministic=deterministic, rngs=rngs)


class SelfAttention(nnx.Module):
    """Multi-head attention; with `kv_dim` and `kv=` it is cross-attention to another sequence (the
    Q-Former's attention to encoder tokens)."""

    def __init__(self, cfg: BertConfig, rngs: nnx.Rngs, kv_dim: int | None = None):
        self.cfg = cfg
        h = cfg.hidden_size
        self.query = _dense(cfg, h, h, rngs)
        self.key, self.value = (_dense(cfg, kv_dim or h, h, rngs) for _ in range(2))
        self.dropout = nnx.Dropout(cfg.attention_probs_dropout_prob)

    def __call__(self, x, bias, *, kv=None, deterministic, rngs):
        src = x if kv is None else kv
        split = lambda t: t.reshape(*t.shape[:2], self.cfg.num_attention_heads, self.cfg.head_dim)
        drop = lambda p: self.dropout(p, deterministic=deterministic, rngs=rngs)
        ctx, probs = attention_with_probs(split(self.query(x)), split(self.key(src)), split(self.value(src)),
                                          bias, drop)
        return ctx.reshape(*x.shape[:2], -1), probs


class DenseResidualNorm(nnx.Module):
    """dense -> dropout -> +residual -> LayerNorm (HF's BertSelfOutput / BertOutput)."""

    def __init__(self, cfg: BertConfig, n_in: int, rngs: nnx.Rngs):
        self.dense = _dense(cfg, n_in, cfg.hidden_size, rngs)
        self.LayerNorm = _norm(cfg, cfg.hidden_size, rngs)
        self.dropout = nnx.Dropout(cfg.hidden_dropout_prob)

    def __call__(self, x, residual, *, deterministic, rngs):
        x = self.dropout(self.dense(x), deterministic=deterministic, rngs=rngs)
        return self.LayerNorm(x + residual)


class Attention(nnx.Module):
    def __init__(self, cfg: BertConfig, rngs: nnx.Rngs, kv_dim: int | None = None):
        self.self = SelfAttention(cfg, rngs, kv_dim)
        self.output = DenseResidualNorm(cfg, cfg.hidden_size, rngs)

    def __call__(self, x, bias, *, kv=None, deterministic, rngs):
        ctx, probs = self.self(x, bias, kv=kv, deterministic=deterministic, rngs=rngs)
        return self.output(ctx, x, deterministic=deterministic, rngs=rngs), probs


class Intermediate(nnx.Module):
    def __init__(self, cfg: BertConfig, rngs: nnx.Rngs):
        self.dense = _dense(cfg, cfg.hidden_size, cfg.intermediate_size, rngs)
        self.act = activation(cfg.hidden_act)

    def __call__(self, x):
        return self.act(self.dense(x))


class Layer(nnx.Module):
    def __init__(self, cfg: BertConfig, rngs: nnx.Rngs):
        self.attention = Attention(cfg, rngs)
        self.intermediate = Intermediate(cfg, rngs)
        self.output = DenseResidualNorm(cfg, cfg.intermediate_size, rngs)

    def __call__(self, x, bias, *, deterministic, rngs):
        a, probs = self.attention(x, bias, deterministic=deterministic, rngs=rngs)
        return self.output(self.intermediate(a), a, deterministic=deterministic, rngs=rngs), probs


class Encoder(nnx.Module):
    def __init__(self, cfg: BertConfig, rngs: nnx.Rngs):
        self.layer = nnx.List([Layer(cfg, rngs) for _ in range(cfg.num_hidden_layers)])


class Pooler(nnx.Module):
    def __init__(self, cfg: BertConfig, rngs: nnx.Rngs):
        self.dense = _dense(cfg, cfg.hidden_size, cfg.hidden_size, rngs)

    def __call__(self, x):
        return jnp.tanh(self.dense(x[:, 0]))


def roberta_position_ids(input_ids: jax.Array, pad_token_id: int) -> jax.Array:
    """RoBERTa numbers non-padding tokens from pad_token_id + 1 and gives padding pad_token_id."""
    mask = (input_ids != pad_token_id).astype(jnp.int32)
    return jnp.cumsum(mask, axis=1) * mask + pad_token_id


class BertModel(nnx.Module):
    """Encoder returning HF's outputs: last_hidden_state, pooler_output, hidden_states, attentions.

    hidden_states has num_hidden_layers + 1 entries (embedding output first); attentions has one
    (batch, heads, query, key) probability map per layer.
    """

    def __init__(self, cfg: BertConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embeddings = Embeddings(cfg, rngs)
        self.encoder = Encoder(cfg, rngs)
        self.pooler = Pooler(cfg, rngs) if cfg.add_pooling_layer else None

    def keep_layers(self, n: int) -> None:
        """Keep the first `n` encoder layers, in place (a smaller student from a pretrained checkpoint, as
        DistilBERT and TinyBERT initialise theirs); the pooler stays."""
        if not 0 < n <= self.cfg.num_hidden_layers:
            raise ValueError(f"keep_layers({n}): the encoder has {self.cfg.num_hidden_layers} layers")
        self.encoder.layer = nnx.List(list(self.encoder.layer)[:n])
        self.cfg = dataclasses.replace(self.cfg, num_hidden_layers=n)

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array | None = None,
                 token_type_ids: jax.Array | None = None, position_ids: jax.Array | None = None, *,
                 output_hidden_states: bool = False, output_attentions: bool = False,
                 deterministic: bool = True, rngs: nnx.Rngs | None = None) -> dict[str, Any]:
        cfg = self.cfg
        if attention_mask is None:
            attention_mask = jnp.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        if position_ids is None:
            if cfg.roberta_positions:
                position_ids = roberta_position_ids(input_ids, cfg.pad_token_id)
            else:
                position_ids = jnp.broadcast_to(jnp.arange(input_ids.shape[1]), input_ids.shape)
        x = self.embeddings(input_ids, token_type_ids, position_ids, deterministic=deterministic,
                            rngs=rngs)
        bias = padding_bias(attention_mask)
        hidden, attns = [x], []
        for layer in self.encoder.layer:
            x, probs = layer(x, bias, deterministic=deterministic, rngs=rngs)
            hidden.append(x)
            attns.append(probs)
        out: dict[str, Any] = {"last_hidden_state": x}
        if self.pooler is not None:
            out["pooler_output"] = self.pooler(x)
        if output_hidden_states:
            out["hidden_states"] = tuple(hidden)
        if output_attentions:
            out["attentions"] = tuple(attns)
        return out


class ClassificationHead(nnx.Module):
    """dropout -> dense -> act -> dropout -> out_proj.

    act=tanh on the first token is RoBERTa's head; act=gelu on the pooled output is the DSG-KD
    reference code's student head.
    """

    def __init__(self, cfg: BertConfig, act: str, rngs: nnx.Rngs):
        self.dense = _dense(cfg, cfg.hidden_size, cfg.hidden_size, rngs)
        self.out_proj = _dense(cfg, cfg.hidden_size, cfg.num_labels, rngs)
        self.act = activation(act)
        rate = cfg.classifier_dropout if cfg.classifier_dropout is not None else cfg.hidden_dropout_prob
        self.dropout = nnx.Dropout(rate)

    def __call__(self, x, *, deterministic, rngs):
        x = self.dropout(x, deterministic=deterministic, rngs=rngs)
        x = self.act(self.dense(x))
        x = self.dropout(x, deterministic=deterministic, rngs=rngs)
        return self.out_proj(x)


class SequenceClassifier(nnx.Module):
    """Encoder + classification head; returns the encoder outputs plus `logits`.

    classifier_head:
      "bert"    HF BertForSequenceClassification: dropout -> linear on pooler_output.
      "roberta" HF RobertaForSequenceClassification: ClassificationHead(tanh) on the first token.
      "dsg_kd"  DSG-KD reference student head: ClassificationHead(gelu) on the pooled output
                (pooler_output when the encoder has a pooler, else the first token).
      "first_token" dropout -> linear on the first token's last hidden state, no pooler (FENSE's
                error detector, `BERTFlatClassifier`).
    """

    def __init__(self, cfg: BertConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        kind = cfg.classifier_head
        if kind == "bert" and not cfg.add_pooling_layer:
            raise ValueError("classifier_head='bert' needs add_pooling_layer=True")
        self.encoder = BertModel(cfg, rngs=rngs)
        if kind in ("bert", "first_token"):
            rate = cfg.classifier_dropout if cfg.classifier_dropout is not None else cfg.hidden_dropout_prob
            self.dropout = nnx.Dropout(rate)
            self.classifier = _dense(cfg, cfg.hidden_size, cfg.num_labels, rngs)
        elif kind in ("roberta", "dsg_kd"):
            self.classifier = ClassificationHead(cfg, "tanh" if kind == "roberta" else "gelu", rngs)
        else:
            raise ValueError(f"unknown classifier_head {kind!r}")

    def keep_layers(self, n: int) -> None:
        """Keep the encoder's first `n` layers (`BertModel.keep_layers`), the head unchanged."""
        self.encoder.keep_layers(n)
        self.cfg = dataclasses.replace(self.cfg, num_hidden_layers=n)

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, *,
                 output_hidden_states: bool = False, output_attentions: bool = False,
                 deterministic: bool = True, rngs: nnx.Rngs | None = None) -> dict[str, Any]:
        out = self.encoder(input_ids, attention_mask, token_type_ids, position_ids,
                           output_hidden_states=output_hidden_states, output_attentions=output_attentions,
                           deterministic=deterministic, rngs=rngs)
        kind = self.cfg.classifier_head
        if kind in ("bert", "first_token"):
            feats = out["pooler_output"] if kind == "bert" else out["last_hidden_state"][:, 0]
            logits = self.classifier(self.dropout(feats, deterministic=deterministic, rngs=rngs))
        else:
            if kind == "dsg_kd" and "pooler_output" in out:
                feats = out["pooler_output"]
            else:
                feats = out["last_hidden_state"][:, 0]
            logits = self.classifier(feats, deterministic=deterministic, rngs=rngs)
        out["logits"] = logits.astype(jnp.float32)
        return out
