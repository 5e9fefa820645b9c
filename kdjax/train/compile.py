"""Ahead-of-time compilation of a system's real train step from abstract shapes: per-device memory and
FLOPs of a configuration on a mesh, without allocating (or even reading) a weight."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections

from kdjax.train.flops import missed_scan_flops, xla_flops
from kdjax.train.task import Task
from kdjax.train.trainer import Trainer

GIB = 2 ** 30


def compile_train_step(cfg: ml_collections.ConfigDict, task: Task, batch: dict[str, jax.ShapeDtypeStruct],
                       devices: Sequence[jax.Device] | None = None) -> dict[str, Any]:
    """Compile the Trainer's jitted step for `task` (abstract modules, see e.g. multi2cap.abstract_task) on
    `cfg.mesh` over `devices` (default: this host's; or a TPU topology's compile-only devices). Returns the
    per-device memory (GiB), the FLOPs per device, the state's unsharded size and the compile time. Raises
    the compiler's error when the program does not fit (RESOURCE_EXHAUSTED on TPU).

    FLOPs: XLA's count of the partitioned program (one device's), which sees a scanned layer stack's body
    once, plus the matmul/convolution FLOPs of the iterations it misses, from the step's jaxpr
    (kdjax.train.flops), split evenly over the devices; `flops_xla` is XLA's figure alone."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kdjax_aot_") as tmp:
        trainer = Trainer(cfg, task, tmp, abstract=True, devices=devices)
        traced = trainer.trace_train_step(batch)
        lowered = traced.lower()
        compiled = lowered.compile()
    seconds = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    flops, flops_source = xla_flops(compiled), "the partitioned program"
    if not flops:  # XLA:GPU has no cost analysis: the whole step's count (XLA's CPU cost model), split evenly
        flops, flops_source = _global_flops(lowered) / trainer.mesh.size, "the whole step / devices"
    missed = missed_scan_flops(traced.jaxpr) / trainer.mesh.size
    state = (trainer.state, trainer.frozen_state, trainer.teacher_state)
    total = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
    per_device = {k: getattr(mem, f"{k}_size_in_bytes") / GIB
                  for k in ("argument", "output", "temp", "generated_code", "alias")}
    return {"devices": trainer.mesh.size, "mesh": dict(trainer.mesh.shape), "per_device_gib": per_device,
            "peak_gib": per_device["argument"] + per_device["output"] + per_device["temp"] - per_device["alias"],
            "state_gib_unsharded": total / GIB, "flops_per_device": flops + missed, "flops_xla": flops,
            "flops_scan_added": missed, "flops_source": flops_source,
            "compile_seconds": seconds, "trainable_params": int(sum(x.size for x in jax.tree.leaves(
                trainer.state["params"]))), "frozen_params": int(sum(x.size for x in jax.tree.leaves(
                    trainer.frozen_state)))}


def _global_flops(lowered: jax.stages.Lowered) -> float:
    """FLOPs of the unpartitioned step by XLA's HLO cost model on the host backend (an internal jaxlib entry
    point; 0 when it moves)."""
    try:
        import jax.extend.backend
        from jax._src.lib import xla_client

        module = lowered.compiler_ir("hlo").as_hlo_module()
        cost = xla_client._xla.hlo_module_cost_analysis(jax.extend.backend.get_backend("cpu"), module)
        return float(cost.get("flops", 0.0))
    except Exception:  # noqa: BLE001
        return 0.0
