"""What every family's loader and exporter shares: reading parameters lazily to the host, building a model from
HF-named tensors through its rules, and writing a model directory."""

from __future__ import annotations

import os
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from kdjax import paths
from kdjax.convert.checkpoint_io import write_json, write_safetensors
from kdjax.convert.param_map import LoadReport, hf_to_flax
from kdjax.models import state as state_lib

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json", "merges.txt",
                   "vocab.json", "sentencepiece.bpe.model", "spiece.model", "tokenizer.model",
                   "generation_config.json", "added_tokens.json")


class HostView:
    """A parameter converted to a float32/host numpy array only when read (see param_map.HFView)."""

    def __init__(self, value):
        self.value = value
        self.shape, self.dtype = value.shape, value.dtype

    def __array__(self, dtype=None, copy=None):
        arr = np.asarray(jax.device_get(self.value))
        if arr.dtype == jnp.bfloat16:
            arr = arr.astype(np.float32)
        return arr if dtype is None else arr.astype(dtype)


def host_flat(model: nnx.Module, *kinds) -> dict[str, HostView]:
    """The model's state of these variable kinds (default: parameters) by flat path, read lazily."""
    flt = nnx.Any(*kinds) if len(kinds) > 1 else (kinds[0] if kinds else nnx.Param)
    return {k: HostView(v) for k, v in state_lib.flatten(nnx.state(model, flt)).items()}


def load_family(tensors, build: Callable[[], nnx.Module], rules, ignore, source: str, put=None
                ) -> tuple[nnx.Module, LoadReport]:
    abstract = state_lib.abstract_module(build)
    shapes = {k: v.shape for k, v in state_lib.flatten(nnx.state(abstract)).items()}
    flat, report = hf_to_flax(tensors, rules, shapes, ignore=ignore, source=source, put=put)
    return state_lib.load_flat(abstract, flat), report


def write_dir(out_dir: str, tensors: Mapping[str, np.ndarray], config: dict, *,
              extra: Mapping[str, Mapping[str, np.ndarray]] | None = None, tokenizer_dir: str | None = None) -> None:
    """config.json + model.safetensors (sharded past 5 GB); `extra` are further safetensors files by name; the
    tokenizer's files are copied from `tokenizer_dir`."""
    os.makedirs(out_dir, exist_ok=True)
    write_safetensors(tensors, out_dir)
    for name, part in (extra or {}).items():
        from safetensors.numpy import save_file

        save_file({k: np.asarray(v) for k, v in part.items()}, os.path.join(out_dir, name + ".tmp"))
        os.replace(os.path.join(out_dir, name + ".tmp"), os.path.join(out_dir, name))
    write_json(config, os.path.join(out_dir, "config.json"))
    if tokenizer_dir:
        for name in TOKENIZER_FILES:
            src = paths.join(tokenizer_dir, name)
            if paths.isfile(src):  # the workdir may be in a bucket
                with open(os.path.join(out_dir, name), "wb") as f:
                    f.write(paths.read_bytes(src))


def config_to_json(cfg) -> dict:
    """A (nested) model config dataclass as JSON: dtypes by name, tuples as lists."""
    import dataclasses

    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            v = config_to_json(v)
        elif f.name == "dtype":
            v = np.dtype(v).name
        elif isinstance(v, tuple):
            v = list(v)
        out[f.name] = v
    return out


def config_from_json(cls, d: Mapping) -> object:
    """The inverse of `config_to_json` for config class `cls`; unknown keys are an error naming them."""
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown fields {unknown}")
    kw = {}
    for name, v in d.items():
        f = fields[name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            v = config_from_json(type(default), v)
        elif name == "dtype":
            v = jnp.dtype(v)
        elif isinstance(default, tuple) and isinstance(v, list):
            v = tuple(v)
        kw[name] = v
    return cls(**kw)


def with_batch_counts(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """PyTorch BatchNorm state dicts carry `num_batches_tracked` beside each running mean; add it (0: kdjax
    keeps no count, and PyTorch reads it only when momentum is None)."""
    out = dict(tensors)
    for k in list(tensors):
        if k.endswith(".running_mean"):
            out[k[: -len("running_mean")] + "num_batches_tracked"] = np.zeros((), np.int64)
    return out
