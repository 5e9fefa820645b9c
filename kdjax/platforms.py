"""Which JAX backends a command line starts, decided before JAX is imported.

With the CUDA plugin and libtpu installed (the `test` and `aot` extras), JAX initialises every plugin it finds:
on a host without a GPU or TPU that prints two CUDA tracebacks ("Unable to load cuDNN") and libtpu's worker
errors before kdjax's first line, burying real errors. The entry points (`kdjax.main`, `kdjax.evaluate`,
`kdjax.vggcaps`) call `default_to_cpu_without_accelerators()` first: where no accelerator device node exists
and JAX_PLATFORMS is unset, it sets JAX_PLATFORMS=cpu. A GPU or TPU host, or any explicit JAX_PLATFORMS, is
left alone; `kdjax.aot` sets its own (CPU compilation for remote targets, which loads the plugins it asks for).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, MutableMapping

# Device nodes of the accelerators JAX has backends for: NVIDIA GPUs, AMD GPUs (ROCm), GPUs under WSL,
# TPU chips (v2-v4 as /dev/accel*, v5e and later through VFIO).
ACCELERATOR_NODES = ("/dev/nvidia[0-9]*", "/dev/kfd", "/dev/dxg", "/dev/accel*", "/dev/vfio/[0-9]*")
# a Cloud TPU (or a TPU pod's worker) announced by its environment, even before its device nodes are visible
TPU_VARIABLES = ("TPU_NAME", "TPU_ACCELERATOR_TYPE", "TPU_WORKER_HOSTNAMES", "TPU_WORKER_ID")


def accelerator_present(environ: MutableMapping[str, str] | None = None,
                        find: Callable[[str], list[str]] = glob.glob) -> bool:
    env = os.environ if environ is None else environ
    return any(find(p) for p in ACCELERATOR_NODES) or any(env.get(v) for v in TPU_VARIABLES)


def default_to_cpu_without_accelerators(environ: MutableMapping[str, str] | None = None,
                                        find: Callable[[str], list[str]] = glob.glob) -> bool:
    """Set JAX_PLATFORMS=cpu when it is unset and this host has no accelerator; True if it did."""
    env = os.environ if environ is None else environ
    if "JAX_PLATFORMS" in env or "JAX_PLATFORM_NAME" in env or accelerator_present(env, find):
        return False
    env["JAX_PLATFORMS"] = "cpu"
    return True
