"""Accelerator targets for ahead-of-time compilation, as compile-only devices: Cloud TPU slices by their usual
names (v5e-16, v4-32, v5p-128, ...) from libtpu's topology API, and NVIDIA GPU nodes (h100-8, h100-16 = two
8-GPU nodes) from XLA's GPU target description. Nothing here needs the hardware: libtpu
(`pip install "jax[tpu]==<jax version>"`) or jax's CUDA plugin with a CUDA toolkit's ptxas (`pip install
jax-cuda13-plugin==<jax version> jax-cuda13-pjrt==<jax version>`) describes the devices and XLA compiles for
them on this host."""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # launch/tpu.py reads the chip tables without paying for JAX's import
    import jax


@dataclasses.dataclass(frozen=True)
class Chip:
    generation: str  # libtpu's topology prefix
    chip_config: str  # "megacore": the chip's two TensorCores act as one JAX device
    hbm_gib: float  # per JAX device, usable by a program
    cores_in_name: int  # Cloud TPU names count TensorCores for v4/v5p (v4-8 = 4 chips), chips for v5e/v6e
    dims: int  # 2-D (v5e, v6e) or 3-D torus (v4, v5p)
    accelerator: str  # Cloud TPU's accelerator-type prefix (gcloud --accelerator-type=<prefix>-<count>)
    runtime: str  # the TPU VM software version JAX runs on


# hbm_gib: what libtpu's compiler says is available to a program ("exceeds available HBM (15.75G)"): a
# v5e has 16 GiB, of which 0.25 GiB the runtime keeps
CHIPS = {
    "v4": Chip("v4", "megacore", 30.75, 2, 3, "v4", "tpu-ubuntu2204-base"),
    "v5p": Chip("v5", "megacore", 95.74, 2, 3, "v5p", "v2-alpha-tpuv5"),
    "v5e": Chip("v5e", "default", 15.75, 1, 2, "v5litepod", "v2-alpha-tpuv5-lite"),
    "v6e": Chip("v6e", "default", 31.25, 1, 2, "v6e", "v2-alpha-tpuv6e"),
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
    def hbm_gib(self) -> float:
        return self.chip.hbm_gib

    @property
    def accelerator_type(self) -> str:
        """gcloud's name for one slice, e.g. v5litepod-16."""
        return f"{self.chip.accelerator}-{self.devices_per_slice * self.chip.cores_in_name}"

    @property
    def topology_name(self) -> str:
        return f"{self.chip.generation}:{'x'.join(map(str, self.shape))}"


# What XLA's GPU compiler needs to know about a device (its GpuTargetConfig text proto), from the device's
# published figures; `device_memory_size` is what CUDA reports as usable.
H100_SXM = """gpu_device_info {
  cuda_compute_capability { major: 9 minor: 0 }
  threads_per_block_limit: 1024 threads_per_warp: 32 shared_memory_per_block: 49152
  shared_memory_per_core: 233472 shared_memory_per_block_optin: 232448 threads_per_core_limit: 2048
  core_count: 132 fpus_per_core: 128 block_dim_limit_x: 2147483647 block_dim_limit_y: 65535
  block_dim_limit_z: 65535 memory_bandwidth: 3352320000000 l2_cache_size: 52428800 clock_rate_ghz: 1.98
  device_memory_size: 84929347584 registers_per_core_limit: 65536 registers_per_block_limit: 65536
}
platform_name: "CUDA"
dnn_version_info { major: 9 minor: 7 }
runtime_version { major: 12 minor: 8 patch: 0 }
device_description_str: "NVIDIA H100 80GB HBM3"
"""


@dataclasses.dataclass(frozen=True)
class Gpu:
    target_config: str
    hbm_gib: float
    per_node: int = 8


GPUS = {"h100": Gpu(H100_SXM, 84929347584 / 2 ** 30)}


@dataclasses.dataclass(frozen=True)
class GpuTarget:
    name: str  # e.g. "h100-16": two nodes of 8
    gpu: Gpu
    nodes: int
    per_node: int
    num_slices: int = 1

    @property
    def num_devices(self) -> int:
        return self.nodes * self.per_node

    @property
    def hbm_gib(self) -> float:
        return self.gpu.hbm_gib


def parse(name: str) -> Target | GpuTarget:
    """'v5e-16', 'v4-32', 'v5p-128', 'v6e-4'; a trailing 'xN' asks for N slices joined by the data-center
    network (multi-slice), e.g. 'v5e-16x2'. GPUs: 'h100-8' (one node), 'h100-32' (four nodes of 8)."""
    g = re.fullmatch(r"(h100)-(\d+)", name.strip().lower())
    if g:
        gpu, count = GPUS[g.group(1)], int(g.group(2))
        if count < 1 or (count > gpu.per_node and count % gpu.per_node):
            raise ValueError(f"{name}: {count} GPUs are neither one node (<= {gpu.per_node}) nor whole nodes of "
                             f"{gpu.per_node}")
        per_node = min(count, gpu.per_node)
        return GpuTarget(name, gpu, count // per_node, per_node)
    m = re.fullmatch(r"(v4|v5e|v5p|v6e)-(\d+)(?:x(\d+))?", name.strip().lower())
    if not m:
        raise ValueError(f"unknown topology {name!r}: expected e.g. v5e-16, v4-32, v5p-128, v6e-4, "
                         f"v5e-16x2 (two slices) or h100-8; TPU generations {sorted(CHIPS)}, GPUs {sorted(GPUS)}")
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


def devices(target: Target | GpuTarget) -> list[jax.Device]:
    """Compile-only devices of the target (libtpu or jax's CUDA plugin must be installed; no accelerator
    is needed)."""
    import jax
    from jax.experimental import topologies

    if isinstance(target, GpuTarget):
        try:
            topo = topologies.get_topology_desc(platform="cuda", target_config=target.gpu.target_config,
                                                topology=f"1x{target.nodes}x{target.per_node}")
        except (RuntimeError, ValueError) as e:
            raise RuntimeError(f"compiling for {target.name} needs jax's CUDA plugin and a CUDA toolkit's ptxas: "
                               f"pip install jax-cuda13-plugin=={jax.__version__} jax-cuda13-pjrt=={jax.__version__} "
                               f"(no GPU is needed): {e}") from e
        return list(topo.devices)
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
