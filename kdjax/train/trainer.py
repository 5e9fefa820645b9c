"""The trainer shared by every system.

The hot path is functional: the trainable model is split with `nnx.split` into a graph definition and
pure-dict state, and one `jax.jit` step (explicit NamedShardings in and out, train state donated)
runs the frozen teacher forward, the student forward and backward and the optax update. The teacher's
state is an argument of the step but never differentiated, updated or saved.

Resuming: the train state, the grain iterator state and the early-stopping bookkeeping are saved
together, and dropout keys are derived from (seed, step), so a killed run resumed from its latest
checkpoint ends with the same parameters as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import signal
import time
from collections.abc import Sequence
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.experimental import multihost_utils

from kdjax import paths
from kdjax.models.state import flatten, path_str
from kdjax.train import batch as batch_lib, optim, sharding as shd
from kdjax.train.checkpoint import Checkpoints, abstract_like
from kdjax.train.logging import MetricWriter, Progress, format_table, is_main_process, progress_bar
from kdjax.train.task import Task


@dataclasses.dataclass
class Result:
    step: int
    metrics: dict[str, dict[str, float]]  # split -> metrics of the final (best) model
    report_path: str
    stopped_early: bool


def _opt_state_shardings(abstract_opt: Any, param_shardings: Any, mesh) -> Any:
    """Optimiser slots (mu, nu, ...) mirror parameters: give each the sharding of the parameter whose
    path ends its own path; anything else (counts) is replicated."""
    by_path = {p: s for p, s in flatten(param_shardings).items()}
    rep = shd.replicated(mesh)

    def pick(key_path, leaf):
        path = path_str(key_path)
        best = None
        for p, s in by_path.items():
            if (path == p or path.endswith("." + p)) and (best is None or len(p) > len(best[0])):
                best = (p, s)
        if best is not None and len(best[1].spec) <= len(getattr(leaf, "shape", ())):
            return best[1]
        return rep

    return jax.tree_util.tree_map_with_path(pick, abstract_opt)


def guard_init() -> dict[str, jax.Array]:
    """The divergence guard's part of the train state: consecutive non-finite steps, and all of them."""
    return {"bad_in_a_row": jnp.zeros((), jnp.int32), "skipped": jnp.zeros((), jnp.int32)}


class DivergenceError(RuntimeError):
    """Training went non-finite for train.max_bad_steps steps in a row; no such update was applied or saved."""


