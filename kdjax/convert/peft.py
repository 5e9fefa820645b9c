"""LoRA adapters <-> PEFT's format (adapter_config.json + adapter_model.safetensors).

PEFT names a LoRA layer's factors `base_model.model.<module path>.lora_A.weight` (r, in) and
`.lora_B.weight` (out, r) and applies them as W x + (lora_alpha / r) B A x, the same update as
kdjax.models.lora. Module paths are kdjax's, which for LLaMA equal transformers' (the parameter map is
the identity on paths), so `peft.PeftModel.from_pretrained(LlamaForCausalLM, dir)` loads what
`save_adapters` writes. A scanned stack (kdjax.models.stack) at `model.layers` holding adapters at
`model.layers.self_attn.q_proj` is written as PEFT's per-layer `model.layers.{i}.self_attn.q_proj`, and read back
into the stack.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

import numpy as np
from flax import nnx

from kdjax.convert.checkpoint_io import write_json
from kdjax.errors import InputError
from kdjax.models import lora, stack

_PREFIX = "base_model.model."
CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"


def _exact(paths: list[str]) -> tuple[str, ...]:
    return tuple("^" + re.escape(p) + "$" for p in paths)


def save_adapters(model: nnx.Module, out_dir: str, *, base_model: str = "", task_type: str = "CAUSAL_LM"
                  ) -> list[str]:
    """Write `model`'s LoRA factors in PEFT's layout; returns the tensor names written."""
    found = lora.layers(model)
    if not found:
        raise ValueError(f"{type(model).__name__} has no LoRA layers to save")
    ranks = {m.rank for _, m in found}
    scales = {m.scale for _, m in found}
    rates = {m.rate for _, m in found}
    if len(ranks) > 1 or len(scales) > 1 or len(rates) > 1:
        raise ValueError("PEFT's adapter_config has one rank, alpha and dropout; this model mixes "
                         f"ranks {ranks}, scales {scales}, dropout {rates}")
    if any(m.merged for _, m in found):
        raise ValueError("adapters are merged into the kernels; unmerge (kdjax.models.lora.unmerge) first")
    tensors = {}
    stacks = stack.stacks(model)
    for path, m in found:
        a, b = np.asarray(m.lora_a[...], np.float32), np.asarray(m.lora_b[...], np.float32)
        for name, i in _per_layer(path, stacks):
            tensors[f"{_PREFIX}{name}.lora_A.weight"] = np.ascontiguousarray((a if i is None else a[i]).T)
            tensors[f"{_PREFIX}{name}.lora_B.weight"] = np.ascontiguousarray((b if i is None else b[i]).T)
    rank = ranks.pop()
    config = {
        "peft_type": "LORA", "task_type": task_type, "base_model_name_or_path": base_model or None,
        "r": rank, "lora_alpha": scales.pop() * rank, "lora_dropout": rates.pop(),
        "target_modules": sorted({p.rsplit(".", 1)[-1] for p, _ in found}),
        # the exact layers, so that a pattern cannot catch modules kdjax did not adapt
        "layers_pattern": None, "bias": "none", "fan_in_fan_out": False, "inference_mode": True,
        "modules_to_save": None, "use_rslora": False, "use_dora": False, "init_lora_weights": True,
    }
    from safetensors.numpy import save_file

    os.makedirs(out_dir, exist_ok=True)
    tmp = os.path.join(out_dir, WEIGHTS + ".tmp")
    save_file(tensors, tmp, metadata={"format": "pt"})
    os.replace(tmp, os.path.join(out_dir, WEIGHTS))
    write_json(config, os.path.join(out_dir, CONFIG))
    return sorted(tensors)


def load_adapters(model: nnx.Module, adapter_dir: str, rngs: nnx.Rngs | None = None) -> list[str]:
    """Apply the adapters in a PEFT directory to `model` in place (wrapping the layers they name, which
    must exist); returns the adapted paths. Every adapter tensor must find its layer."""
    with open(os.path.join(adapter_dir, CONFIG)) as f:
        config = json.load(f)
    if config.get("peft_type") != "LORA":
        raise InputError(f"{adapter_dir}/{CONFIG}: peft_type {config.get('peft_type')!r} is not LORA")
    if config.get("use_dora") or config.get("use_rslora"):
        raise InputError(f"{adapter_dir}/{CONFIG}: DoRA / rsLoRA adapters are not supported")
    from safetensors.numpy import load_file

    tensors = load_file(os.path.join(adapter_dir, WEIGHTS))
    stacks = stack.stacks(model)
    paths = sorted({_in_stack(k[len(_PREFIX):].rsplit(".lora_", 1)[0], stacks) for k in tensors})
    bad = [k for k in tensors if not k.startswith(_PREFIX) or not (k.endswith(".lora_A.weight")
                                                                  or k.endswith(".lora_B.weight"))]
    if bad:
        raise InputError(f"{adapter_dir}/{WEIGHTS}: unexpected tensors {bad[:5]}")
    cfg = lora.LoraConfig(targets=_exact(paths), rank=int(config["r"]),
                          alpha=float(config["lora_alpha"]), dropout=float(config.get("lora_dropout", 0.0)))
    existing = dict(lora.layers(model))
    todo = [p for p in paths if p not in existing]
    if todo:
        got = lora.apply(model, dataclasses.replace(cfg, targets=_exact(todo)),
                         rngs or nnx.Rngs(0))
        missing = sorted(set(todo) - set(got))
        if missing:
            raise InputError(f"{adapter_dir}: adapters for layers the model does not have: {missing[:5]}")
    layers = dict(lora.layers(model))
    for p in paths:
        m = layers[p]
        names = _per_layer(p, stacks)
        missing = [n for n, _ in names if f"{_PREFIX}{n}.lora_A.weight" not in tensors
                   or f"{_PREFIX}{n}.lora_B.weight" not in tensors]
        if missing:
            raise InputError(f"{adapter_dir}/{WEIGHTS}: no lora_A/lora_B for {missing[:5]} (every layer of a stack "
                             "needs its adapters)")
        a = np.stack([tensors[f"{_PREFIX}{n}.lora_A.weight"].T for n, _ in names])
        b = np.stack([tensors[f"{_PREFIX}{n}.lora_B.weight"].T for n, _ in names])
        if names[0][1] is None:
            a, b = a[0], b[0]
        if a.shape != m.lora_a[...].shape or b.shape != m.lora_b[...].shape:
            raise InputError(f"{adapter_dir}: {p}: adapter shapes {a.shape}, {b.shape} do not fit "
                             f"{m.lora_a[...].shape}, {m.lora_b[...].shape}")
        m.lora_a[...] = a
        m.lora_b[...] = b
        m.scale, m.rank = cfg.scale, cfg.rank
    return paths


def _per_layer(path: str, stacks: dict[str, int]) -> list[tuple[str, int | None]]:
    """PEFT's module names for kdjax's module `path`: itself, or one per layer when it is inside a stack."""
    for s, n in stacks.items():
        if path.startswith(s + "."):
            return [(f"{s}.{i}.{path[len(s) + 1:]}", i) for i in range(n)]
    return [(path, None)]


def _in_stack(name: str, stacks: dict[str, int]) -> str:
    """kdjax's module path for one of PEFT's module names (the layer index of a stack dropped)."""
    for s in stacks:
        m = re.match(re.escape(s) + r"\.\d+\.(.+)$", name)
        if m:
            return f"{s}.{m.group(1)}"
    return name
