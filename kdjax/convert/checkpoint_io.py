"""Reading and writing Hugging Face checkpoint directories without loading a PyTorch model.

Supported weight files: model.safetensors, model.safetensors.index.json (sharded),
pytorch_model.bin and pytorch_model.bin.index.json, or a single state-dict file (.safetensors, or a
torch .pt/.pth/.bin/.ckpt, optionally wrapped as {"model": ...} or {"state_dict": ...}). Tensors are read lazily, one at a time, so large
checkpoints convert in little more memory than the converted result.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping

import numpy as np

from kdjax.errors import InputError

_SAFE = "model.safetensors"
_BIN = "pytorch_model.bin"


def read_config(path: str) -> dict:
    cfg_path = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_path):
        raise FileNotFoundError(f"{path}: no config.json (expected a Hugging Face model directory)")
    with open(cfg_path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{cfg_path}: invalid JSON: {e}") from None


@contextlib.contextmanager
def _reading(file: str):
    """Errors from the readers (safetensors' "incomplete metadata", torch's "[Errno 22] Invalid argument", a
    zip's bad CRC) do not say which file; a damaged checkpoint file is an InputError that names it."""
    try:
        yield
    except (InputError, ImportError, KeyError, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - every reader error, re-raised with the file's path
        size = os.path.getsize(file) if os.path.exists(file) else 0
        raise InputError(f"{file} ({size} bytes): cannot be read, the file is damaged or incomplete "
                         f"({type(e).__name__}: {e})") from e


def _torch_load(file: str) -> dict:
    try:
        import torch  # only .bin checkpoints need torch
    except ImportError:
        raise ImportError(f"{file}: reading pytorch_model.bin needs PyTorch (pip install torch==2.13.0), "
                          "or convert the checkpoint to safetensors") from None

    with _reading(file):
        try:
            obj = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) serialisation cannot be memory-mapped
            obj = torch.load(file, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict"):  # training checkpoints wrap the state dict
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ValueError(f"{file}: expected a state dict (name -> tensor), got {type(obj).__name__}")
    return obj


def _to_numpy(t) -> np.ndarray:
    import torch

    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.detach().cpu().numpy()


class LazyTensors(Mapping[str, np.ndarray]):
    """A read-only name -> numpy mapping over a checkpoint's weight files; reads on access."""

    def __init__(self, path: str):
        self.path = path
        self._where: dict[str, str] = {}
        self._bins: dict[str, dict] = {}
        if os.path.isfile(path):
            self._where = {k: path for k in self._keys(path)}
            return
        for index_name in (_SAFE + ".index.json", _BIN + ".index.json"):
            index = os.path.join(path, index_name)
            if os.path.isfile(index):
                with open(index) as f:
                    try:
                        weight_map = json.load(f)["weight_map"]
                    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
                        raise InputError(f"{index}: not a checkpoint index with a weight_map "
                                         f"({type(e).__name__}: {e})") from None
                if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
                    raise InputError(f"{index}: weight_map must map tensor names to file names")
                self._where = {k: os.path.join(path, v) for k, v in weight_map.items()}
                missing = sorted({v for v in self._where.values() if not os.path.isfile(v)})
                if missing:
                    raise FileNotFoundError(f"{index}: shard files missing: {missing}")
                return
        for name in (_SAFE, _BIN):
            file = os.path.join(path, name)
            if os.path.isfile(file):
                self._where = {k: file for k in self._keys(file)}
                return
        raise FileNotFoundError(f"{path}: no {_SAFE}, {_BIN} or sharded index found")

    @staticmethod
    def _keys(file: str) -> list[str]:
        if file.endswith(".safetensors"):
            from safetensors import safe_open

            with _reading(file), safe_open(file, "np") as f:
                return list(f.keys())
        return list(_torch_load(file).keys())

    def __getitem__(self, name: str) -> np.ndarray:
        file = self._where[name]
        if file.endswith(".safetensors"):
            from safetensors import safe_open

            # The flax reader needs no torch and keeps bfloat16 (as an ml_dtypes numpy dtype).
            with _reading(file), safe_open(file, "flax") as f:
                return np.asarray(f.get_tensor(name))
        if file not in self._bins:
            self._bins = {file: _torch_load(file)}  # keep one shard mapped at a time
        with _reading(file):  # a memory-mapped tensor's bytes are read here
            return _to_numpy(self._bins[file][name])

    def __contains__(self, name: object) -> bool:  # Mapping's default would read the tensor
        return name in self._where

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


def write_safetensors(tensors: Mapping[str, np.ndarray], out_dir: str, *,
                      max_shard_bytes: int = 5 * 2**30) -> None:
    """Write tensors as model.safetensors, or shards plus an index past `max_shard_bytes`.

    Files are written under temporary names and renamed, so an interrupted save never leaves a
    directory that looks complete.
    """
    from safetensors.numpy import save_file

    os.makedirs(out_dir, exist_ok=True)
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name in tensors:
        arr = np.ascontiguousarray(tensors[name])
        if shards[-1] and size + arr.nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = arr
        size += arr.nbytes
    meta = {"format": "pt"}
    if len(shards) == 1:
        tmp = os.path.join(out_dir, _SAFE + ".tmp")
        save_file(shards[0], tmp, metadata=meta)
        os.replace(tmp, os.path.join(out_dir, _SAFE))
        return
    weight_map = {}
    total = 0
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        tmp = os.path.join(out_dir, fname + ".tmp")
        save_file(shard, tmp, metadata=meta)
        os.replace(tmp, os.path.join(out_dir, fname))
        weight_map.update({k: fname for k in shard})
        total += sum(v.nbytes for v in shard.values())
    write_json({"metadata": {"total_size": total}, "weight_map": weight_map},
               os.path.join(out_dir, _SAFE + ".index.json"))


def write_json(obj, file: str) -> None:
    tmp = file + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(tmp, file)
