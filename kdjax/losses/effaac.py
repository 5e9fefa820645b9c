"""EffAAC's total loss (seed 002 eq. 5): L = L_sup + w_seq * L_seq + w_enc * L_enc.

A pure function of arrays: the caption logits on the reference captions (L_sup) and on the teacher's captions
(L_seq), each label-smoothed token cross-entropy over its mask, plus an encoder-KD term already computed
(`kdjax.losses.feature.effaac_contrastive`, eq. 6, or `mse`, eq. 7).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from kdjax.losses.classification import cross_entropy


def total_loss(logits: jax.Array, ids: jax.Array, mask: jax.Array, *, label_smoothing: float,
               seq_logits: jax.Array | None = None, seq_ids: jax.Array | None = None,
               seq_mask: jax.Array | None = None, seq_weight: float = 0.0, l_enc: jax.Array | None = None,
               enc_weight: float = 0.0) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(L, its terms and the token accuracy on the references). L_seq enters when `seq_logits` is given,
    L_enc when `l_enc` is."""
    l_sup = cross_entropy(logits, ids, mask, label_smoothing=label_smoothing)
    m = mask.astype(jnp.float32)
    acc = jnp.sum((logits.argmax(-1) == ids) * m) / jnp.maximum(m.sum(), 1.0)
    loss, metrics = l_sup, {"l_sup": l_sup, "token_acc": acc}
    if seq_logits is not None:
        metrics["l_seq"] = cross_entropy(seq_logits, seq_ids, seq_mask, label_smoothing=label_smoothing)
        loss = loss + seq_weight * metrics["l_seq"]
    if l_enc is not None:
        metrics["l_enc"] = l_enc
        loss = loss + enc_weight * l_enc
    return loss, metrics
