"""Parameter map between HF BertModel/RobertaModel (and their sequence classifiers) and kdjax's."""

from __future__ import annotations

from flax import nnx

from kdjax.convert.param_map import Entry, TensorRule, expand
from kdjax.models.bert import BertConfig, BertModel, SequenceClassifier

MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "camembert")

# Module names mirror HF's, so the encoder map is the identity on module paths.
_LAYER = [
    ("attention.self.query", "linear"), ("attention.self.key", "linear"),
    ("attention.self.value", "linear"), ("attention.output.dense", "linear"),
    ("attention.output.LayerNorm", "layernorm"), ("intermediate.dense", "linear"),
    ("output.dense", "linear"), ("output.LayerNorm", "layernorm"),
]
_EMB = [("embeddings.word_embeddings", "embed"), ("embeddings.position_embeddings", "embed"),
        ("embeddings.token_type_embeddings", "embed"), ("embeddings.LayerNorm", "layernorm")]


def encoder_entries(cfg: BertConfig, hf_prefix: str = "", flax_prefix: str = "") -> list[Entry]:
    j = lambda p, s: f"{p}{s}"
    out = [Entry(j(hf_prefix, n), j(flax_prefix, n), k) for n, k in _EMB]
    out += [Entry(j(hf_prefix, f"encoder.layer.{{i}}.{n}"), j(flax_prefix, f"encoder.layer.{{i}}.{n}"), k)
            for n, k in _LAYER]
    if cfg.add_pooling_layer:
        out.append(Entry(j(hf_prefix, "pooler.dense"), j(flax_prefix, "pooler.dense"), "linear"))
    return out


def head_entries(cfg: BertConfig) -> list[Entry]:
    if cfg.classifier_head in ("bert", "first_token"):
        return [Entry("classifier", "classifier", "linear")]
    return [Entry("classifier.dense", "classifier.dense", "linear"),
            Entry("classifier.out_proj", "classifier.out_proj", "linear")]


def base_prefix(cfg: BertConfig) -> str:
    """HF's base_model_prefix for task checkpoints."""
    return "roberta." if cfg.roberta_positions else "bert."


def rules(model: nnx.Module, hf_prefix: str = "") -> list[TensorRule]:
    """Tensor rules for `model`; `hf_prefix` is the checkpoint's prefix for encoder tensors."""
    cfg: BertConfig = model.cfg
    if isinstance(model, SequenceClassifier):
        entries = encoder_entries(cfg, hf_prefix, "encoder.") + head_entries(cfg)
    elif isinstance(model, BertModel):
        entries = encoder_entries(cfg, hf_prefix)
    else:
        raise TypeError(f"not a BERT-family model: {type(model).__name__}")
    return expand(entries, cfg.num_hidden_layers)


# Tensors that HF checkpoints carry but an encoder deliberately does not read: registered buffers,
# pre-training heads (MLM/NSP) and, when loading a bare encoder, task heads.
IGNORE = ("*embeddings.position_ids", "*embeddings.token_type_ids", "cls.*", "lm_head.*",
          "classifier.*", "qa_outputs.*")
