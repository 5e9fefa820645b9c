"""Orbax checkpoints of the train state, the input pipeline's position and the loop's bookkeeping.

`workdir/checkpoints/<step>/` holds `state` (params, optimiser state, non-param model state, step),
`data` (the grain iterator state, JSON) and `meta` (early-stopping bookkeeping, JSON), so a killed run
resumes exactly. `workdir/best/<step>/` holds the model (parameters and non-parameter state such as BatchNorm
statistics, which must travel with the parameters they were computed with) with the best validation
metric.
Teachers are frozen and never saved here. Orbax writes to a temporary directory and renames it when
complete, so a run killed mid-save never leaves a checkpoint that looks whole.

Damage after the save (a truncated, zeroed or bit-flipped file, a deleted item) is caught by a checksum manifest
(kdjax/train/checksums.py) checked before each restore. A damaged step is reported with its path and moved to
`workdir/damaged_checkpoints/`, and the run resumes from the newest intact one; when none is intact the run stops
naming them rather than start afresh.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from kdjax import paths
from kdjax.errors import InputError
from kdjax.train import checksums

# Orbax splits every replicated array across its replicas so each writes a slice ("replica-parallel"). Each
# slice is a device op compiled per shape, so a first save of a model's hundreds of small replicated arrays
# on 8 CPU devices took a minute (1.5 s without). Only slices of 64 MiB or more, where parallel writes pay
# for themselves (a 7B model on a pod), are split now.
REPLICA_PARALLEL_MIN_BYTES = 64 << 20


class _NotOurOverride(logging.Filter):
    """Orbax warns about every type handler override, ours included: not news to a user."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "overriding" not in record.getMessage()


_quiet = _NotOurOverride()
logging.getLogger("absl").addFilter(_quiet)
try:
    ocp.type_handlers.register_type_handler(
        jax.Array, ocp.type_handlers.ArrayHandler(min_slice_bytes_for_replica_parallel=REPLICA_PARALLEL_MIN_BYTES),
        override=True)
finally:
    logging.getLogger("absl").removeFilter(_quiet)


class DamagedCheckpointError(InputError):
    """No checkpoint of the workdir could be restored; the message names each and why."""


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300] if text else ''}"


class Checkpoints:
    def __init__(self, workdir: str, keep: int = 2, keep_best: bool = True, best_mode: str = "max"):
        self.workdir = os.fspath(paths.path(workdir))
        opts = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                            enable_async_checkpointing=False)
        self.latest = ocp.CheckpointManager(paths.path(workdir) / "checkpoints",
                                            options=opts, item_names=("state", "data", "meta"))
        self.best = None
        if keep_best:
            best_opts = ocp.CheckpointManagerOptions(
                max_to_keep=1, create=True, enable_async_checkpointing=False,
                best_fn=lambda m: m["value"], best_mode=best_mode)
            self.best = ocp.CheckpointManager(paths.path(workdir) / "best",
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
        self._seal(self.latest, step)

    @staticmethod
    def _step_dir(mgr: ocp.CheckpointManager, step: int) -> str:
        return paths.join(str(mgr.directory), str(step))

    def _seal(self, mgr: ocp.CheckpointManager, step: int) -> None:
        """The checksum manifest of a finished save (process 0 writes it; the workdir is shared)."""
        if jax.process_index() == 0:
            checksums.write(self._step_dir(mgr, step))

    def _check(self, mgr: ocp.CheckpointManager, step: int) -> str | None:
        """Why this step cannot be trusted, or None. A step without a manifest (written before kdjax kept them, or
        killed between orbax's commit and the manifest) is trusted if it restores."""
        path = self._step_dir(mgr, step)
        return checksums.verify(path) if checksums.has_manifest(path) else None

    def _set_aside(self, step: int, why: str) -> str:
        """Move a damaged step out of orbax's sight (kept, not deleted: it may still hold something a user wants)."""
        src = self._step_dir(self.latest, step)
        dst = paths.join(self.workdir, "damaged_checkpoints", f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
        if jax.process_index() == 0:
            paths.makedirs(os.path.dirname(dst))
            paths.move(src, dst)
            paths.write_text(paths.join(dst, "WHY_DAMAGED.txt"), why + "\n")
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"kdjax_set_aside_{step}")
        self.latest.reload()
        logging.error("checkpoint %s is damaged (%s): moved to %s", src, why, dst)
        return dst

    def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict, dict] | None:
        """(step, state, data, meta) of the newest intact checkpoint, None when there is none at all. Damaged ones
        are reported and set aside on the way; DamagedCheckpointError when every one is damaged."""
        damaged = []
        for step in sorted(self.latest.all_steps(), reverse=True):
            path = self._step_dir(self.latest, step)
            why = self._check(self.latest, step)
            if why is None:
                try:
                    return (step, *self.restore(step, abstract_state))
                except Exception as e:  # noqa: BLE001 - whatever orbax/tensorstore raise on a broken file
                    if checksums.has_manifest(path):
                        # intact bytes that do not restore: not damage but another model or config; moving it
                        # aside would lose good work
                        raise InputError(f"{path}: the checkpoint is intact (its checksums match) but does not "
                                         f"restore into this run's model ({_first_line(e)}); was the config "
                                         f"changed since it was written?") from None
                    why = f"restore failed: {_first_line(e)}"
            damaged.append(f"{path}: {why} (moved to {self._set_aside(step, why)})")
        if damaged:
            raise DamagedCheckpointError(
                "no intact checkpoint to resume from; every one is damaged:\n  " + "\n  ".join(damaged)
                + "\nThe run did not start afresh: to do so, delete or move the workdir's checkpoints/ folder")
        return None

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
        self._seal(self.best, step)

    def best_step(self) -> int | None:
        return None if self.best is None else self.best.best_step()

    def restore_best(self, abstract_model: Any) -> tuple[Any, dict] | None:
        step = self.best_step()
        if step is None:
            return None
        why = self._check(self.best, step)
        if why is not None:  # never hand back a damaged best model as if it were the one selected
            raise DamagedCheckpointError(
                f"{self._step_dir(self.best, step)}: the best model's checkpoint is damaged ({why}); move it away "
                f"to use the final parameters instead")
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
