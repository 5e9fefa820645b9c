"""Hugging Face PyTorch checkpoints <-> kdjax Flax models.

    model = kdjax.convert.from_pretrained("/path/to/hf_dir")                 # architecture from config.json
    clf = kdjax.convert.from_pretrained(dir, task="sequence_classification", num_labels=2)
    kdjax.convert.save_pretrained(model, "/out")     # loads with transformers.AutoModel.from_pretrained
    ced = kdjax.convert.from_pretrained("ced_base.pt", arch="ced_base")      # released CED state dict

Loading refuses a partial load: missing, unexpected and mis-shaped tensors are listed by name in the
error. Tensors that are known and deliberately unused (buffers, pre-training heads) are reported in
`LoadReport.ignored`; a task head absent from an encoder checkpoint is freshly initialised and listed
in `LoadReport.initialized` (the situation HF warns about when fine-tuning starts).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from kdjax.convert import ced as ced_map
from kdjax.convert import hf_bert, hf_llama, hf_qformer, hf_resnet, hf_vit
from kdjax.convert.checkpoint_io import LazyTensors, read_config, write_json, write_safetensors
from kdjax.convert.param_map import ConversionError, HFView, LoadReport, flax_to_hf, hf_to_flax
from kdjax.models import state as state_lib
from kdjax.models.bert import BertConfig, BertModel, SequenceClassifier
from kdjax.models.ced import CED, CedConfig
from kdjax.models.llama import LlamaConfig, LlamaForCausalLM
from kdjax.models.lora import layers as lora_layers
from kdjax.models.qformer import QFormer, QFormerConfig
from kdjax.models.resnet import ResNet, ResNetConfig
from kdjax.models.vit import ViT, ViTConfig

__all__ = ["from_pretrained", "save_pretrained", "load_bert", "load_qformer", "qformer_tensors", "load_image_model",
           "ConversionError", "LoadReport"]

_HEAD_FILE = "kdjax_head.safetensors"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json",
                    "merges.txt", "vocab.json", "sentencepiece.bpe.model", "spiece.model", "tokenizer.model",
                    "generation_config.json",
                    "added_tokens.json")


def _bert_from_pretrained(path: str, hf_cfg: dict, task: str, seed: int, overrides: dict
                          ) -> tuple[nnx.Module, LoadReport]:
    tensors = LazyTensors(path)
    head_file = os.path.join(path, _HEAD_FILE)
    if task == "sequence_classification" and os.path.isfile(head_file):
        from safetensors.numpy import load_file

        tensors = {**{k: tensors[k] for k in tensors}, **load_file(head_file)}
    return load_bert(tensors, hf_cfg, task=task, source=path, seed=seed, **overrides)


def load_bert(tensors, hf_cfg: dict, *, task: str = "encoder", source: str = "", seed: int = 0,
              **overrides) -> tuple[nnx.Module, LoadReport]:
    """A BERT-family model from HF-named tensors (a mapping name -> array) and a HF config dict;
    the engine behind `from_pretrained` for checkpoints that are not HF directories."""
    cfg = BertConfig.from_hf(hf_cfg, **overrides)
    prefix = hf_bert.base_prefix(cfg)
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
    rules = hf_bert.rules(abstract, prefix if has_prefix else "")
    shapes = {k: v.shape for k, v in state_lib.flatten(nnx.state(abstract)).items()}
    flat, report = hf_to_flax(tensors, rules, shapes, ignore=hf_bert.IGNORE, may_init=may_init,
                              source=source)
    fill = build(nnx.Rngs(seed)) if report.initialized else None
    return state_lib.load_flat(abstract, flat, fill), report


def _ced_from_pretrained(path: str, arch: str | None, seed: int, overrides: dict
                         ) -> tuple[nnx.Module, LoadReport]:
    tensors = LazyTensors(path)
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json")) and arch is None:
        cfg = CedConfig.from_json({**read_config(path)["ced"], **overrides})
    else:
        cfg = ced_map.infer_config(tensors, arch, **overrides)
    ced_map.check_front_end(tensors, cfg, path)
    tensors = ced_map.adapt_position_embeddings(tensors, cfg)
    abstract = state_lib.abstract_module(lambda: CED(cfg, rngs=nnx.Rngs(seed)))
    shapes = {k: v.shape for k, v in state_lib.flatten(nnx.state(abstract)).items()}
    ignore = ced_map.IGNORE + (() if cfg.num_classes else ("outputlayer.*",))
    # depth < the checkpoint's keeps its first blocks (a truncated encoder); the rest are reported ignored
    ignore += tuple(f"blocks.{i}.*" for i in range(cfg.depth, 64))
    flat, report = hf_to_flax(tensors, ced_map.rules(cfg), shapes, ignore=ignore, source=path)
    return state_lib.load_flat(abstract, flat), report


def _llama_from_pretrained(path: str, hf_cfg: dict, seed: int, mesh, overrides: dict
                           ) -> tuple[nnx.Module, LoadReport]:
    cfg = LlamaConfig.from_hf(hf_cfg, **overrides)
    abstract = state_lib.abstract_module(lambda: LlamaForCausalLM(cfg, rngs=nnx.Rngs(seed)))
    shapes = {k: v.shape for k, v in state_lib.flatten(nnx.state(abstract)).items()}
    dtype = jnp.dtype(cfg.param_dtype)
    if mesh is not None:  # each tensor goes straight to its shards
        from kdjax.models.llama import LOGICAL_AXES
        from kdjax.train import sharding as shd

        specs = shd.param_specs({k: jax.ShapeDtypeStruct(v, dtype)
                                 for k, v in shapes.items()}, mesh, LOGICAL_AXES)
        put = lambda name, x: jax.device_put(np.asarray(x, dtype), shd.named(mesh, specs[name]))
    else:
        put = lambda name, x: jnp.asarray(x, dtype)
    flat, report = hf_to_flax(LazyTensors(path), hf_llama.rules(cfg), shapes, ignore=hf_llama.ignore(cfg),
                              source=path, put=put)
    return state_lib.load_flat(abstract, flat), report


def load_qformer(tensors, hf_cfg: dict, *, hf_prefix: str = "qformer.", query_tokens: str = "query_tokens",
                 source: str = "", seed: int = 0, **overrides) -> tuple[nnx.Module, LoadReport]:
    """A kdjax Q-Former from HF-named tensors: a Blip2Model's `qformer.*` + `query_tokens` (the defaults),
    or a bare Blip2QFormerModel's (hf_prefix="", query tokens under any name). `hf_cfg` is the
    Blip2QFormerConfig dict; overrides set e.g. window=17."""
    cfg = QFormerConfig.from_hf(hf_cfg, **overrides)
    if query_tokens in tensors and "num_query_tokens" not in overrides:
        cfg = dataclasses.replace(cfg, num_query_tokens=int(np.shape(tensors[query_tokens])[1]))
    ignore = hf_qformer.IGNORE + (("vision_model.*", "language_model.*", "language_projection.*")
                                  if hf_prefix else ())
    return _load_family(tensors, lambda: QFormer(cfg, rngs=nnx.Rngs(seed)),
                        hf_qformer.rules(cfg, hf_prefix, query_tokens), ignore, source)


def qformer_tensors(model: nnx.Module, *, hf_prefix: str = "qformer.", query_tokens: str = "query_tokens"
                    ) -> dict[str, np.ndarray]:
    """The Q-Former's parameters under transformers' names (the inverse of `load_qformer`)."""
    flat = {k: _host_view(v) for k, v in state_lib.flatten(nnx.state(model, nnx.Param)).items()}
    return flax_to_hf(flat, hf_qformer.rules(model.cfg, hf_prefix, query_tokens))


def _load_family(tensors, build, rules, ignore, source: str, put=None) -> tuple[nnx.Module, LoadReport]:
    abstract = state_lib.abstract_module(build)
    shapes = {k: v.shape for k, v in state_lib.flatten(nnx.state(abstract)).items()}
    flat, report = hf_to_flax(tensors, rules, shapes, ignore=ignore, source=source, put=put)
    return state_lib.load_flat(abstract, flat), report


def load_image_model(tensors, hf_cfg: dict, *, source: str = "", seed: int = 0, **overrides
                     ) -> tuple[nnx.Module, LoadReport]:
    """A frozen-teacher image encoder from HF-named tensors: ViTModel / ViTForImageClassification
    (model_type "vit") or ResNetModel / ResNetForImageClassification ("resnet")."""
    kind = hf_cfg.get("model_type")
    if kind == "vit":
        prefix = "vit." if any(k.startswith("vit.") for k in tensors) else ""
        has_pooler = any(k.endswith("pooler.dense.weight") for k in tensors)
        cfg = ViTConfig.from_hf(hf_cfg, **{"add_pooling_layer": has_pooler, **overrides})
        return _load_family(tensors, lambda: ViT(cfg, rngs=nnx.Rngs(seed)), hf_vit.rules(cfg, prefix),
                            hf_vit.IGNORE, source)
    if kind == "resnet":
        prefix = "resnet." if any(k.startswith("resnet.") for k in tensors) else ""
        cfg = ResNetConfig.from_hf(hf_cfg, **overrides)
        return _load_family(tensors, lambda: ResNet(cfg, rngs=nnx.Rngs(seed)), hf_resnet.rules(cfg, prefix),
                            hf_resnet.IGNORE, source)
    raise ValueError(f"{source}: model_type {kind!r} is not an image model kdjax knows (vit, resnet)")


def load_efficientnet(tensors, *, name: str = "efficientnet-b2", prefix: str = "", source: str = "", seed: int = 0,
                      **overrides) -> tuple[nnx.Module, LoadReport]:
    """An EfficientNet from an efficientnet_pytorch state dict (`prefix` strips an outer module's name)."""
    from kdjax.convert import efficientnet as eff
    from kdjax.models.efficientnet import EfficientNet

    cfg = eff.infer_config(tensors, name, prefix, **overrides)
    return _load_family(tensors, lambda: EfficientNet(cfg, rngs=nnx.Rngs(seed)), eff.rules(cfg, prefix),
                        tuple(prefix + p for p in eff.IGNORE), source)


def load_effaac(tensors, *, source: str = "", seed: int = 0, num_heads: int = 4, **decoder_overrides
                ) -> tuple[nnx.Module, LoadReport]:
    """EffAAC's student (EfficientNet encoder + Transformer caption decoder) from its PyTorch state dict
    (layout in kdjax.convert.effaac)."""
    from kdjax.convert import effaac as effaac_map
    from kdjax.models.effaac import EffAAC

    cfg = effaac_map.infer_config(tensors, num_heads=num_heads, **decoder_overrides)
    return _load_family(tensors, lambda: EffAAC(cfg, rngs=nnx.Rngs(seed)), effaac_map.rules(cfg),
                        effaac_map.IGNORE, source)


def effaac_tensors(model: nnx.Module) -> dict[str, np.ndarray]:
    """The student's parameters and BatchNorm statistics under the PyTorch names (inverse of `load_effaac`)."""
    from kdjax.convert import effaac as effaac_map

    flat = {k: _host_view(v) for k, v in state_lib.flatten(nnx.state(model, (nnx.Param, nnx.BatchStat))).items()}
    return flax_to_hf(flat, effaac_map.rules(model.cfg))


def from_pretrained(path: str, *, task: str = "encoder", arch: str | None = None, seed: int = 0,
                    return_report: bool = False, mesh=None, **config_overrides):
    """Load a checkpoint as a kdjax model.

    BERT family: a Hugging Face directory; the architecture comes from config.json's `model_type`
    unless `arch` names it. `task` is "encoder" (the bare model) or "sequence_classification".
    CED: a released state dict (.pt/.pth/.safetensors file, or a directory written by
    `save_pretrained`) with `arch` one of ced_tiny/mini/small/base (inferred from shapes if omitted).
    LLaMA: a HF LlamaForCausalLM directory (sharded safetensors included), converted one tensor at a
    time; with `mesh`, each tensor is placed on its shards as it is read (a 7B model never exists whole
    on one host device). Overrides such as dtype="bfloat16", param_dtype="bfloat16", remat=True.
    `config_overrides` replace config fields (e.g. num_labels=2, classifier_head="dsg_kd",
    hidden_dropout_prob=0.0; for CED e.g. num_classes=0 to drop the AudioSet head, target_length).
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such checkpoint file or directory")
    model_type = arch
    if model_type is None:  # a bare state-dict file can only be CED; a directory says in config.json
        model_type = "ced" if os.path.isfile(path) else read_config(path).get("model_type")
    if model_type in ced_map.ARCHS + ("ced", "kdjax_ced"):
        model, report = _ced_from_pretrained(path, model_type if model_type in ced_map.ARCHS else None,
                                             seed, config_overrides)
    elif model_type in ("vit", "resnet"):
        model, report = load_image_model(LazyTensors(path), read_config(path), source=path, seed=seed,
                                         **config_overrides)
    elif model_type == "blip-2":  # the Q-Former of a BLIP-2 checkpoint
        hf_cfg = read_config(path)
        model, report = load_qformer(LazyTensors(path), hf_cfg.get("qformer_config", {}), source=path, seed=seed,
                                     **config_overrides)
    elif model_type in hf_llama.MODEL_TYPES:
        model, report = _llama_from_pretrained(path, read_config(path), seed, mesh, config_overrides)
    elif model_type in hf_bert.MODEL_TYPES:
        model, report = _bert_from_pretrained(path, read_config(path), task, seed, config_overrides)
    else:
        raise ValueError(f"{path}: model_type {model_type!r} is not supported "
                         f"(known: {', '.join(hf_bert.MODEL_TYPES + hf_llama.MODEL_TYPES + ced_map.ARCHS)})")
    for name in ("ignored", "initialized"):
        items = getattr(report, name)
        if items:
            logging.info("from_pretrained(%s): %d %s: %s", path, len(items), name, ", ".join(items[:20]))
    return (model, report) if return_report else model


class _host_view:
    """A parameter converted to a float32/host numpy array only when read (see param_map.HFView)."""

    def __init__(self, value):
        self.value = value
        self.shape, self.dtype = value.shape, value.dtype

    def __array__(self, dtype=None, copy=None):
        arr = np.asarray(jax.device_get(self.value))
        if arr.dtype == jnp.bfloat16:
            arr = arr.astype(np.float32)
        return arr if dtype is None else arr.astype(dtype)


def save_pretrained(model: nnx.Module, out_dir: str, *, tokenizer_dir: str | None = None) -> None:
    """Write `model` as a HF directory (config.json + safetensors) that transformers' AutoModel loads.

    CED is written as model.safetensors holding the released PyTorch state dict (names, fused qkv,
    front-end buffers), which the PyTorch CED loads with strict=True, plus a config.json for kdjax.
    BERT/RoBERTa classifiers with HF-compatible heads are written in the *ForSequenceClassification
    layout; a DSG-KD head (no HF class) is written beside the encoder in kdjax_head.safetensors.
    """
    # bfloat16 is written as float32 (transformers and PyTorch read both; float32 is exact for both)
    flat = {k: _host_view(v) for k, v in state_lib.flatten(nnx.state(model, nnx.Param)).items()}
    if isinstance(model, LlamaForCausalLM):
        if lora_layers(model):
            raise ValueError("this model has LoRA adapters: save them with kdjax.convert.peft.save_adapters, or "
                             "save kdjax.models.lora.merged_copy(model) for a plain merged checkpoint")
        tensors = HFView(flat, hf_llama.rules(model.cfg))
        head = {}
        hf_cfg = model.cfg.to_hf()
    elif isinstance(model, (ViT, ResNet)):
        flat.update({k: _host_view(v) for k, v in state_lib.flatten(nnx.state(model, nnx.BatchStat)).items()})
        rules = hf_vit.rules(model.cfg) if isinstance(model, ViT) else hf_resnet.rules(model.cfg)
        tensors, head, hf_cfg = HFView(flat, rules), {}, model.cfg.to_hf()
    elif isinstance(model, CED):
        flat.update({k: np.asarray(v) for k, v in state_lib.flatten(nnx.state(model, nnx.BatchStat)).items()})
        tensors = {**flax_to_hf(flat, ced_map.rules(model.cfg)), **ced_map.extra_tensors(model.cfg)}
        head = {}
        hf_cfg = {"model_type": "kdjax_ced", "ced": model.cfg.to_json()}
    elif isinstance(model, (BertModel, SequenceClassifier)):
        cfg: BertConfig = model.cfg
        hf_cfg = cfg.to_hf()
        head: dict[str, np.ndarray] = {}
        if isinstance(model, SequenceClassifier) and cfg.classifier_head in ("bert", "roberta"):
            tensors = flax_to_hf(flat, hf_bert.rules(model, hf_bert.base_prefix(cfg)))
            hf_cfg["architectures"] = ["RobertaForSequenceClassification" if cfg.roberta_positions
                                       else "BertForSequenceClassification"]
            hf_cfg["id2label"] = {str(i): f"LABEL_{i}" for i in range(cfg.num_labels)}
            hf_cfg["label2id"] = {f"LABEL_{i}": i for i in range(cfg.num_labels)}
        elif isinstance(model, SequenceClassifier):
            all_hf = flax_to_hf(flat, hf_bert.rules(model, ""))
            head = {k: v for k, v in all_hf.items() if k.startswith("classifier.")}
            tensors = {k: v for k, v in all_hf.items() if not k.startswith("classifier.")}
            hf_cfg["kdjax_classifier_head"] = cfg.classifier_head
            hf_cfg["num_labels"] = cfg.num_labels
        else:
            tensors = flax_to_hf(flat, hf_bert.rules(model, ""))
        hf_cfg["add_pooling_layer"] = cfg.add_pooling_layer
    else:
        raise TypeError(f"save_pretrained does not know {type(model).__name__}")
    os.makedirs(out_dir, exist_ok=True)
    write_safetensors(tensors, out_dir)
    if head:
        from safetensors.numpy import save_file

        save_file(head, os.path.join(out_dir, _HEAD_FILE + ".tmp"))
        os.replace(os.path.join(out_dir, _HEAD_FILE + ".tmp"), os.path.join(out_dir, _HEAD_FILE))
    write_json(hf_cfg, os.path.join(out_dir, "config.json"))
    if tokenizer_dir:
        for name in _TOKENIZER_FILES:
            src = os.path.join(tokenizer_dir, name)
            if os.path.isfile(src):
                shutil.copy(src, os.path.join(out_dir, name))
