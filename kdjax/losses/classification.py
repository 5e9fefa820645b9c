"""Classification losses."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits: jax.Array, labels: jax.Array, weights: jax.Array | None = None,
                  label_smoothing: float = 0.0) -> jax.Array:
    """L_pred = CE(S(x^S), Y) (DSG-KD thesis eq. 2.9): mean softmax cross-entropy over examples.

    weights (b,) (e.g. 0 for padding examples) give a weighted mean. Equals
    torch.nn.CrossEntropyLoss(label_smoothing=...) for unit weights.
    """
    n = logits.shape[-1]
    onehot = jax.nn.one_hot(labels, n)
    if label_smoothing:
        onehot = optax.smooth_labels(onehot, label_smoothing)
    per = optax.softmax_cross_entropy(logits.astype(jnp.float32), onehot)
    if weights is None:
        return per.mean()
    w = weights.astype(jnp.float32)
    return jnp.sum(per * w) / jnp.maximum(jnp.sum(w), 1.0)
