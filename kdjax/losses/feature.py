"""Feature-distillation losses between two embeddings of the same clip (Multi2Cap's cross-modal feature
distillation, thesis eq. 3.1-3.3 and the ablation of Table 3.5; EffAAC's L_enc, seed 002 eq. 5-6).

Each is a pure function of (batch, dim) arrays with the same reduction and constants as its PyTorch
counterpart, so that numbers (and margins) carry over from the papers' code:
  triplet_margin  torch.nn.TripletMarginLoss(margin=1.0, p=2, eps=1e-6)
  smooth_l1       torch.nn.SmoothL1Loss(beta=1.0)
  mse             torch.nn.MSELoss()
  cosine          torch.nn.CosineEmbeddingLoss(margin=0.0)
  info_nce        torch.nn.functional.cross_entropy over a scaled similarity matrix (CLIP-style)

Called inside the jitted step on global arrays, the batch axis is the whole data-parallel batch: the
similarity matrix of `info_nce` and the negatives of `pick_negatives` span every device's examples.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _mean(x: jax.Array, weights: jax.Array | None) -> jax.Array:
    if weights is None:
        return jnp.mean(x)
    w = weights.astype(x.dtype)
    return jnp.sum(x * w) / jnp.maximum(jnp.sum(w), 1.0)


def triplet_margin(anchor: jax.Array, positive: jax.Array, negative: jax.Array, *, margin: float = 1.0,
                   p: float = 2.0, eps: float = 1e-6, swap: bool = False,
                   weights: jax.Array | None = None) -> jax.Array:
    """Thesis eq. 3.2: mean over the batch of max(d(a, p) - d(a, n) + margin, 0), d(x, y) = ||x - y + eps||_p
    (PyTorch adds eps to the difference). `swap` uses min(d(a, n), d(p, n)) as the negative distance."""
    dist = lambda x, y: jnp.sum(jnp.abs(x - y + eps) ** p, axis=-1) ** (1.0 / p)
    d_neg = dist(anchor, negative)
    if swap:
        d_neg = jnp.minimum(d_neg, dist(positive, negative))
    return _mean(jnp.maximum(dist(anchor, positive) - d_neg + margin, 0.0), weights)


def smooth_l1(pred: jax.Array, target: jax.Array, *, beta: float = 1.0, weights: jax.Array | None = None
              ) -> jax.Array:
    """Huber-style loss, mean over all elements: 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta."""
    d = jnp.abs(pred - target)
    per = jnp.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta) if beta > 0 else d
    return _mean(per.mean(axis=-1), weights)


def mse(pred: jax.Array, target: jax.Array, *, weights: jax.Array | None = None) -> jax.Array:
    """Mean squared error over all elements (EffAAC eq. 6 with a projection to the teacher's width)."""
    return _mean(jnp.mean((pred - target) ** 2, axis=-1), weights)


def cosine(x1: jax.Array, x2: jax.Array, target: jax.Array | None = None, *, margin: float = 0.0,
           weights: jax.Array | None = None) -> jax.Array:
    """CosineEmbeddingLoss: 1 - cos(x1, x2) for target +1 (default: all pairs are positives), and
    max(0, cos - margin) for target -1. cos uses PyTorch's 1e-12 on each squared norm."""
    dot = jnp.sum(x1 * x2, axis=-1)
    cos = dot / jnp.sqrt((jnp.sum(x1 * x1, axis=-1) + 1e-12) * (jnp.sum(x2 * x2, axis=-1) + 1e-12))
    if target is None:
        per = 1.0 - cos
    else:
        per = jnp.where(target > 0, 1.0 - cos, jnp.maximum(cos - margin, 0.0))
    return _mean(per, weights)


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """x / max(||x||, eps), as torch.nn.functional.normalize."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def info_nce(a: jax.Array, b: jax.Array, *, temperature: float = 0.07, scale: jax.Array | None = None,
             normalize: bool = True, symmetric: bool = False, weights: jax.Array | None = None) -> jax.Array:
    """InfoNCE (van den Oord et al. 2018; CLIP): logits_ij = s * <a_i, b_j> (unit vectors when
    `normalize`), s = `scale` if given (EffAAC's learnable exp(logit_scale)) else 1 / temperature; the
    positive of row i is column i. Cross-entropy over rows (a -> b), averaged with columns (b -> a) when
    `symmetric`. Rows with weight 0 are neither anchors nor candidates."""
    if normalize:
        a, b = l2_normalize(a.astype(jnp.float32)), l2_normalize(b.astype(jnp.float32))
    s = (1.0 / temperature) if scale is None else scale
    logits = s * (a @ b.T)
    if weights is not None:  # padded rows cannot be chosen as negatives
        logits = jnp.where(weights[None, :] > 0, logits, -jnp.inf)
    idx = jnp.arange(a.shape[0])
    keep = (lambda x: x) if weights is None else (lambda x: jnp.where(weights > 0, x, 0.0))  # no inf * 0
    row = keep(-jax.nn.log_softmax(logits, axis=1)[idx, idx])
    loss = _mean(row, weights)
    if symmetric:
        logits_t = logits.T if weights is None else jnp.where(weights[None, :] > 0, s * (b @ a.T), -jnp.inf)
        col = keep(-jax.nn.log_softmax(logits_t, axis=1)[idx, idx])
        loss = 0.5 * (loss + _mean(col, weights))
    return loss


CONTRA_FORMS = ("code", "eq6")


def contrastive_scale(logit_scale: jax.Array, form: str = "code") -> jax.Array:
    """The factor on the cosines: the parameter itself in the authors' code, exp of it (CLIP's 1/tau) in eq. 6."""
    if form == "code":
        return logit_scale
    if form == "eq6":
        return jnp.exp(logit_scale)
    raise ValueError(f"unknown EffAAC contrastive form {form!r}; use one of {', '.join(CONTRA_FORMS)}")


def effaac_contrastive(teacher: jax.Array, student: jax.Array, logit_scale: jax.Array,
                       weights: jax.Array | None = None, form: str = "code") -> jax.Array:
    """EffAAC's encoder-level contrastive KD (seed 002 eq. 6): s(i, j) the cosine of teacher clip i and
    student clip j; cross-entropy teacher->student and student->teacher with clip i's pair as the positive and
    every other clip of the (global) batch as a negative. Inputs are the projected pooled embeddings (b, d).

    form "code" (the default): as the authors' code computes it (wsntxxn/AudioCaption, captioning/models/
    kd_wrapper.py, ContraEncoderKdWrapper.forward): the cosines times the learnable `logit_scale` itself (never
    exponentiated: initialised to log(1/0.07) = 2.66, so tau starts near 0.38) and the mean of the two directions.
    form "eq6": the equation as written with CLIP's exponent: scale exp(logit_scale) (tau 0.07 at the start) and
    L = (1/B) sum_i (L_i1 + L_i2), the sum of the two directions. Both leave the scale unclamped, as the code."""
    scale = contrastive_scale(logit_scale, form)
    both = info_nce(teacher, student, scale=scale, symmetric=True, weights=weights)  # (L1 + L2) / 2
    return both if form == "code" else 2.0 * both


NEGATIVE_SAMPLERS = ("roll", "random", "hardest")


def pick_negatives(anchor: jax.Array, candidates: jax.Array, kind: str = "roll", key: jax.Array | None = None
                   ) -> jax.Array:
    """For each anchor i, the index of a negative among the candidates j != i (batch rows; the positive
    of anchor i is candidate i):
      roll     j = i + 1 (mod b): another clip, deterministic
      random   a uniformly random other clip (needs `key`)
      hardest  the other clip whose candidate is closest (L2) to the anchor
    Returns (b,) int32 indices; the choice carries no gradient."""
    b = anchor.shape[0]
    if b < 2:
        raise ValueError("negatives need a batch of at least 2 clips")
    idx = jnp.arange(b)
    if kind == "roll":
        return ((idx + 1) % b).astype(jnp.int32)
    if kind == "random":
        if key is None:
            raise ValueError("the random negative sampler needs a PRNG key")
        return ((idx + jax.random.randint(key, (b,), 1, b)) % b).astype(jnp.int32)
    if kind == "hardest":
        a, c = jax.lax.stop_gradient(anchor), jax.lax.stop_gradient(candidates)
        d = jnp.sum((a[:, None, :] - c[None, :, :]) ** 2, axis=-1)
        return jnp.argmin(jnp.where(jnp.eye(b, dtype=bool), jnp.inf, d), axis=1).astype(jnp.int32)
    raise ValueError(f"unknown negative sampler {kind!r}; known: {NEGATIVE_SAMPLERS}")
