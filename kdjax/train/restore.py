"""A trained model back from a workdir: for inference (captioning, export) without the training data, and as the
starting point of another run (a fine-tuning stage's `init_from`)."""

from __future__ import annotations

import fnmatch
from typing import Any, Iterable

import jax
import ml_collections
from flax import nnx

from kdjax import paths
from kdjax.errors import InputError
from kdjax.models.state import flatten, map_with_path
from kdjax.train import checksums, optim
from kdjax.train.checkpoint import Checkpoints, abstract_like


def workdir_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a kdjax workdir was trained with (its config.json)."""
    import json

    path = paths.join(workdir, "config.json")
    if not paths.isfile(path):
        raise FileNotFoundError(f"{path}: not a kdjax workdir (no config.json)")
    try:
        with paths.open(path, encoding="utf-8") as f:
            return ml_collections.ConfigDict(json.load(f))
    except ValueError as e:
        raise InputError(f"{path}: unreadable ({e})") from None


def restore_trained(cfg: ml_collections.ConfigDict, model: nnx.Module, frozen: Any, workdir: str) -> nnx.Module:
    """`model` (built as for training, frozen parts from their pretrained checkpoints) with the trained
    parameters of `workdir`: the kept best model if there is one, else the latest train checkpoint."""
    if not paths.isdir(paths.join(workdir, "checkpoints")):
        raise FileNotFoundError(f"{workdir}: no checkpoints (train with this workdir first)")
    gdef, frozen_state, params, rest = nnx.split(model, frozen or nnx.Nothing, nnx.Param, ...)
    params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
    ckpts = Checkpoints(workdir, keep_best=paths.isdir(paths.join(workdir, "best")))
    try:
        best = ckpts.restore_best(abstract_like({"params": params, "rest": rest})) if ckpts.best_step() else None
        if best is not None:
            params, rest = best[0]["params"], best[0]["rest"]
        else:
            tx, _ = optim.build(cfg.optim, params, 1)  # the optimiser state's structure, for the restore target
            from kdjax.train.trainer import guard_init

            abstract = abstract_like({"params": params, "opt_state": jax.eval_shape(tx.init, params), "rest": rest,
                                      "step": jax.numpy.zeros((), jax.numpy.int32), "guard": guard_init()})
            latest = ckpts.restore_latest(abstract)
            if latest is None:
                raise FileNotFoundError(f"{workdir}: no checkpoints (train with this workdir first)")
            state = latest[1]
            params, rest = state["params"], state["rest"]
    finally:
        ckpts.close()
    return nnx.merge(gdef, frozen_state, params, rest)


def _steps(root: str) -> list[int]:
    return sorted((int(n) for n in paths.listdir(root) if n.isdigit()), reverse=True) if paths.isdir(root) else []


def _kept(workdir: str):
    """(path, item, why not intact or None) of each checkpoint of `workdir`, in the order they are preferred: its kept
    best models, then its train checkpoints, newest first."""
    for sub, item in (("best", "model"), ("checkpoints", "state")):
        for step in _steps(paths.join(workdir, sub)):
            path = paths.join(workdir, sub, str(step))
            yield path, item, checksums.verify(path) if checksums.has_manifest(path) else None


def trained_checkpoint(workdir: str) -> str:
    """The checkpoint `read_params` reads (by its checksums; not restored): a trained model's identity."""
    for path, _, why in _kept(workdir):
        if why is None:
            return path
    raise InputError(f"{workdir}: no intact checkpoint (train with this workdir first)")


def read_params(workdir: str) -> tuple[dict[str, jax.Array], str]:
    """The trained parameters of another run's workdir, flat ('qformer.layer.0....kernel' -> array on this process's
    first device), and the checkpoint they came from: its kept best model if it has one, else its newest intact
    train checkpoint. Its model is not built (the frozen bases are not read) and nothing in the workdir is written
    or moved: a damaged checkpoint is passed over and named if none is left."""
    import orbax.checkpoint as ocp

    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    passed = []
    for path, item, why in _kept(workdir):
        if why is None:
            try:
                with ocp.StandardCheckpointer() as ckpt:
                    tree = ckpt.metadata(paths.join(path, item)).item_metadata
                    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), tree)
                    return flatten(ckpt.restore(paths.join(path, item), target)["params"]), path
            except Exception as e:  # noqa: BLE001 - whatever orbax raises on a broken or foreign directory
                why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        passed.append(f"{path}: {why}")
    raise InputError(f"{workdir}: no intact checkpoint to initialise from"
                     + ("".join(f"\n  {p}" for p in passed) if passed else " (train with this workdir first)"))


def init_params(module: nnx.Module, which: Any, params: dict[str, jax.Array], source: str, *, prefix: str = "",
                keep: Iterable[str] = ()) -> list[str]:
    """Set the parameters of `module` that `which` (an nnx filter) selects from flat `params` (`read_params`), named
    there with `prefix` in front. Names matching a `keep` glob keep their fresh values; every other one must be in
    `params` with its shape (an InputError naming each that is not). Returns the names under `prefix` that were
    not used (e.g. the distillation heads of a pre-training stage)."""
    keep = tuple(keep)
    state = nnx.state(module, which)
    wanted = flatten(state)
    problems = [f"{name} {tuple(v.shape)}: " + ("absent" if prefix + name not in params else
                                                 f"{tuple(params[prefix + name].shape)} there")
                for name, v in wanted.items() if not any(fnmatch.fnmatch(name, k) for k in keep)
                and (prefix + name not in params or params[prefix + name].shape != v.shape)]
    if problems:
        raise InputError(f"{source}: does not hold this model's parameters ({len(problems)} differ: "
                         + "; ".join(problems[:20]) + (" ..." if len(problems) > 20 else "")
                         + "); was it trained with the same architecture?")

    def take(name: str, v):
        if any(fnmatch.fnmatch(name, k) for k in keep):
            return v
        return jax.device_put(params[prefix + name].astype(v.dtype), v.sharding)

    nnx.replace_by_pure_dict(state, map_with_path(take, nnx.to_pure_dict(state)))
    nnx.update(module, state)
    return sorted(n[len(prefix):] for n in params if n.startswith(prefix) and n[len(prefix):] not in wanted)
