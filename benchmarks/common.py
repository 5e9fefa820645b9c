"""Measurements shared by the benchmarks."""

from __future__ import annotations

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