def total_steps(cfg: ml_collections.ConfigDict, num_train: int, global_batch: int) -> int:
    steps_per_epoch = max(num_train // global_batch, 1)
    if cfg.train.get("steps", 0):
        return int(cfg.train.steps)
    return int(cfg.train.epochs * steps_per_epoch)


class _Stop:
    """SIGTERM (preemption, SLURM time limit) asks the loop to checkpoint and exit cleanly.

    In a multi-process job the processes get the signal at slightly different steps, but they must
    checkpoint at the same step (the save is collective): every `every` steps they agree whether any of
    them was asked to stop."""

    def __init__(self, every: int = 1):
        self.requested = False
        self.every = max(int(every), 1) if jax.process_count() > 1 else 1
        try:
            self._prev = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not in the main thread
            self._prev = None

    def _handle(self, *_):
        self.requested = True

    def now(self, step: int) -> bool:
        """Whether to checkpoint and exit after this step (the same answer in every process)."""
        if jax.process_count() == 1:
            return self.requested
        if step % self.every:
            return False
        flags = multihost_utils.process_allgather(np.asarray(self.requested, np.int32))
        return bool(np.any(flags))

    def restore(self):
        if self._prev is not None:
            signal.signal(signal.SIGTERM, self._prev)


def to_host(tree: Any) -> Any:
    """Global arrays as numpy on every process, also those sharded over other hosts' devices."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)


def _pad_batch(examples: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    n = len(next(iter(examples.values())))
    out = {k: np.concatenate([v, np.zeros((size - n,) + v.shape[1:], v.dtype)]) if n < size else v
           for k, v in examples.items()}
    out["_valid"] = (np.arange(size) < n).astype(np.float32)
    return out


def training_order(data: grain.MapDataset, seed: int, transform=None) -> grain.MapDataset:
    """The training examples in the order a run reads them (reshuffled every epoch by the run's seed), with the
    task's augmentation: global batch i is examples [i * batch_size, (i + 1) * batch_size)."""
    ds = data.shuffle(seed=seed).repeat(None)
    return ds.random_map(transform, seed=seed + 1) if transform is not None else ds


class Trainer:
    """`abstract=True` takes a Task whose model and teacher come from `nnx.eval_shape`: the state is then
    ShapeDtypeStructs carrying their shardings, nothing is allocated, and `lower_train_step` gives the
    real step for ahead-of-time compilation (memory, FLOPs, does it fit)."""

    def __init__(self, cfg: ml_collections.ConfigDict, task: Task, workdir: str, *, abstract: bool = False,
                 devices: Sequence[jax.Device] | None = None):
        self.cfg, self.task, self.workdir, self.abstract = cfg, task, workdir, abstract
        paths.makedirs(workdir)
        self.mesh = shd.make_mesh(dict(cfg.mesh), devices)  # devices: e.g. a TPU topology's, to compile for
        dp = shd.data_parallel_size(self.mesh)
        self.global_batch = int(cfg.train.batch_size)
        if self.global_batch % dp or self.global_batch % jax.process_count():
            raise ValueError(f"train.batch_size={self.global_batch} must be divisible by the "
                             f"data-parallel size {dp} and the process count {jax.process_count()}")
        self.local_batch = self.global_batch // jax.process_count()
        eval_batch = int(cfg.eval.get("batch_size", 0) or self.global_batch)
        if eval_batch % dp or eval_batch % jax.process_count():
            raise ValueError(f"eval.batch_size={eval_batch} must be divisible by the data-parallel size {dp} "
                             f"and the process count {jax.process_count()}")
        self.steps = total_steps(cfg, len(task.train_data), self.global_batch)
        logging.info("mesh %s; %d train examples; %d steps of batch %d", shd.describe(self.mesh),
                     len(task.train_data), self.steps, self.global_batch)
        self._build_state()
        self._build_steps()

    # ----------------------------------------------------------------------------------------- state
    def _build_state(self) -> None:
        mesh, task = self.mesh, self.task
        self.gdef, frozen, params, rest = nnx.split(task.model, task.frozen or nnx.Nothing, nnx.Param, ...)
        params, rest, frozen = nnx.to_pure_dict(params), nnx.to_pure_dict(rest), nnx.to_pure_dict(frozen)
        p_specs = shd.param_specs(params, mesh, task.logical_axes)
        shd.log_specs(params, p_specs)
        self.param_shardings = shd.named(mesh, p_specs)
        self.frozen_state = self._place(frozen, shd.named(mesh, shd.param_specs(frozen, mesh, task.logical_axes)))
        self.frozen_shardings = jax.tree.map(lambda x: x.sharding, self.frozen_state)
        logging.info("%d trainable and %d frozen parameters", sum(x.size for x in jax.tree.leaves(params)),
                     sum(x.size for x in jax.tree.leaves(frozen)))
        rep = shd.replicated(mesh)
        params = self._place(params, self.param_shardings)
        rest = self._place(rest, jax.tree.map(lambda _: rep, rest))
        self.tx, self.schedules = optim.build(self.cfg.optim, params, self.steps)
        opt_sh = _opt_state_shardings(jax.eval_shape(self.tx.init, params), self.param_shardings, mesh)
        if self.abstract:
            opt_state = self._place(jax.eval_shape(self.tx.init, params), opt_sh)
        else:
            opt_state = jax.jit(self.tx.init, out_shardings=opt_sh)(params)
        self.state = {"params": params, "opt_state": opt_state, "rest": rest,
                      "step": self._place(jnp.zeros((), jnp.int32), rep),
                      "guard": jax.tree.map(lambda x: self._place(x, rep), guard_init())}
        self.state_shardings = jax.tree.map(lambda x: x.sharding, self.state)
        if task.teacher is not None:
            self.tgdef, tstate = nnx.split(task.teacher)
            tstate = nnx.to_pure_dict(tstate)
            t_specs = shd.param_specs(tstate, mesh, task.teacher_logical_axes)
            self.teacher_state = self._place(tstate, shd.named(mesh, t_specs))
        else:
            self.tgdef, self.teacher_state = None, {}
        self.teacher_shardings = jax.tree.map(lambda x: x.sharding, self.teacher_state)

    def _place(self, tree: Any, shardings: Any) -> Any:
        """Arrays on their shardings; abstract: ShapeDtypeStructs that carry them."""
        if self.abstract:
            return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)
        return jax.device_put(tree, shardings)

    def trace_train_step(self, batch: dict[str, jax.ShapeDtypeStruct]) -> jax.stages.Traced:
        """The jitted train step traced for a global batch of these shapes (sharded over the batch axes); its
        `.jaxpr` is the step's program, `.lower()` what XLA compiles."""
        sh = shd.batch_sharding(self.mesh)
        batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=sh) for k, v in batch.items()}
        return self.train_step.trace(self.state, self.frozen_state, self.teacher_state, batch)

    def lower_train_step(self, batch: dict[str, jax.ShapeDtypeStruct]) -> jax.stages.Lowered:
        return self.trace_train_step(batch).lower()

    def _merge(self, params, rest, frozen) -> nnx.Module:
        return nnx.merge(self.gdef, frozen, params, rest)

    def _teacher(self, tstate) -> nnx.Module | None:
        return nnx.merge(self.tgdef, tstate) if self.tgdef is not None else None

    # ----------------------------------------------------------------------------------------- steps
    def _build_steps(self) -> None:
        task, tx = self.task, self.tx
        base_key = jax.random.key(int(self.cfg.seed))
        batch_sh = shd.batch_sharding(self.mesh)
        rep = shd.replicated(self.mesh)
        schedules = self.schedules

        def train_step(state, frozen, tstate, batch):
            key = jax.random.fold_in(base_key, state["step"])

            def loss_of(params):
                model = self._merge(params, state["rest"], frozen)
                loss, aux = task.loss_fn(model, self._teacher(tstate), batch, nnx.Rngs(dropout=key))
                new_rest = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
                return loss, (aux, new_rest)

            (loss, (aux, new_rest)), grads = jax.value_and_grad(loss_of, has_aux=True)(state["params"])
            updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
            params = optax.apply_updates(state["params"], updates)
            grad_norm = optax.global_norm(grads)
            metrics = {"loss": loss, "grad_norm": grad_norm, **aux}
            metrics.update({f"lr/{k}": s(state["step"]) for k, s in schedules.items()})
            # Divergence guard: a step whose loss or gradient is not finite changes nothing but the step count
            # (its update, optimiser moments and batch statistics are dropped), so no non-finite parameter is
            # ever trained on or saved; the loop stops after train.max_bad_steps of them in a row.
            finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
            keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
            g = state["guard"]
            guard = {"bad_in_a_row": jnp.where(finite, 0, g["bad_in_a_row"] + 1),
                     "skipped": g["skipped"] + (~finite).astype(jnp.int32)}
            metrics.update(skipped_steps=guard["skipped"], bad_in_a_row=guard["bad_in_a_row"])
            new = {"params": keep(params, state["params"]), "opt_state": keep(opt_state, state["opt_state"]),
                   "rest": keep(new_rest, state["rest"]), "step": state["step"] + 1, "guard": guard}
            return new, metrics

        self.train_step = jax.jit(
            train_step, in_shardings=(self.state_shardings, self.frozen_shardings, self.teacher_shardings, batch_sh),
            out_shardings=(self.state_shardings, rep), donate_argnums=(0,))

        def predict_step(params, rest, frozen, batch):
            return task.predict_fn(self._merge(params, rest, frozen), batch)

        self.predict_step = jax.jit(
            predict_step, in_shardings=(self.param_shardings, self.state_shardings["rest"], self.frozen_shardings,
                                        batch_sh),
            out_shardings=batch_sh)

    # ------------------------------------------------------------------------------------------ data
    def train_iterator(self) -> grain.DatasetIterator:
        """This process's rows of each global batch. Every process shuffles the same way and reads only
        its contiguous part of each global batch, so the global batches (and the losses) do not depend on
        the number of processes, and the iterator state (the next batch index) is the same in all."""
        ds = training_order(self.task.train_data, int(self.cfg.seed), self.task.train_transform)
        ds = ds.batch(self.local_batch, drop_remainder=True)[jax.process_index()::jax.process_count()]
        return iter(ds.to_iter_dataset())

    def predict(self, params, rest, split: str) -> dict[str, np.ndarray]:
        """Predictions for a whole split, in its order; the last batch is padded and the padding dropped.
        Each process reads its contiguous part of each global batch."""
        ds = self.task.eval_data[split]
        size = int(self.cfg.eval.get("batch_size", 0) or self.global_batch)
        local, pi = size // jax.process_count(), jax.process_index()
        outs: list[dict[str, np.ndarray]] = []
        bar = progress_bar(len(ds), f"evaluate {split}", "example", leave=False)
        for start in range(0, len(ds), size):
            lo = min(start + pi * local, len(ds))
            hi = min(lo + local, len(ds))
            rows = ds[lo:hi] if hi > lo else ds[:1]  # a process past the end sends padding only
            examples = next(iter(rows.batch(len(rows))))
            if hi <= lo:
                examples = {k: v[:0] for k, v in examples.items()}
            batch = shd.global_batch(_pad_batch(examples, local), self.mesh)
            pred = self.predict_step(params, rest, self.frozen_state, batch)
            pred["_valid"] = batch["_valid"]
            pred = to_host(pred)
            valid = np.asarray(pred.pop("_valid")).astype(bool)
            outs.append({k: np.asarray(v)[valid] for k, v in pred.items()})
            bar.update(min(size, len(ds) - start))
        bar.close()
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]} if outs else {}

    def evaluate(self, params, rest, split: str) -> dict[str, float]:
        return self.task.evaluate(self.predict(params, rest, split), split)

    # ------------------------------------------------------------------------------------------ loop
    def run(self) -> Result:
        cfg = self.cfg
        # the workdir describes itself: captioning, Table-1 initialisation and conversions rebuild from it
        if is_main_process():
            paths.write_text(paths.join(self.workdir, "config.json"), cfg.to_json_best_effort(indent=2))
        es = cfg.train.get("early_stopping", ml_collections.ConfigDict())
        metric = es.get("metric", "")
        mode = es.get("mode", "max")
        patience = int(es.get("patience", 0))
        ckpts = Checkpoints(self.workdir, keep=int(cfg.train.get("keep_checkpoints", 2)),
                            keep_best=bool(metric), best_mode=mode)
        it = self.train_iterator()
        meta = {"best": None, "best_step": None, "bad_evals": 0, "stopped_early": False}
        start = None
        restored = ckpts.restore_latest(abstract_like(self.state))  # the newest intact one; damaged ones set aside
        if restored is not None:
            start, self.state, data_state, meta = restored
            it.set_state(data_state)
            logging.info("resumed from step %d", start)
        writer = MetricWriter(self.workdir, resume_step=start)
        step = int(start or 0)
        progress = Progress(self.steps, step)
        stop = _Stop(int(cfg.train.get("stop_check_every", 10)))
        log_every = int(cfg.train.get("log_every", 50))
        eval_every = int(cfg.eval.get("every", 0)) or int(cfg.eval.get("every_epochs", 0)) * max(
            len(self.task.train_data) // self.global_batch, 1)
        ckpt_every = int(cfg.train.get("checkpoint_every", 0))
        last_saved = start
        has_dev = len(self.task.eval_data.get("dev", ())) > 0
        t0 = time.perf_counter()
        checked = self.task.batch_spec is None
        try:
            while step < self.steps and not meta["stopped_early"]:
                local = next(it)
                if not checked:  # what the pipeline emits is what the system describes (and aot compiles)
                    batch_lib.check(self.task.batch_spec, local, f"the first training batch (step {step + 1})")
                    checked = True
                batch = shd.global_batch(local, self.mesh)
                self.state, metrics = self.train_step(self.state, self.frozen_state, self.teacher_state, batch)
                step += 1
                logging_now = step % log_every == 0 or step == self.steps
                evaluating = bool(eval_every and has_dev and (step % eval_every == 0 or step == self.steps))
                saving = bool(ckpt_every and step % ckpt_every == 0)
                if logging_now:
                    m = jax.device_get(metrics)
                    rate = progress.update(step, loss=float(m["loss"]))
                    writer.write(step, "train", {**m, "steps_per_sec": rate})
                    self._check_guard(step, m)
                elif evaluating or saving:  # never evaluate or save after a run of bad steps unseen
                    self._check_guard(step, None, metrics)
                if evaluating:
                    dev = self.evaluate(self.state["params"], self.state["rest"], "dev")
                    writer.write(step, "dev", dev)
                    if metric:
                        if metric not in dev:
                            raise KeyError(f"train.early_stopping.metric={metric!r} is not among the dev "
                                           f"metrics {sorted(dev)}")
                        value = float(dev[metric])
                        better = meta["best"] is None or (value > meta["best"] if mode == "max"
                                                          else value < meta["best"])
                        if better:
                            meta.update(best=value, best_step=step, bad_evals=0)
                            ckpts.save_best(step, {"params": self.state["params"], "rest": self.state["rest"]},
                                            value, {"step": step, **dev})
                        else:
                            meta["bad_evals"] += 1
                            if patience and meta["bad_evals"] >= patience:
                                meta["stopped_early"] = True
                                logging.info("early stopping at step %d (best %s=%.4f at %d)", step,
                                             metric, meta["best"], meta["best_step"])
                stopping = stop.now(step)
                if (ckpt_every and step % ckpt_every == 0) or stopping:
                    ckpts.save(step, self.state, it.get_state(), meta)
                    last_saved = step
                if stopping:
                    logging.warning("SIGTERM: checkpoint written at step %d, exiting", step)
                    raise SystemExit(143)
            if last_saved != step:
                ckpts.save(step, self.state, it.get_state(), meta)
            train_seconds = time.perf_counter() - t0
            return self._finish(ckpts, step, meta, writer, train_seconds)
        finally:
            stop.restore()
            progress.close()
            writer.close()
            ckpts.close()

    def _check_guard(self, step: int, m: dict | None, device_metrics: dict | None = None) -> None:
        """DivergenceError when the last train.max_bad_steps steps (or more) all had a non-finite loss or gradient
        norm, naming where the streak began and which loss terms were not finite."""
        limit = int(self.cfg.train.get("max_bad_steps", 5))
        if m is None:
            m = jax.device_get(device_metrics)
        bad = int(m["bad_in_a_row"])
        if bad < limit:
            return
        terms = sorted(k for k, v in m.items() if not k.startswith("lr/") and np.size(v) == 1
                       and not np.isfinite(np.asarray(v, np.float64)))
        raise DivergenceError(
            f"training diverged: steps {step - bad + 1}-{step} ({bad} in a row, train.max_bad_steps={limit}) had a "
            f"non-finite loss or gradient norm; non-finite at step {step}: {', '.join(terms) or 'none shown'}. Their "
            f"updates were not applied and no checkpoint holds them; lower optim.lr or check the data, then rerun "
            f"(the run resumes from its last checkpoint)")

    def _save_predictions(self, preds: dict[str, dict[str, np.ndarray]]) -> None:
        """predictions/<split>.npz: the raw per-example outputs behind the reported metrics, in the split's
        order, for significance tests and error analysis without re-running the model; and, where the task
        says how, predictions/<split>.jsonl: one readable row per example (id, input, prediction, references,
        per-example scores), which `python -m kdjax.evaluate --predictions` scores directly."""
        folder = paths.join(self.workdir, "predictions")
        paths.makedirs(folder)
        for split, p in preds.items():
            buf = io.BytesIO()
            np.savez(buf, **p)
            paths.write_bytes(paths.join(folder, f"{split}.npz"), buf.getvalue())
            if self.task.prediction_rows is not None:
                paths.write_text(paths.join(folder, f"{split}.jsonl"), "".join(
                    json.dumps(row, ensure_ascii=False, default=float) + "\n"
                    for row in self.task.prediction_rows(p, split)))

    def _finish(self, ckpts: Checkpoints, step: int, meta: dict, writer: MetricWriter,
                train_seconds: float) -> Result:
        params, rest, source = self.state["params"], self.state["rest"], "final"
        best = (ckpts.restore_best(abstract_like({"params": params, "rest": rest}))
                if ckpts.best is not None else None)
        if best is not None:
            params, rest, source = best[0]["params"], best[0]["rest"], f"best (step {best[1]['step']})"
        # eval.final=False: no closing evaluation (mesh and resume checks that read only the training losses)
        final = bool(self.cfg.eval.get("final", True))
        preds = {split: self.predict(params, rest, split) for split, ds in self.task.eval_data.items()
                 if len(ds) and final}
        results = {split: self.task.evaluate(p, split) for split, p in preds.items()}
        if is_main_process():
            self._save_predictions(preds)
        for split, m in results.items():
            writer.write(step, f"final_{split}", m)
        report: dict[str, Any] = {"step": step, "params": source, "stopped_early": meta["stopped_early"],
                                  # isolated non-finite steps whose updates the divergence guard dropped
                                  "skipped_nonfinite_steps": int(to_host(self.state["guard"]["skipped"])),
                                  "train_seconds_this_run": train_seconds, "metrics": results,
                                  "info": self.task.info}
        path = paths.join(self.workdir, "report.json")
        if self.task.report is not None and final:  # gathered everywhere (a collective), used by process 0
            model = self._merge(to_host(params), to_host(rest), to_host(self.frozen_state))
            if is_main_process():
                report.update(self.task.report(model, results, preds, self.workdir))
        if is_main_process():
            paths.write_text(path, json.dumps(report, indent=2, default=float))
            scale = self.task.table_scale
            print(f"\nEvaluation ({source} parameters" + (f", x{scale:g}):" if scale != 1 else "):"))
            print(format_table(results, scale=scale))
        return Result(step, results, path, bool(meta["stopped_early"]))
