"""One named mesh (data, fsdp, tensor) and logical-axis rules that place parameters on it.

Models declare, per parameter path pattern, the logical axes of each dimension (e.g. a query kernel is
('embed', 'heads')). `LOGICAL_RULES` maps logical axes to mesh axes. A dimension that the mesh axes
do not divide is left replicated rather than failing (and named in a warning), so the same config runs on
1 CPU device, on 8 simulated devices and on a pod.

A model composed of families scopes each family's rules to the module that holds it (`scoped("decoder",
llama.LOGICAL_AXES)`): such rules apply only under that prefix, so no rule depends on where it sits in a
concatenated list (LLaMA's `self_attn.q_proj` pattern would otherwise also match CED's `attn.q_proj`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from kdjax.models.state import map_with_path

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")  # the batch is split over every data-parallel axis

# logical axis -> mesh axis (or axes). Parameters are FSDP-sharded along their model width and
# tensor-parallel along heads / MLP / vocabulary.
LOGICAL_RULES: dict[str, str | tuple[str, ...] | None] = {
    "batch": BATCH_AXES,
    "embed": "fsdp",
    "heads": "tensor",
    "kv_heads": "tensor",
    "mlp": "tensor",
    "vocab": "tensor",
    "conv_out": "tensor",
}

LogicalAxes = Sequence[Any]  # (path regex, logical axes) pairs and Scoped groups


@dataclasses.dataclass(frozen=True)
class Scoped:
    """`rules` (LogicalAxes) applied to the parameters under module `prefix`, matched against the path below it."""

    prefix: str
    rules: tuple

    def match(self, path: str) -> str | None:
        """The path below the prefix, or None when `path` is not under it."""
        return path[len(self.prefix) + 1:] if path.startswith(self.prefix + ".") else None


def scoped(prefix: str, rules: LogicalAxes) -> Scoped:
    return Scoped(prefix, tuple(rules))


def make_mesh(shape: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Mesh from {'data': -1, 'fsdp': 2, 'tensor': 1}; one -1 takes the remaining devices."""
    devices = list(devices if devices is not None else jax.devices())
    unknown = set(shape) - set(MESH_AXES)
    if unknown:
        raise ValueError(f"mesh: unknown axis names {sorted(unknown)}; axes are {MESH_AXES}")
    sizes = {a: int(shape.get(a, 1)) for a in MESH_AXES}
    free = [a for a, s in sizes.items() if s == -1]
    if len(free) > 1:
        raise ValueError(f"mesh: only one axis may be -1, got {free}")
    fixed = math.prod(s for s in sizes.values() if s != -1)
    if free:
        if len(devices) % fixed:
            raise ValueError(f"mesh: {len(devices)} devices are not divisible by {fixed} ({sizes})")
        sizes[free[0]] = len(devices) // fixed
    total = math.prod(sizes.values())
    if total != len(devices):
        raise ValueError(f"mesh {sizes} needs {total} devices, {len(devices)} are present")
    dims = tuple(sizes[a] for a in MESH_AXES)
    slices = len({getattr(d, "slice_index", 0) for d in devices})
    if slices > 1:
        # multi-slice: only the data axis crosses the (slow) data-center network; fsdp and tensor stay
        # inside a slice's ICI
        if sizes["data"] % slices:
            raise ValueError(f"mesh: data={sizes['data']} must be a multiple of the {slices} slices")
        from jax.experimental import mesh_utils

        grid = mesh_utils.create_hybrid_device_mesh((sizes["data"] // slices, sizes["fsdp"], sizes["tensor"]),
                                                    (slices, 1, 1), devices)
        return Mesh(grid, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))
    return jax.make_mesh(dims, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES),
                         devices=devices)


def axis_size(mesh: Mesh, axes: str | tuple[str, ...] | None) -> int:
    if axes is None:
        return 1
    axes = (axes,) if isinstance(axes, str) else axes
    return math.prod(mesh.shape[a] for a in axes)


def data_parallel_size(mesh: Mesh) -> int:
    return axis_size(mesh, BATCH_AXES)


def logical_to_spec(logical: Sequence[str | None], shape: Sequence[int], mesh: Mesh,
                    rules: Mapping[str, Any] = LOGICAL_RULES, undivided: list | None = None) -> P:
    """The PartitionSpec of an array with these logical axes; a dimension its mesh axes do not divide stays
    replicated and is appended to `undivided` as (dimension index, size, mesh axes)."""
    spec, used = [], set()
    for i, (name, dim) in enumerate(zip(logical, shape)):
        axes = rules.get(name) if name else None
        tup = (axes,) if isinstance(axes, str) else tuple(axes or ())
        # An axis may be used once per array, and it must divide the dimension.
        if tup and not used & set(tup) and dim % axis_size(mesh, tup) and undivided is not None:
            undivided.append((i, dim, tup))
        if not tup or used & set(tup) or dim % axis_size(mesh, tup):
            spec.append(None)
            continue
        used |= set(tup)
        spec.append(tup[0] if len(tup) == 1 else tup)
    return P(*spec)


def _find(path: str, logical_axes: LogicalAxes) -> tuple | None:
    """The logical axes of `path`: the first matching pattern at this level, Scoped groups looked into."""
    for rule in logical_axes:
        if isinstance(rule, Scoped):
            rest = rule.match(path)
            if rest is not None:
                found = _find(rest, rule.rules)
                if found is not None:
                    return found
            continue
        pattern, axes = rule
        if re.search(pattern, path):
            return tuple(axes)
    return None


def param_specs(params: Any, mesh: Mesh, logical_axes: LogicalAxes,
                rules: Mapping[str, Any] = LOGICAL_RULES) -> Any:
    """PartitionSpecs for a params pytree: first matching pattern wins (inside a Scoped group, only paths under
    its prefix), unmatched are replicated. Dimensions the mesh does not divide are named in one warning."""
    undivided: list[str] = []

    def spec(path: str, leaf) -> P:
        shape = np.shape(leaf)
        axes = _find(path, logical_axes)
        if axes is None:
            return P()
        if len(axes) != len(shape):
            raise ValueError(f"logical axes {axes} for {path} do not fit its shape {shape}")
        here: list = []
        out = logical_to_spec(axes, shape, mesh, rules, here)
        undivided.extend(f"{path} (dim {i} = {d}, mesh {'x'.join(t)} = {axis_size(mesh, t)})" for i, d, t in here)
        return out

    specs = map_with_path(spec, params)
    if undivided:
        logging.warning("sharding: %d parameter dimension(s) left replicated, their mesh axes do not divide them: "
                        "%s%s", len(undivided), "; ".join(undivided[:20]),
                        f"; ... and {len(undivided) - 20} more" if len(undivided) > 20 else "")
    return specs


def named(mesh: Mesh, specs: Any) -> Any:
    return jax.tree.map(lambda s: NamedSharding(mesh, s), specs, is_leaf=lambda x: isinstance(x, P))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def global_batch(local: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This process's rows of the global batch -> global arrays sharded over the batch axes."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local.items()}


def describe(mesh: Mesh) -> str:
    return " x ".join(f"{a}={mesh.shape[a]}" for a in mesh.axis_names)


def log_specs(params: Any, specs: Any) -> None:
    leaves = jax.tree_util.tree_leaves(specs, is_leaf=lambda x: isinstance(x, P))
    sharded = sum(1 for s in leaves if any(a is not None for a in s))
    logging.info("sharding: %d of %d parameter arrays sharded", sharded, len(leaves))
