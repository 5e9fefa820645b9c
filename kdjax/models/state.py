"""Helpers between NNX modules and the plain nested-dict pytrees the functional trainer carries."""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np
from flax import nnx


def path_str(path: tuple) -> str:
    """('encoder', 'layer', 0, 'kernel') or a jax key path -> 'encoder.layer.0.kernel'."""
    parts = []
    for p in path:
        for attr in ("key", "idx", "name"):
            if hasattr(p, attr):
                p = getattr(p, attr)
                break
        parts.append(str(p))
    return ".".join(parts)


def flatten(tree: Any) -> dict[str, Any]:
    """Nested dict/State -> {dotted path: leaf}."""
    if isinstance(tree, nnx.State):
        tree = nnx.to_pure_dict(tree)
    return {path_str(k): v for k, v in jax.tree_util.tree_leaves_with_path(tree)}


def map_with_path(fn: Callable[[str, Any], Any], tree: Any) -> Any:
    return jax.tree_util.tree_map_with_path(lambda k, v: fn(path_str(k), v), tree)


def params_of(module: nnx.Module) -> dict:
    """The module's nnx.Param values as a pure nested dict."""
    return nnx.to_pure_dict(nnx.state(module, nnx.Param))


def abstract_module(build: Callable[[], nnx.Module]) -> nnx.Module:
    """A module with ShapeDtypeStruct leaves: shapes without allocating weights."""
    return nnx.eval_shape(build)


def load_flat(abstract: nnx.Module, flat: dict[str, np.ndarray], fill: nnx.Module | None = None
              ) -> nnx.Module:
    """Materialise `abstract` with values from `flat` (dotted paths); params missing from `flat` are
    taken from `fill` (a concretely initialised twin) when given."""
    graphdef, state = nnx.split(abstract)
    fill_flat = flatten(nnx.state(fill)) if fill is not None else {}

    def take(path: str, leaf):
        if path in flat:
            return jax.numpy.asarray(flat[path], dtype=leaf.dtype)
        if path in fill_flat:
            return fill_flat[path]
        raise KeyError(f"no value for {path}")

    pure = map_with_path(take, nnx.to_pure_dict(state))
    nnx.replace_by_pure_dict(state, pure)
    return nnx.merge(graphdef, state)
