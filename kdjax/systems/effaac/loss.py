"""EffAAC's step loss: the student's forward on labelled (and audio-only) clips, then the total of seed 002
eq. 5 (kdjax.losses.effaac.total_loss) with the encoder-KD term of eq. 6 or 7."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from kdjax.losses import feature as feature_losses
from kdjax.losses.effaac import total_loss
from kdjax.losses.token_kd import sparse_token_kd
from kdjax.models.layers import masked_mean
from kdjax.systems.effaac import word_kd


def _shift_right(ids: jax.Array, bos: int) -> jax.Array:
    return jnp.concatenate([jnp.full((ids.shape[0], 1), bos, ids.dtype), ids[:, :-1]], axis=1)


def make_loss_fn(cfg: ml_collections.ConfigDict, bos: int):
    """L = L_sup + w_seq L_seq + w_enc L_enc (seed 002 eq. 5), + w_word L_word (word-level KD, issue 26); audio-only
    rows (`ao_*`) add their L_seq, L_word and L_enc."""
    kd = cfg.kd
    ls, w_seq, w_enc, kind = float(kd.label_smoothing), float(kd.seq_weight), float(kd.enc_weight), kd.enc
    w_word = word_kd.weight(cfg)
    contra_form = str(kd.get("contra_form", "code"))
    freeze_enc = "encoder" in set(cfg.train.get("freeze", ()))
    if kind not in ("contra", "mse", "none"):
        raise ValueError(f"kd.enc must be contra, mse or none, got {kind!r}")

    def loss_fn(model, teacher, batch, rngs):
        n_lab = batch["wave"].shape[0]
        cat = lambda k: (jnp.concatenate([batch[k], batch["ao_" + k]]) if "ao_" + k in batch else batch[k])
        wave, mask = cat("wave"), cat("mask")
        enc = model.encode(wave, mask, deterministic=freeze_enc, rngs=rngs)
        memory = (enc["last_hidden_state"], enc["mask"])
        kw = dict(deterministic=False, rngs=rngs)
        ids = batch["caption_ids"]
        lab_memory = jax.tree.map(lambda x: x[:n_lab], memory)
        logits = model.decoder(*lab_memory, _shift_right(ids, bos), **kw)["logits"]
        seq, seq_logits = {}, None
        if w_seq > 0 or w_word > 0:
            t_ids = cat("teacher_ids")
            seq_logits = model.decoder(*memory, _shift_right(t_ids, bos), **kw)["logits"]
        if w_seq > 0:
            seq = dict(seq_logits=seq_logits, seq_ids=t_ids, seq_mask=cat("teacher_mask"), seq_weight=w_seq)
        l_enc, extra = None, {}
        if kind != "none":
            if teacher is not None:
                tw, tm = (cat("teacher_wave"), cat("teacher_wave_mask")) if "teacher_wave" in batch else (wave, mask)
                t_emb = jax.lax.stop_gradient(teacher.embed(tw, tm)["pooler_output"])
            else:
                t_emb = cat("teacher_emb")
            if kind == "contra":
                ps, pt = model.contrastive_embeddings(enc["pooler_output"], t_emb.astype(jnp.float32))
                l_enc = feature_losses.effaac_contrastive(pt, ps, model.logit_scale[...], form=contra_form)
                extra["logit_scale"] = feature_losses.contrastive_scale(model.logit_scale[...], contra_form)
            else:
                l_enc = feature_losses.mse(masked_mean(enc["last_hidden_state"], enc["mask"]), t_emb)
        loss, metrics = total_loss(logits, ids, batch["caption_mask"], label_smoothing=ls, l_enc=l_enc,
                                   enc_weight=w_enc, **seq)
        if w_word > 0:  # word-level KD on the same teacher-caption logits (kdjax.systems.effaac.word_kd)
            extra["l_word"] = sparse_token_kd(
                seq_logits, cat("word_logprobs"), cat("word_ids"), cat("teacher_mask") * cat("word_mask"),
                rest=True, teacher_rest=cat("word_rest"))
            loss = loss + w_word * extra["l_word"]
        return loss, {**metrics, **extra}

    return loss_fn
