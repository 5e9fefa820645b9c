"""Classification losses."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits: jax.Array, labels: jax.Array, weights: jax.Array | None = None,
                  label_smoothing: float = 0.0) -> jax.Array:
    """L_pred = CE(S(x^S), Y) (DSG-KD thesis eq. 2.9): mean softmax cross-entropy over examples.

    Any leading shape: (b, l, vocab) logits with (b, l) token weights is the token-level cross-entropy
    of a captioner (HF's ignore_index = weight 0). Weights (e.g. 0 for padding) give a weighted mean. Equals
    torch.nn.CrossEntropyLoss(label_smoothing=...) for unit weights.
    """
    logits = logits.astype(jnp.float32)
    if label_smoothing:
        onehot = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
        per = optax.softmax_cross_entropy(logits, onehot)
    else:  # no (b, l, vocab) one-hot: language-model vocabularies are large
        per = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    if weights is None:
        return per.mean()
    w = weights.astype(jnp.float32)
    return jnp.sum(per * w) / jnp.maximum(jnp.sum(w), 1.0)


def sigmoid_cross_entropy(logits: jax.Array, targets: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Multi-label tagging loss (CED's AudioSet objective): binary cross-entropy of each class's logit against its
    0/1 target, averaged over classes and examples; equals torch.nn.BCEWithLogitsLoss(). Label smoothing moves each
    target towards 1/2 by `label_smoothing` (t (1 - s) + s / 2)."""
    t = targets.astype(jnp.float32)
    if label_smoothing:
        t = t * (1.0 - label_smoothing) + 0.5 * label_smoothing
    return optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), t).mean()
