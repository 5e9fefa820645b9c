"""DSG-KD's step loss: the student on a batch of notes against the teacher's targets (kdjax.losses.dsg_kd.total_loss),
with the batch's unlabelled notes (`u_` fields, data.unlabelled) joined behind its labelled ones: they add L_hidn and
L_attn and no CE."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from kdjax.losses.dsg_kd import total_loss
from kdjax.systems.dsg_kd import teacher as teacher_lib

UNLABELLED = "u_"  # prefix of an example's paired unlabelled note's fields (all but "label")


def joined(batch: Mapping[str, jax.Array]) -> tuple[dict[str, jax.Array], jax.Array | None]:
    """One batch of labelled then unlabelled notes, and CE's weight per note (1 labelled, 0 unlabelled; None when the
    batch has no unlabelled notes)."""
    if UNLABELLED + "s_input_ids" not in batch:
        return dict(batch), None
    n = batch["label"].shape[0]
    out = {k: jnp.concatenate([v, batch[UNLABELLED + k]]) for k, v in batch.items()
           if not k.startswith(UNLABELLED) and k != "label"}
    out["label"] = jnp.concatenate([batch["label"], jnp.zeros_like(batch["label"])])  # read with weight 0
    return out, jnp.concatenate([jnp.ones((n,), jnp.float32), jnp.zeros((n,), jnp.float32)])


def student_loss(model: Any, teacher: Any, batch: Mapping[str, jax.Array], p: teacher_lib.Plan, *,
                 deterministic: bool, rngs: Any = None) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(L_total, its terms) of `model` (a Student) on `batch`; the teacher's targets from `teacher` in the step, or,
    without one, from the batch (a cached teacher)."""
    batch, weights = joined(batch)
    s = model.student(batch["s_input_ids"], batch["s_attention_mask"], batch["s_token_type_ids"],
                      output_hidden_states=p.alpha > 0, output_attentions=p.beta > 0, deterministic=deterministic,
                      rngs=rngs)
    if not p.distils:
        t = {}
    elif teacher is not None:
        t = teacher_lib.targets(teacher, batch, p)
    else:
        t = teacher_lib.from_batch(batch)
    loss, metrics = total_loss(s["logits"], batch["label"], s.get("hidden_states"), s.get("attentions"),
                               batch["s_word_ids"], t, alpha=p.alpha, beta=p.beta, num_words=p.num_words,
                               layer_map=p.layer_map, keys=p.keys, average_heads=p.average_heads,
                               project=model.project, form=p.form, label_weights=weights, ce_weight=p.ce_weight)
    metrics["domain_words"] = jnp.sum(batch["s_word_ids"].max(-1) > 0)
    return loss, metrics


def make_loss(p: teacher_lib.Plan):
    """(model, teacher, batch, rngs) -> (L_total, terms): the trainer's loss."""

    def loss_fn(model, teacher, batch, rngs):
        return student_loss(model, teacher, batch, p, deterministic=False, rngs=rngs)

    return loss_fn


def with_weights(p: teacher_lib.Plan, alpha: float, beta: float) -> teacher_lib.Plan:
    return dataclasses.replace(p, alpha=float(alpha), beta=float(beta))
