"""Feature-distillation losses against PyTorch's own losses (1e-6), and the negative samplers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdjax.losses import feature


def _data(seed=0, b=12, d=24, scale=1.0):
    rng = np.random.RandomState(seed)
    return [rng.normal(0, scale, (b, d)).astype(np.float32) for _ in range(3)]


def _close(ours, ref):
    assert abs(float(ours) - float(ref)) <= 1e-6 * max(1.0, abs(float(ref))), (float(ours), float(ref))


@pytest.mark.parametrize("scale", [0.1, 1.0, 5.0])
def test_triplet_margin_equals_torch(scale):
    a, p, n = _data(scale=scale)
    for swap in (False, True):
        ref = torch.nn.TripletMarginLoss(margin=1.0, p=2, swap=swap)(*map(torch.tensor, (a, p, n)))
        _close(feature.triplet_margin(*map(jnp.asarray, (a, p, n)), swap=swap), ref)
    ref = torch.nn.TripletMarginLoss(margin=0.3, p=1)(*map(torch.tensor, (a, p, n)))
    _close(feature.triplet_margin(*map(jnp.asarray, (a, p, n)), margin=0.3, p=1), ref)


@pytest.mark.parametrize("scale", [0.1, 1.0, 5.0])
def test_smooth_l1_mse_cosine_equal_torch(scale):
    a, b, _ = _data(1, scale=scale)
    ta, tb = torch.tensor(a), torch.tensor(b)
    _close(feature.smooth_l1(jnp.asarray(a), jnp.asarray(b)), torch.nn.SmoothL1Loss()(ta, tb))
    _close(feature.smooth_l1(jnp.asarray(a), jnp.asarray(b), beta=0.5), torch.nn.SmoothL1Loss(beta=0.5)(ta, tb))
    _close(feature.mse(jnp.asarray(a), jnp.asarray(b)), torch.nn.MSELoss()(ta, tb))
    y = np.where(np.arange(len(a)) % 3 == 0, -1, 1)
    _close(feature.cosine(jnp.asarray(a), jnp.asarray(b)),
           torch.nn.CosineEmbeddingLoss()(ta, tb, torch.ones(len(a))))
    _close(feature.cosine(jnp.asarray(a), jnp.asarray(b), jnp.asarray(y), margin=0.1),
           torch.nn.CosineEmbeddingLoss(margin=0.1)(ta, tb, torch.tensor(y)))


def test_info_nce_equals_cross_entropy_over_similarities():
    a, b, _ = _data(2)
    ta, tb = F.normalize(torch.tensor(a), dim=-1), F.normalize(torch.tensor(b), dim=-1)
    logits = ta @ tb.T / 0.07
    labels = torch.arange(len(a))
    _close(feature.info_nce(jnp.asarray(a), jnp.asarray(b)), F.cross_entropy(logits, labels))
    sym = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
    _close(feature.info_nce(jnp.asarray(a), jnp.asarray(b), symmetric=True), sym)
    scale = jnp.exp(jnp.log(1 / 0.07))  # EffAAC's learnable logit scale at its initial value
    _close(feature.info_nce(jnp.asarray(a), jnp.asarray(b), scale=scale, symmetric=True), sym)
    # padded rows (weight 0) are dropped as anchors and as negatives
    w = np.ones(len(a), np.float32)
    w[-3:] = 0
    ref = F.cross_entropy(ta[:-3] @ tb[:-3].T / 0.07, labels[:-3])
    _close(feature.info_nce(jnp.asarray(a), jnp.asarray(b), weights=jnp.asarray(w)), ref)


def test_effaac_contrastive_equals_eq6_in_torch_with_gradients():
    """Seed 002 eq. 6 written out in torch: both directions summed, the learnable scale differentiated."""
    t, s, _ = _data(5)
    tt, ts = torch.tensor(t, requires_grad=True), torch.tensor(s, requires_grad=True)
    log_scale = torch.tensor(float(np.log(1 / 0.07)) - 0.3, requires_grad=True)
    sim = F.normalize(tt, dim=-1) @ F.normalize(ts, dim=-1).T
    logits = log_scale.exp() * sim
    labels = torch.arange(len(t))
    ref = (F.cross_entropy(logits, labels, reduction="sum") + F.cross_entropy(logits.T, labels, reduction="sum")
           ) / len(t)
    ref.backward()
    fn = lambda a, b, c: feature.effaac_contrastive(a, b, c, form="eq6")
    ours, grads = jax.value_and_grad(fn, argnums=(0, 1, 2))(jnp.asarray(t), jnp.asarray(s),
                                                              jnp.asarray(float(log_scale)))
    _close(ours, ref)
    for g, r in zip(grads, (tt.grad, ts.grad, log_scale.grad)):
        np.testing.assert_allclose(np.asarray(g), r.numpy(), atol=2e-6)


def test_effaac_contrastive_default_is_the_authors_arithmetic_line_for_line():
    """The default form against a transcription of wsntxxn/AudioCaption's ContraEncoderKdWrapper.forward: the
    normalised embeddings' similarities times `logit_scale` itself (not exp), loss = (loss1 + loss2) / 2. At the
    initial scale it differs from eq. 6 with CLIP's exponent by about 3x on the same embeddings."""
    t, s, _ = _data(6)
    tt, ts = torch.tensor(t, requires_grad=True), torch.tensor(s, requires_grad=True)
    logit_scale = torch.tensor(float(np.log(1 / 0.07)), requires_grad=True)  # nn.Parameter(log(1 / 0.07))
    # --- the authors' arithmetic
    student_embed = F.normalize(ts, dim=-1)
    teacher_embed = F.normalize(tt, dim=-1)
    unscaled_logit = student_embed @ teacher_embed.transpose(0, 1)
    logit = logit_scale * unscaled_logit
    label = torch.arange(logit.size(0))
    loss1 = F.cross_entropy(logit, label)
    loss2 = F.cross_entropy(logit.transpose(0, 1), label)
    loss = (loss1 + loss2) / 2
    # ---
    loss.backward()
    fn = lambda a, b, c: feature.effaac_contrastive(a, b, c)
    ours, grads = jax.value_and_grad(fn, argnums=(0, 1, 2))(jnp.asarray(t), jnp.asarray(s),
                                                              jnp.asarray(float(logit_scale)))
    _close(ours, loss)
    for g, r in zip(grads, (tt.grad, ts.grad, logit_scale.grad)):
        np.testing.assert_allclose(np.asarray(g), r.numpy(), atol=2e-6)
    eq6 = float(feature.effaac_contrastive(jnp.asarray(t), jnp.asarray(s), jnp.asarray(float(logit_scale)),
                                           form="eq6"))
    assert eq6 / float(ours) > 1.5  # not the same loss: the form matters, and the config states it
    from configs import effaac as effaac_config

    assert effaac_config.get_config("contra").kd.contra_form == "code"


