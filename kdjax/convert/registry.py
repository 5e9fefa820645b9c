"""The model families kdjax converts, each registered by its own module (kdjax/convert/<family>.py, beside its
parameter map): the checkpoint `model_type`s it loads and the kdjax classes it saves.

`kdjax.convert.from_pretrained` and `save_pretrained` look a family up here; adding a family touches its own
file only. This module sits below the families and imports none of them (nor the API above).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from flax import nnx


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]
    """config.json `model_type` values (or `arch=` names) this family loads."""
    classes: tuple[type, ...]
    """kdjax model classes this family saves."""
    load: Callable[..., tuple[nnx.Module, Any]]
    """load(path, *, task, arch, seed, mesh, **config_overrides) -> (model, LoadReport)"""
    save: Callable[..., None]
    """save(model, out_dir, **kw): a directory that the family's PyTorch side (and `load`) reads."""
    files: bool = False
    """Whether a bare weights file (not a directory) is one of this family's checkpoints."""


_FAMILIES: list[Family] = []


def register(family: Family) -> Family:
    for other in _FAMILIES:
        clash = set(other.model_types) & set(family.model_types)
        if other.name != family.name and clash:
            raise ValueError(f"families {other.name!r} and {family.name!r} both load {sorted(clash)}")
    _FAMILIES[:] = [f for f in _FAMILIES if f.name != family.name] + [family]
    return family


def families() -> tuple[Family, ...]:
    return tuple(_FAMILIES)


def by_model_type(model_type: str | None) -> Family | None:
    return next((f for f in _FAMILIES if model_type in f.model_types), None)


def by_model(model: nnx.Module) -> Family | None:
    return next((f for f in _FAMILIES if isinstance(model, f.classes)), None)


def for_file() -> Family | None:
    """The family whose checkpoints may be bare weight files (CED's released state dicts)."""
    return next((f for f in _FAMILIES if f.files), None)
