"""One named mesh (data, fsdp, tensor) and logical-axis rules that place parameters on it.

Models declare, per parameter path pattern, the logical axes of each dimension (e.g. a query kernel is
('embed', 'heads')). `LOGICAL_RULES` maps logical axes to mesh axes. A dimension that the mesh axes
do not divide is left replicated rather than failing, so the same config runs on 1 CPU device, on 8
simulated devices and on a pod.
"""

from __future__ import annotations

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

LogicalAxes = Sequence[tuple[str, tuple[str | None, ...]]]  # (path regex, logical axes)


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
                    rules: Mapping[str, Any] = LOGICAL_RULES) -> P:
    spec, used = [], set()
    for name, dim in zip(logical, shape):
        axes = rules.get(name) if name else None
        tup = (axes,) if isinstance(axes, str) else tuple(axes or ())
        # An axis may be used once per array, and it must divide the dimension.
        if not tup or used & set(tup) or dim % axis_size(mesh, tup):
            spec.append(None)
            continue
        used |= set(tup)
        spec.append(tup[0] if len(tup) == 1 else tup)
    return P(*spec)


def param_specs(params: Any, mesh: Mesh, logical_axes: LogicalAxes,
                rules: Mapping[str, Any] = LOGICAL_RULES) -> Any:
    """PartitionSpecs for a params pytree: first matching pattern wins, unmatched are replicated."""
    compiled = [(re.compile(p), axes) for p, axes in logical_axes]

    def spec(path: str, leaf) -> P:
        shape = np.shape(leaf)
        for pat, axes in compiled:
            if pat.search(path):
                if len(axes) != len(shape):
                    raise ValueError(f"logical axes {axes} for {path} do not fit its shape {shape}")
                return logical_to_spec(axes, shape, mesh, rules)
        return P()

    return map_with_path(spec, params)


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
