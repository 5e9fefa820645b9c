"""Orbax checkpoints of the train state, the input pipeline's position and the loop's bookkeeping.

`workdir/checkpoints/<step>/` holds `state` (params, optimiser state, non-param model state, step),
`data` (the grain iterator state, JSON) and `meta` (early-stopping bookkeeping, JSON), so a killed run
resumes exactly. `workdir/best/<step>/` holds the model (parameters and non-parameter state such as BatchNorm
statistics, which must travel with the parameters they were computed with) with the best validation
metric.
Teachers are frozen and never saved here. Orbax writes to a temporary directory and renames it when
complete, so a run killed mid-save never leaves a checkpoint that looks whole.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

# Orbax splits every replicated array across its replicas so each writes a slice ("replica-parallel"). Each
# slice is a device op compiled per shape, so a first save of a model's hundreds of small replicated arrays
# on 8 CPU devices took a minute (1.5 s without). Only slices of 64 MiB or more, where parallel writes pay
# for themselves (a 7B model on a pod), are split now.
REPLICA_PARALLEL_MIN_BYTES = 64 << 20
ocp.type_handlers.register_type_handler(
    jax.Array, ocp.type_handlers.ArrayHandler(min_slice_bytes_for_replica_parallel=REPLICA_PARALLEL_MIN_BYTES),
    override=True)


class Checkpoints:
    def __init__(self, workdir: str, keep: int = 2, keep_best: bool = True, best_mode: str = "max"):
        opts = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                            enable_async_checkpointing=False)
        self.latest = ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                                            options=opts, item_names=("state", "data", "meta"))
        self.best = None
        if keep_best:
            best_opts = ocp.CheckpointManagerOptions(
                max_to_keep=1, create=True, enable_async_checkpointing=False,
                best_fn=lambda m: m["value"], best_mode=best_mode)
            self.best = ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "best"),
                                              options=best_opts, item_names=("model", "meta"))

    def latest_step(self) -> int | None:
        return self.latest.latest_step()

    def save(self, step: int, state: Any, data_state: dict, meta: dict) -> None:
        if step in self.latest.all_steps():  # a resumed run reaching a step it saved before (same state): done
            logging.info("checkpoint %d already saved", step)
            return
        self.latest.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state),
            meta=ocp.args.JsonSave(meta)), force=True)
        self.latest.wait_until_finished()

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict, dict]:
        out = self.latest.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore(),
            meta=ocp.args.JsonRestore()))
        return out["state"], out["data"], out["meta"]

    def save_best(self, step: int, model: Any, value: float, meta: dict) -> None:
        assert self.best is not None
        # Idempotent: a run killed after saving its best model and before its next regular checkpoint resumes
        # from the earlier one and reaches this evaluation again, with the same parameters (resumes are exact).
        if step in self.best.all_steps():
            logging.info("best model of step %d already saved", step)
            return
        self.best.save(step, args=ocp.args.Composite(
            model=ocp.args.StandardSave(model), meta=ocp.args.JsonSave({**meta, "value": value})),
            metrics={"value": float(value)}, force=True)
        self.best.wait_until_finished()

    def best_step(self) -> int | None:
        return None if self.best is None else self.best.best_step()

    def restore_best(self, abstract_model: Any) -> tuple[Any, dict] | None:
        step = self.best_step()
        if step is None:
            return None
        out = self.best.restore(step, args=ocp.args.Composite(
            model=ocp.args.StandardRestore(abstract_model), meta=ocp.args.JsonRestore()))
        return out["model"], out["meta"]

    def close(self) -> None:
        self.latest.close()
        if self.best is not None:
            self.best.close()


def abstract_like(tree: Any) -> Any:
    """ShapeDtypeStructs carrying each array's sharding: the restore target."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
