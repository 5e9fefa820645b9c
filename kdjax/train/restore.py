"""A trained model back from a workdir, for inference (captioning, export) without the training data."""

from __future__ import annotations

import os
from typing import Any

import jax
import ml_collections
from flax import nnx

from kdjax.train import optim
from kdjax.train.checkpoint import Checkpoints, abstract_like


def restore_trained(cfg: ml_collections.ConfigDict, model: nnx.Module, frozen: Any, workdir: str) -> nnx.Module:
    """`model` (built as for training, frozen parts from their pretrained checkpoints) with the trained
    parameters of `workdir`: the kept best model if there is one, else the latest train checkpoint."""
    if not os.path.isdir(os.path.join(workdir, "checkpoints")):
        raise FileNotFoundError(f"{workdir}: no checkpoints (train with this workdir first)")
    gdef, frozen_state, params, rest = nnx.split(model, frozen or nnx.Nothing, nnx.Param, ...)
    params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
    ckpts = Checkpoints(workdir, keep_best=os.path.isdir(os.path.join(workdir, "best")))
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
