"""Hugging Face PyTorch checkpoints <-> kdjax Flax models.

    model = kdjax.convert.from_pretrained("/path/to/hf_dir")                 # architecture from config.json
    clf = kdjax.convert.from_pretrained(dir, task="sequence_classification", num_labels=2)
    kdjax.convert.save_pretrained(model, "/out")     # loads with transformers.AutoModel.from_pretrained
    ced = kdjax.convert.from_pretrained("ced_base.pt", arch="ced_base")      # released CED state dict

Each model family registers its loader and exporter beside its parameter map (kdjax/convert/<family>.py;
kdjax.convert.registry); these two functions look the family up by the checkpoint's `model_type` or by the
model's class. Loading refuses a partial load: missing, unexpected and mis-shaped tensors are listed by name in
the error. Tensors that are known and deliberately unused (buffers, pre-training heads) are reported in
`LoadReport.ignored`; a task head absent from an encoder checkpoint is freshly initialised and listed in
`LoadReport.initialized` (the situation HF warns about when fine-tuning starts).
"""

from __future__ import annotations

import logging
import os

from flax import nnx

# the families register themselves on import
from kdjax.convert import ced, effaac, efficientnet, hf_bert, hf_llama, hf_qformer, hf_resnet, hf_vit  # noqa: F401
from kdjax.convert import registry
from kdjax.convert.checkpoint_io import read_config
from kdjax.convert.effaac import effaac_tensors, load_effaac
from kdjax.convert.efficientnet import load_efficientnet
from kdjax.convert.hf_bert import load_bert
from kdjax.convert.hf_qformer import load_qformer, qformer_tensors
from kdjax.convert.param_map import ConversionError, LoadReport, nonfinite_allowed
from kdjax.models.invariants import ConfigError

__all__ = ["from_pretrained", "save_pretrained", "load_bert", "load_qformer", "qformer_tensors", "load_image_model",
           "load_efficientnet", "load_effaac", "effaac_tensors", "ConversionError", "ConfigError", "LoadReport"]


def load_image_model(tensors, hf_cfg: dict, *, source: str = "", seed: int = 0, **overrides):
    """A frozen-teacher image encoder from HF-named tensors: ViTModel / ViTForImageClassification
    (model_type "vit") or ResNetModel / ResNetForImageClassification ("resnet")."""
    kind = hf_cfg.get("model_type")
    if kind == "vit":
        return hf_vit.load_tensors(tensors, hf_cfg, source=source, seed=seed, **overrides)
    if kind == "resnet":
        return hf_resnet.load_tensors(tensors, hf_cfg, source=source, seed=seed, **overrides)
    raise ValueError(f"{source}: model_type {kind!r} is not an image model kdjax knows (vit, resnet)")


def from_pretrained(path: str, *, task: str = "encoder", arch: str | None = None, seed: int = 0,
                    return_report: bool = False, mesh=None, allow_nonfinite: bool = False, **config_overrides):
    """Load a checkpoint as a kdjax model.

    A directory names its family in config.json's `model_type` (unless `arch` does): BERT/RoBERTa (`task`
    "encoder" or "sequence_classification"), LLaMA (sharded safetensors included, one tensor at a time; with
    `mesh`, each tensor goes straight to its shards), BLIP-2's or a bare Blip2QFormerModel's Q-Former, ViT, ResNet,
    and the directories kdjax writes for CED, EfficientNet and the EffAAC student. A bare weights file is a
    released CED state dict (`arch` one of ced_tiny/mini/small/base, inferred from shapes if omitted).
    `config_overrides` replace config fields (e.g. num_labels=2, classifier_head="dsg_kd", dtype="bfloat16",
    remat=True; for CED e.g. num_classes=0 to drop the AudioSet head).

    Refused, as PyTorch would refuse them, with the file named: a config no model can be built from
    (`ConfigError`, e.g. hidden_size not a multiple of num_attention_heads), damaged or truncated weight files
    (`InputError`), and tensors that are missing, unexpected, mis-shaped (in the checkpoint's own layout) or hold
    NaN/Inf (`ConversionError`; `allow_nonfinite=True` loads the last with a warning).
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such checkpoint file or directory")
    model_type = arch
    if model_type is None:
        model_type = None if os.path.isfile(path) else read_config(path).get("model_type")
    family = registry.by_model_type(model_type) if model_type is not None else registry.for_file()
    if family is None:
        known = sorted(t for f in registry.families() for t in f.model_types)
        raise ValueError(f"{path}: model_type {model_type!r} is not supported (known: {', '.join(known)})")
    try:
        with nonfinite_allowed(allow_nonfinite):
            model, report = family.load(path, task=task, arch=arch, seed=seed, mesh=mesh, **config_overrides)
    except ConfigError as e:
        where = path if os.path.isfile(path) else os.path.join(path, "config.json")
        given = f" with overrides {config_overrides}" if config_overrides else ""
        raise ConfigError(f"{where}{given}: {e}") from None
    for name in ("ignored", "initialized"):
        items = getattr(report, name)
        if items:
            logging.info("from_pretrained(%s): %d %s: %s", path, len(items), name, ", ".join(items[:20]))
    return (model, report) if return_report else model


def save_pretrained(model: nnx.Module, out_dir: str, *, tokenizer_dir: str | None = None, **options) -> None:
    """Write `model` as a directory its PyTorch counterpart loads (and `from_pretrained` reads back).

    transformers' AutoModel classes for BERT/RoBERTa (sequence classifiers with HF-compatible heads in the
    *ForSequenceClassification layout; a DSG-KD head beside the encoder in kdjax_head.safetensors), LLaMA, ViT,
    ResNet and Blip2QFormerModel; the released PyTorch CED's state dict (strict=True) with a config.json for
    kdjax; efficientnet_pytorch's and the PyTorch EffAAC student's state dicts with kdjax's config. bfloat16 is
    written as float32. `tokenizer_dir`'s tokenizer files are copied beside (BERT, LLaMA). `options` are the
    family's own (CED: `layout="split"` writes LOAE's separate q/k/v projections instead of the released fused qkv).
    """
    family = registry.by_model(model)
    if family is None:
        known = sorted(c.__name__ for f in registry.families() for c in f.classes)
        raise TypeError(f"save_pretrained does not know {type(model).__name__} (known: {', '.join(known)})")
    family.save(model, out_dir, tokenizer_dir=tokenizer_dir, **options)