def test_losses_have_gradients_like_torch():
    a, p, n = _data(3)
    ta = torch.tensor(a, requires_grad=True)
    torch.nn.TripletMarginLoss()(ta, torch.tensor(p), torch.tensor(n)).backward()
    g = jax.grad(lambda x: feature.triplet_margin(x, jnp.asarray(p), jnp.asarray(n)))(jnp.asarray(a))
    np.testing.assert_allclose(np.asarray(g), ta.grad.numpy(), atol=1e-6)


def test_negative_samplers_never_pick_the_positive():
    a, c, _ = _data(4, b=9)
    aj, cj = jnp.asarray(a), jnp.asarray(c)
    roll = np.asarray(feature.pick_negatives(aj, cj, "roll"))
    np.testing.assert_array_equal(roll, (np.arange(9) + 1) % 9)
    picks = np.stack([np.asarray(feature.pick_negatives(aj, cj, "random", jax.random.key(s))) for s in range(200)])
    assert (picks != np.arange(9)).all()
    assert all(len(np.unique(picks[:, i])) == 8 for i in range(9))  # every other clip gets drawn
    hard = np.asarray(feature.pick_negatives(aj, cj, "hardest"))
    d = ((a[:, None] - c[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    np.testing.assert_array_equal(hard, d.argmin(1))
    with pytest.raises(ValueError, match="unknown negative sampler"):
        feature.pick_negatives(aj, cj, "semi-hard")
