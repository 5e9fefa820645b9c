"""Measurements shared by the benchmarks."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np


def timed(fn: Callable[[], object], reps: int, warmup: int = 1) -> float:
    """Median wall time of `fn()` over `reps` calls, after `warmup` calls (compilation, caches).
    `fn` must block until its work is done."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, reps: int = 1,
                warmup: int = 1) -> dict[str, list[float]]:
    """Per-round median wall times of each blocking `fn`, the functions taking turns round by round.

    On a shared, noisy machine the load drifts over minutes; timing one side after the other lets that drift
    land on one side only. Alternating (A B, B A, A B, ...) gives both sides the same conditions, and ratios
    taken round by round cancel what the round had in common."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    out: dict[str, list[float]] = {k: [] for k in fns}
    order = list(fns)
    for r in range(rounds):
        for k in (order if r % 2 == 0 else order[::-1]):
            times = []
            for _ in range(reps):
                t = time.perf_counter()
                fns[k]()
                times.append(time.perf_counter() - t)
            out[k].append(float(np.median(times)))
    return out


def round_ratio(times: dict[str, list[float]], slow: str, fast: str) -> float:
    """Median over rounds of times[slow] / times[fast] (> 1: `fast` is faster)."""
    return float(np.median(np.asarray(times[slow]) / np.asarray(times[fast])))


def matmul_ceiling(n: int = 2048, reps: int = 10) -> float:
    """Best float32 FLOP/s of a square jitted matmul: what this machine can do at most, this run."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


# ------------------------------------------------------------------------------------------- accelerators
# Dense peak FLOP/s per chip (vendor data sheets; SXM parts), by dtype: what model FLOPs utilisation divides by.
# float32 on NVIDIA is TF32's tensor-core peak: XLA's default matmul precision there.
PEAK_FLOPS = {
    "H200": {"bfloat16": 989e12, "float32": 494e12}, "H100": {"bfloat16": 989e12, "float32": 494e12},
    "A100": {"bfloat16": 312e12, "float32": 156e12}, "L4": {"bfloat16": 121e12, "float32": 60e12},
    "TPU v4": {"bfloat16": 275e12, "float32": 275e12}, "TPU v5 lite": {"bfloat16": 197e12, "float32": 197e12},
    "TPU v5e": {"bfloat16": 197e12, "float32": 197e12}, "TPU v5p": {"bfloat16": 459e12, "float32": 459e12},
    "TPU v6 lite": {"bfloat16": 918e12, "float32": 918e12}, "TPU v6e": {"bfloat16": 918e12, "float32": 918e12},
}
_PLATFORMS = {"cpu": "cpu", "gpu": "cuda", "tpu": "tpu"}


def add_device_args(ap) -> None:
    """--device and --dtype: the accelerator mode every benchmark has (benchmarks/device_check.sh runs them)."""
    ap.add_argument("--device", default="cpu", choices=tuple(_PLATFORMS),
                    help="where both sides run: cpu, gpu (PyTorch on cuda) or tpu (kdjax only: no PyTorch TPU)")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                    help="compute dtype: kdjax models' `dtype` (parameters stay float32), PyTorch's autocast")


def use_device(args) -> None:
    """Point JAX at args.device; call before jax is imported."""
    os.environ["JAX_PLATFORMS"] = _PLATFORMS[args.device]


def torch_device(args) -> str | None:
    """PyTorch's device for args.device; None on TPU (the PyTorch side is not run there)."""
    return {"cpu": "cpu", "gpu": "cuda", "tpu": None}[args.device]


def torch_sync(device: str | None) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def torch_autocast(args, device: str | None):
    """bfloat16 autocast for --dtype=bfloat16 (a no-op context otherwise)."""
    import contextlib

    import torch

    if args.dtype != "bfloat16" or device is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda" if device == "cuda" else "cpu", dtype=torch.bfloat16)


def peak_flops(dtype: str) -> tuple[str, float | None]:
    """(the first JAX device's kind, its dense peak FLOP/s for `dtype`, None when the table does not know it: the
    CPU, whose measured matmul ceiling the benchmarks report instead)."""
    import jax

    kind = jax.devices()[0].device_kind
    for name, peaks in PEAK_FLOPS.items():
        if name.lower() in kind.lower():
            return kind, peaks[dtype]
    return kind, None


def utilisation(model_flops: float, seconds: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: model FLOPs per second over the chip's peak (None without a known peak)."""
    return None if peak is None or not model_flops else round(model_flops / seconds / peak, 4)


def device_fields(args, model_flops: float, kdjax_s: float, torch_s: float | None) -> dict:
    """The JSON fields every benchmark's accelerator mode adds: device, dtype, and each side's MFU."""
    kind, peak = peak_flops(args.dtype)
    return {"device": args.device, "device_kind": kind, "dtype": args.dtype, "peak_tflops": peak and peak / 1e12,
            "kdjax_mfu": utilisation(model_flops, kdjax_s, peak),
            "torch_mfu": utilisation(model_flops, torch_s, peak) if torch_s else None}


def xla_flops(jitted, *args) -> float | None:
    """The FLOPs XLA counts for one call of a jitted function on these arguments (its cost analysis); None where
    the backend gives none."""
    try:
        cost = jitted.lower(*args).compile().cost_analysis()
    except Exception:  # noqa: BLE001  some backends do not analyse
        return None
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = (cost or {}).get("flops")
    return float(flops) if flops and flops > 0 else None
