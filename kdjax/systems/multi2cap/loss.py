"""Multi2Cap's loss: L_total = L_cap + lambda * L_cfd (thesis eq. 3.1-3.3), with the CFD losses of Table 3.5."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from kdjax.losses import feature as feature_losses
from kdjax.losses.classification import cross_entropy



def cfd_loss(kind: str, audio: jax.Array, image: jax.Array, cfg: ml_collections.ConfigDict,
             key: jax.Array) -> jax.Array:
    """Thesis eq. 3.2 (triplet: anchor image, positive the clip's audio, negative another clip's audio) and the
    Table 3.5 alternatives."""
    if kind == "triplet":
        neg = feature_losses.pick_negatives(image, audio, cfg.negatives, key)
        return feature_losses.triplet_margin(image, audio, audio[neg], margin=float(cfg.margin))
    if kind == "smooth_l1":
        return feature_losses.smooth_l1(audio, image)
    if kind == "mse":
        return feature_losses.mse(audio, image)
    if kind == "info_nce":
        return feature_losses.info_nce(image, audio, temperature=float(cfg.temperature))
    if kind == "cosine":
        return feature_losses.cosine(audio, image)
    raise ValueError(f"unknown cfd.loss {kind!r} (triplet, smooth_l1, mse, info_nce, cosine)")


def make_loss_fn(cfg: ml_collections.ConfigDict):
    """L_total = L_cap + lambda * L_cfd (thesis eq. 3.3); L_cap is the token cross-entropy on caption tokens."""
    lam, kind = float(cfg.cfd.weight), cfg.cfd.loss

    def loss_fn(model, teacher, batch, rngs):
        out = model(batch["wave"], batch["mask"], batch["caption_ids"], batch["caption_mask"], deterministic=False,
                    rngs=rngs)
        l_cap = cross_entropy(out["logits"], batch["caption_ids"], batch["caption_mask"])
        m = batch["caption_mask"].astype(jnp.float32)
        acc = jnp.sum((out["logits"].argmax(-1) == batch["caption_ids"]) * m) / jnp.maximum(m.sum(), 1.0)
        metrics = {"l_cap": l_cap, "token_acc": acc}
        loss = l_cap
        if lam > 0:
            img = teacher(batch["image"])["features"] if teacher is not None else batch["image_features"]
            a, i = model.cfd_embeddings(out["audio_feature"], jax.lax.stop_gradient(img))
            l_cfd = cfd_loss(kind, a, i, cfg.cfd, rngs.dropout())
            metrics["l_cfd"] = l_cfd
            loss = loss + lam * l_cfd
        return loss, metrics

    return loss_fn
