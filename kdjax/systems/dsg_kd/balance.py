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

from typing import Any, Mapping

import jax
import numpy as np
from flax import nnx

from kdjax.systems.dsg_kd import teacher as teacher_lib
from kdjax.systems.dsg_kd.loss import student_loss, with_weights

BALANCES = ("none", "initial_gradients")
NOT_ENCODER = ("classifier", "pooler", "hidden_proj")  # parameters CE reaches but the KD terms do not (or v.v.)


def encoder_gradient(model: Any, teacher: Any, batch: Mapping[str, Any], p: teacher_lib.Plan, *, alpha: float,
                     beta: float) -> np.ndarray:
    """The gradient of CE + alpha L_hidn + beta L_attn on the student's encoder (flattened, no dropout), the teacher's
    targets from `teacher` in process or, without one, from the batch (a cached teacher)."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    batch = {k: jax.numpy.asarray(v) for k, v in batch.items()}
    q = with_weights(p, alpha, beta)
    grads = jax.jit(jax.grad(lambda params: student_loss(nnx.merge(graphdef, params, rest), teacher, batch, q,
                                                         deterministic=True)[0]))(params)
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
    return with_weights(p, alpha, beta), info
