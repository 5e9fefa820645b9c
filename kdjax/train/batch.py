"""One description of a system's training batch.

A system describes its batch once, as a function of its config (`System.batch_spec`): field names with the
per-example shape and dtype of each. The same description gives the abstract batch that `kdjax.aot` compiles
for, and the trainer checks the first real batch against it, so the compiled program and the input pipeline
cannot drift apart unseen.

Every field is sharded over the mesh's batch axes on its leading (batch) dimension and replicated along the
others (`kdjax.train.sharding.batch_sharding`): per-example tensors are small next to parameters.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import numpy as np

from kdjax.errors import InputError


@dataclasses.dataclass(frozen=True)
class Field:
    shape: tuple[int, ...]
    """Per-example shape (without the batch axis)."""
    dtype: Any
    doc: str = ""

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        object.__setattr__(self, "dtype", np.dtype(self.dtype))


BatchSpec = Mapping[str, Field]


def abstract_batch(spec: BatchSpec, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    """The global batch of `batch_size` examples as ShapeDtypeStructs (what an abstract compile lowers)."""
    return {k: jax.ShapeDtypeStruct((int(batch_size), *f.shape), f.dtype) for k, f in spec.items()}


def mismatches(spec: BatchSpec, batch: Mapping[str, Any], batched: bool = True) -> list[str]:
    """What differs between `batch` (numpy arrays; with a leading batch axis when `batched`) and `spec`, one
    line per field; empty when they agree."""
    out = []
    for k in sorted(set(spec) - set(batch)):
        out.append(f"{k}: described {_fmt(spec[k])} but missing from the batch")
    for k in sorted(set(batch) - set(spec)):
        out.append(f"{k}: in the batch ({_fmt_array(batch[k], batched)}) but not described")
    for k in sorted(set(spec) & set(batch)):
        a = np.asarray(batch[k])
        shape = a.shape[1:] if batched else a.shape
        if shape != spec[k].shape or a.dtype != spec[k].dtype:
            out.append(f"{k}: described {_fmt(spec[k])}, the batch has {_fmt_array(a, batched)}")
    return out


def check(spec: BatchSpec, batch: Mapping[str, Any], where: str, batched: bool = True) -> None:
    """InputError naming every field of `batch` that differs from `spec`."""
    bad = mismatches(spec, batch, batched)
    if bad:
        raise InputError(f"{where}: the batch differs from the system's batch description:\n  "
                         + "\n  ".join(bad))


def _fmt(f: Field) -> str:
    return f"{f.dtype.name}{list(f.shape)}"


def _fmt_array(a: Any, batched: bool) -> str:
    a = np.asarray(a)
    return f"{a.dtype.name}{list(a.shape[1:] if batched else a.shape)}"
