"""`kd.balance`: how L_hidn and L_attn are weighted against CE.

- "none" (the paper's): alpha and beta multiply the losses (eq. 2.8).
- "initial_gradients" (a kdjax variant, not the paper's method: issue 24's fourth design): alpha and beta are read as
  ratios of gradients instead. Once per run, before the first step, on the first training batch (as the trainer
  reads it) and the initial parameters, without dropout, the norms of the gradients of CE, L_hidn and L_attn on the
  student's encoder (the weights all three reach: not the classifier, pooler or hidden projection) are measured,
  and the run trains with alpha' = alpha |g_CE| / |g_hidn| and beta' = beta |g_CE| / |g_attn|, fixed for the run.
  At BERT scale alpha * L_hidn's gradient on the encoder was 11.6x CE's at the first step (issue 24, v2), leaving CE
  a median 0.8% of each Adam step; balanced, it starts at alpha x CE's.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import numpy as np
from flax import nnx

from kdjax.losses.dsg_kd import total_loss
from kdjax.systems.dsg_kd import teacher as teacher_lib

BALANCES = ("none", "initial_gradients")
NOT_ENCODER = ("classifier", "pooler", "hidden_proj")  # parameters CE reaches but the KD terms do not (or v.v.)


def encoder_gradient(model: Any, teacher: Any, batch: Mapping[str, Any], p: teacher_lib.Plan, *, alpha: float,
                     beta: float) -> np.ndarray:
    """The gradient of CE + alpha L_hidn + beta L_attn on the student's encoder (flattened, no dropout), the teacher's
    targets from `teacher` in process or, without one, from the batch (a cached teacher)."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    batch = {k: jax.numpy.asarray(v) for k, v in batch.items()}
    t = teacher_lib.targets(teacher, batch, p) if teacher is not None else teacher_lib.from_batch(batch)

    def loss(params):
        m = nnx.merge(graphdef, params, rest)
        s = m.student(batch["s_input_ids"], batch["s_attention_mask"], batch["s_token_type_ids"],
                      output_hidden_states=alpha > 0, output_attentions=beta > 0, deterministic=True)
        return total_loss(s["logits"], batch["label"], s.get("hidden_states"), s.get("attentions"),
                          batch["s_word_ids"], t, alpha=alpha, beta=beta, num_words=p.num_words,
                          layer_map=p.layer_map, keys=p.keys, average_heads=p.average_heads, project=m.project,
                          form=p.form)[0]

    grads = jax.jit(jax.grad(loss))(params)
    leaves = [np.asarray(v).ravel() for path, v in jax.tree_util.tree_flatten_with_path(grads)[0]
              if not any(n in jax.tree_util.keystr(path) for n in NOT_ENCODER)]
    return np.concatenate(leaves)


def balance(model: Any, teacher: Any, batch: Mapping[str, Any], p: teacher_lib.Plan
            ) -> tuple[teacher_lib.Plan, dict[str, float]]:
    """The plan with alpha and beta rescaled so that each KD term's encoder gradient is alpha (beta) times CE's on
    `batch`, and what was measured. A term switched off (weight 0) stays off."""
    if p.form != "code":
        raise ValueError("kd.balance='initial_gradients' rescales the 'code' loss form's alpha and beta (linear in "
                         f"them); kd.loss_form={p.form!r} applies them squared")
    ce = encoder_gradient(model, teacher, batch, p, alpha=0.0, beta=0.0)
    info = {"balance": "initial_gradients", "alpha_paper": p.alpha, "beta_paper": p.beta,
            "ce_grad_norm": float(np.linalg.norm(ce))}
    alpha, beta = p.alpha, p.beta
    if p.alpha > 0:
        hidn = float(np.linalg.norm(encoder_gradient(model, teacher, batch, p, alpha=1.0, beta=0.0) - ce))
        alpha = p.alpha * info["ce_grad_norm"] / hidn
        info["hidn_grad_norm"] = hidn
    if p.beta > 0:
        attn = float(np.linalg.norm(encoder_gradient(model, teacher, batch, p, alpha=0.0, beta=1.0) - ce))
        beta = p.beta * info["ce_grad_norm"] / attn
        info["attn_grad_norm"] = attn
    return dataclasses.replace(p, alpha=float(alpha), beta=float(beta)), info
