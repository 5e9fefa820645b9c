"""Parameter map between HF BertModel/RobertaModel (and their sequence classifiers) and kdjax's."""

from __future__ import annotations

import os

from flax import nnx

from kdjax.convert.param_map import Entry, TensorRule, expand
from kdjax.convert.pytorch_code import PYTORCH_CODE
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


# ------------------------------------------------------------------------------------- load / save
HEAD_FILE = "kdjax_head.safetensors"  # how kdjax < 2026-12 saved a DSG-KD head (beside the encoder); still read


def load_bert(tensors, hf_cfg: dict, *, task: str = "encoder", source: str = "", seed: int = 0, **overrides):
    """A BERT-family model from HF-named tensors (a mapping name -> array) and a HF config dict; the engine
    behind `from_pretrained` for checkpoints that are not HF directories. Returns (model, LoadReport)."""
    from kdjax.convert.param_map import hf_to_flax
    from kdjax.models import state as state_lib

    if "kdjax_classifier_head" in hf_cfg and "classifier_head" not in overrides:
        overrides["classifier_head"] = hf_cfg["kdjax_classifier_head"]
    cfg = BertConfig.from_hf(hf_cfg, **overrides)
    prefix = base_prefix(cfg)
    has_prefix = any(k.startswith(prefix) for k in tensors)
    if task == "sequence_classification":
        build = lambda rngs: SequenceClassifier(cfg, rngs=rngs)
        may_init = ("classifier.*",)
    elif task == "encoder":
        has_pooler = any(k.endswith("pooler.dense.weight") for k in tensors)
        if not has_pooler and cfg.add_pooling_layer and "add_pooling_layer" not in overrides:
            cfg = BertConfig.from_hf(hf_cfg, **{**overrides, "add_pooling_layer": False})
        build = lambda rngs: BertModel(cfg, rngs=rngs)
        may_init = ()
    else:
        raise ValueError(f"unknown task {task!r}; use 'encoder' or 'sequence_classification'")
    abstract = state_lib.abstract_module(lambda: build(nnx.Rngs(seed)))
    table = rules(abstract, prefix if has_prefix else "")
    shapes = {k: v.shape for k, v in state_lib.flatten(nnx.state(abstract)).items()}
    flat, report = hf_to_flax(tensors, table, shapes, ignore=IGNORE, may_init=may_init, source=source)
    fill = build(nnx.Rngs(seed)) if report.initialized else None
    return state_lib.load_flat(abstract, flat, fill), report


def load(path: str, *, task: str = "encoder", seed: int = 0, **overrides):
    from kdjax.convert.checkpoint_io import LazyTensors, read_config

    tensors = LazyTensors(path)
    head_file = os.path.join(path, HEAD_FILE)
    if task == "sequence_classification" and os.path.isfile(head_file):
        from safetensors.numpy import load_file

        tensors = {**{k: tensors[k] for k in tensors}, **load_file(head_file)}
    return load_bert(tensors, read_config(path), task=task, source=path, seed=seed, **overrides)


REMOTE_CODE = "modeling_kdjax_bert.py"  # copied from kdjax/convert/pytorch/ into the directory


def save(model: nnx.Module, out_dir: str, *, tokenizer_dir: str | None = None) -> None:
    """A transformers directory: BertModel/RobertaModel, or a sequence classifier that
    `AutoModelForSequenceClassification.from_pretrained(out_dir)` loads with the trained head: transformers' own
    *ForSequenceClassification for the "bert" and "roberta" heads, and for kdjax's "dsg_kd" and "first_token" heads
    (no transformers class has them) kdjax's PyTorch classes, shipped in the directory (`trust_remote_code=True`).
    The encoder loads with `AutoModel.from_pretrained(out_dir)` in every case."""
    import shutil

    from kdjax.convert.common import host_flat, write_dir
    from kdjax.convert.param_map import flax_to_hf

    flat = host_flat(model)
    cfg: BertConfig = model.cfg
    hf_cfg = cfg.to_hf()
    if isinstance(model, SequenceClassifier):
        tensors = flax_to_hf(flat, rules(model, base_prefix(cfg)))
        family = "Roberta" if cfg.roberta_positions else "Bert"
        hf_cfg["id2label"] = {str(i): f"LABEL_{i}" for i in range(cfg.num_labels)}
        hf_cfg["label2id"] = {f"LABEL_{i}": i for i in range(cfg.num_labels)}
        if cfg.classifier_dropout is not None:
            hf_cfg["classifier_dropout"] = cfg.classifier_dropout
        if cfg.classifier_head in ("bert", "roberta"):
            hf_cfg["architectures"] = [f"{family}ForSequenceClassification"]
        else:
            name = f"Kdjax{family}ForSequenceClassification"
            hf_cfg["architectures"] = [name]
            hf_cfg["auto_map"] = {"AutoModelForSequenceClassification": f"{REMOTE_CODE[:-3]}.{name}"}
            hf_cfg["kdjax_classifier_head"] = cfg.classifier_head
    else:
        tensors = flax_to_hf(flat, rules(model, ""))
    hf_cfg["add_pooling_layer"] = cfg.add_pooling_layer
    write_dir(out_dir, tensors, hf_cfg, tokenizer_dir=tokenizer_dir)
    if "auto_map" in hf_cfg:
        shutil.copy(os.path.join(PYTORCH_CODE, REMOTE_CODE), os.path.join(out_dir, REMOTE_CODE))


def _register():
    from kdjax.convert import registry

    registry.register(registry.Family(
        "bert", MODEL_TYPES, (BertModel, SequenceClassifier),
        lambda path, *, task="encoder", arch=None, seed=0, mesh=None, **kw: load(path, task=task, seed=seed, **kw),
        save))


_register()
