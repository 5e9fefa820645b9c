"""Accelerator targets for ahead-of-time compilation: Cloud TPU slices by their usual names (v5e-16, v4-32,
v5p-128, ...), as compile-only devices from libtpu's topology API. Nothing here needs the hardware: libtpu
(`pip install "jax[tpu]==<jax version>"`) describes the chips and XLA compiles for them on this host."""

from __future__ import annotations

import dataclasses
import re

import jax


@dataclasses.dataclass(frozen=True)
class Chip:
    generation: str  # libtpu's topology prefix
    chip_config: str  # "megacore": the chip's two TensorCores act as one JAX device
    hbm_gib: float  # per JAX device
    cores_in_name: int  # Cloud TPU names count TensorCores for v4/v5p (v4-8 = 4 chips), chips for v5e/v6e
    dims: int  # 2-D (v5e, v6e) or 3-D torus (v4, v5p)
    accelerator: str  # Cloud TPU's accelerator-type prefix (gcloud --accelerator-type=<prefix>-<count>)
    runtime: str  # the TPU VM software version JAX runs on


CHIPS = {
    "v4": Chip("v4", "megacore", 32.0, 2, 3, "v4", "tpu-ubuntu2204-base"),
    "v5p": Chip("v5", "megacore", 95.0, 2, 3, "v5p", "v2-alpha-tpuv5"),
    "v5e": Chip("v5e", "default", 16.0, 1, 2, "v5litepod", "v2-alpha-tpuv5-lite"),
    "v6e": Chip("v6e", "default", 32.0, 1, 2, "v6e", "v2-alpha-tpuv6e"),
}

# chips -> physical shape; hosts hold 2x2(x1) chips
SHAPES = {2: {1: (1, 1), 4: (2, 2), 8: (2, 4), 16: (4, 4), 32: (4, 8), 64: (8, 8), 128: (8, 16), 256: (16, 16)},
          3: {4: (2, 2, 1), 8: (2, 2, 2), 16: (2, 2, 4), 32: (2, 4, 4), 64: (4, 4, 4), 128: (4, 4, 8),
              256: (4, 8, 8), 512: (8, 8, 8)}}


@dataclasses.dataclass(frozen=True)
class Target:
    name: str  # as the user wrote it, e.g. "v5e-16" or "v5e-16x2" (two slices)
    chip: Chip
    shape: tuple[int, ...]  # chips per slice
    num_slices: int = 1

    @property
    def devices_per_slice(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def num_devices(self) -> int:
        return self.devices_per_slice * self.num_slices

    @property
    def accelerator_type(self) -> str:
        """gcloud's name for one slice, e.g. v5litepod-16."""
        return f"{self.chip.accelerator}-{self.devices_per_slice * self.chip.cores_in_name}"

    @property
    def topology_name(self) -> str:
        return f"{self.chip.generation}:{'x'.join(map(str, self.shape))}"


def parse(name: str) -> Target:
    """'v5e-16', 'v4-32', 'v5p-128', 'v6e-4'; a trailing 'xN' asks for N slices joined by the data-center
    network (multi-slice), e.g. 'v5e-16x2'."""
    m = re.fullmatch(r"(v4|v5e|v5p|v6e)-(\d+)(?:x(\d+))?", name.strip().lower())
    if not m:
        raise ValueError(f"unknown topology {name!r}: expected e.g. v5e-16, v4-32, v5p-128, v6e-4 or "
                         f"v5e-16x2 (two slices); generations {sorted(CHIPS)}")
    chip = CHIPS[m.group(1)]
    count, slices = int(m.group(2)), int(m.group(3) or 1)
    if count % chip.cores_in_name:
        raise ValueError(f"{name}: {m.group(1)} slices are named by TensorCores, a multiple of "
                         f"{chip.cores_in_name}")
    chips = count // chip.cores_in_name
    shapes = SHAPES[chip.dims]
    if chips not in shapes:
        sizes = sorted(n * chip.cores_in_name for n in shapes)
        raise ValueError(f"{name}: no {m.group(1)} slice of {count}; known sizes {sizes}")
    return Target(name, chip, shapes[chips], slices)


def devices(target: Target) -> list[jax.Device]:
    """Compile-only devices of the target (libtpu must be installed; no TPU needed)."""
    from jax.experimental import topologies

    try:
        topo = topologies.get_topology_desc(
            platform="tpu", topology_name=target.topology_name, chip_config_name=target.chip.chip_config,
            chips_per_host_bounds=(2, 2, 1), num_slices=target.num_slices, wrap=(False,) * 3)
    except RuntimeError as e:
        if "TPU support not installed" in str(e):
            raise RuntimeError(f"compiling for {target.name} needs libtpu: pip install "
                               f"\"jax[tpu]=={jax.__version__}\" (no TPU is needed)") from e
        raise
    return list(topo.devices)
