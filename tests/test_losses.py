"""DSG-KD losses against an independent PyTorch computation written word by word with loops, and
CE against torch.nn.CrossEntropyLoss."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdjax.losses.classification import cross_entropy, sigmoid_cross_entropy
from kdjax.losses.dsg_kd import attention_loss, hidden_loss
from kdjax.losses.layers import uniform_layer_map


def _word_ids(rng, b, l, k, empty_rows=()):
    ids = np.zeros((b, l), np.int32)
    for i in range(b):
        if i in empty_rows:
            continue
        pos = 1
        for w in range(1, k + 1):
            if rng.random() < 0.3 or pos >= l - 3:
                continue  # this word is absent (e.g. truncated) in this tokenization
            n = int(rng.integers(1, 4))
            pos += int(rng.integers(0, 3))
            ids[i, pos:pos + n] = w
            pos += n
    return ids


def _probs(rng, n, b, h, l):
    x = rng.normal(size=(n, b, h, l, l))
    return np.exp(x) / np.exp(x).sum(-1, keepdims=True)


def _torch_hidden(hs, ht, ws, wt, pairs, proj=None):
    """Per note, per word: mean over its subword rows; MSE over all layers' valid words stacked."""
    a, b = [], []
    for s, t in pairs:
        for i in range(ws.shape[0]):
            for w in range(1, ws.max(initial=0) + 1):
                ms, mt = ws[i] == w, wt[i] == w
                if ms.any() and mt.any():
                    vs = torch.tensor(hs[s][i][ms]).mean(0)
                    a.append(proj(vs) if proj is not None else vs)
                    b.append(torch.tensor(ht[t][i][mt]).mean(0))
    if not a:
        return 0.0
    return float(F.mse_loss(torch.stack(a), torch.stack(b)))


def _torch_attn(as_, at, ws, wt, pairs, keys, mean_heads):
    a, b = [], []
    for s, t in pairs:
        if s == 0:
            continue
        for i in range(ws.shape[0]):
            for w in range(1, max(ws.max(initial=0), wt.max(initial=0)) + 1):
                ms, mt = ws[i] == w, wt[i] == w
                if not (ms.any() and mt.any()):
                    continue
                rs = torch.tensor(as_[s - 1][i][:, ms]).mean(1)  # (h, keys)
                rt = torch.tensor(at[t - 1][i][:, mt]).mean(1)
                if keys == "word":
                    k = max(ws.max(), wt.max())
                    rs = torch.stack([rs[:, ws[i] == v].sum(-1) for v in range(1, k + 1)]
                                     + [rs[:, ws[i] == 0].sum(-1)], -1)
                    rt = torch.stack([rt[:, wt[i] == v].sum(-1) for v in range(1, k + 1)]
                                     + [rt[:, wt[i] == 0].sum(-1)], -1)
                else:
                    n = max(rs.shape[-1], rt.shape[-1])
                    rs = F.pad(rs, (0, n - rs.shape[-1]))
                    rt = F.pad(rt, (0, n - rt.shape[-1]))
                if mean_heads:
                    rs, rt = rs.mean(0, keepdim=True), rt.mean(0, keepdim=True)
                a.append(rs)
                b.append(rt)
    return float(F.mse_loss(torch.stack(a), torch.stack(b)))


@pytest.mark.parametrize("widths", [(8, 8), (6, 10)])
def test_hidden_loss_matches_torch_reference(widths):
    rng = np.random.default_rng(0)
    b, k = 3, 5
    ls, lt, ds, dt = 12, 15, *widths
    n_s, n_t = 2, 4
    ws, wt = _word_ids(rng, b, ls, k, empty_rows=(2,)), _word_ids(rng, b, lt, k)
    hs = [rng.normal(size=(b, ls, ds)).astype(np.float32) for _ in range(n_s + 1)]
    ht = [rng.normal(size=(b, lt, dt)).astype(np.float32) for _ in range(n_t + 1)]
    pairs = uniform_layer_map(n_s, n_t)
    assert pairs == [(0, 0), (1, 2), (2, 4)]
    proj_w = rng.normal(size=(ds, dt)).astype(np.float32)
    proj = None if ds == dt else (lambda x: x @ proj_w)
    tproj = None if ds == dt else (lambda x: x @ torch.tensor(proj_w))
    ours = hidden_loss([jnp.asarray(x) for x in hs], [jnp.asarray(x) for x in ht], jnp.asarray(ws),
                       jnp.asarray(wt), k, pairs, project=proj)
    ref = _torch_hidden(hs, ht, ws, wt, pairs, tproj)
    assert ref > 0
    np.testing.assert_allclose(float(ours), ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("keys,heads", [("word", (4, 4)), ("index", (4, 4)), ("word", (2, 4)),
                                        ("index", (3, 2))])
def test_attention_loss_matches_torch_reference(keys, heads):
    rng = np.random.default_rng(1)
    b, k, ls, lt = 3, 4, 10, 13
    ws, wt = _word_ids(rng, b, ls, k), _word_ids(rng, b, lt, k)
    as_ = list(_probs(rng, 2, b, heads[0], ls).astype(np.float32))
    at = list(_probs(rng, 3, b, heads[1], lt).astype(np.float32))
    pairs = [(0, 0), (1, 2), (2, 3)]
    ours = attention_loss([jnp.asarray(x) for x in as_], [jnp.asarray(x) for x in at], jnp.asarray(ws),
                          jnp.asarray(wt), k, pairs, keys=keys)
    ref = _torch_attn(as_, at, ws, wt, pairs, keys, mean_heads=heads[0] != heads[1])
    np.testing.assert_allclose(float(ours), ref, rtol=1e-5, atol=1e-8)


def test_notes_without_domain_words_contribute_nothing():
    rng = np.random.default_rng(2)
    b, l, d = 2, 8, 4
    hs = [jnp.asarray(rng.normal(size=(b, l, d)), jnp.float32) for _ in range(2)]
    ht = [jnp.asarray(rng.normal(size=(b, l, d)), jnp.float32) for _ in range(2)]
    none = jnp.zeros((b, l), jnp.int32)
    assert float(hidden_loss(hs, ht, none, none, 4, [(0, 0), (1, 1)])) == 0.0
    # A note whose words exist only in the student's tokenization is not compared either.
    ws = np.zeros((b, l), np.int32)
    ws[0, 2:4] = 1
    assert float(hidden_loss(hs, ht, jnp.asarray(ws), none, 4, [(0, 0)])) == 0.0
    # Adding a domain-word-free note to a batch leaves the loss unchanged.
    wt = ws.copy()
    l1 = hidden_loss([h[:1] for h in hs], [h[:1] for h in ht], jnp.asarray(ws[:1]), jnp.asarray(wt[:1]), 4,
                     [(0, 0), (1, 1)])
    l2 = hidden_loss(hs, ht, jnp.asarray(ws), jnp.asarray(wt), 4, [(0, 0), (1, 1)])
    np.testing.assert_allclose(float(l1), float(l2), rtol=1e-6)


def test_attention_loss_skips_embedding_layer():
    rng = np.random.default_rng(3)
    a = [jnp.asarray(_probs(rng, 1, 1, 2, 6)[0], jnp.float32)]
    w = jnp.asarray(np.array([[0, 1, 1, 0, 2, 0]], np.int32))
    assert float(attention_loss(a, a, w, w, 2, [(0, 0)])) == 0.0
    b = [jnp.asarray(_probs(rng, 1, 1, 2, 6)[0], jnp.float32)]
    assert float(attention_loss(a, b, w, w, 2, [(0, 0), (1, 1)])) > 0.0


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_matches_torch(smoothing):
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(7, 5)).astype(np.float32)
    labels = rng.integers(0, 5, 7)
    ref = F.cross_entropy(torch.tensor(logits), torch.tensor(labels), label_smoothing=smoothing)
    ours = cross_entropy(jnp.asarray(logits), jnp.asarray(labels), label_smoothing=smoothing)
    np.testing.assert_allclose(float(ours), float(ref), rtol=1e-6, atol=1e-6)
    w = np.array([1, 1, 0, 1, 0, 1, 1], np.float32)
    ref_w = F.cross_entropy(torch.tensor(logits[w > 0]), torch.tensor(labels[w > 0]), label_smoothing=smoothing)
    ours_w = cross_entropy(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(w), label_smoothing=smoothing)
    np.testing.assert_allclose(float(ours_w), float(ref_w), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_sigmoid_cross_entropy_matches_torch_bce(smoothing):
    """Multi-label tagging loss and its gradient against torch's BCEWithLogitsLoss on smoothed 0/1 targets."""
    import jax

    rng = np.random.default_rng(5)
    logits = rng.normal(size=(6, 10)).astype(np.float32) * 3
    targets = (rng.random((6, 10)) < 0.3).astype(np.float32)
    t = torch.tensor(logits, requires_grad=True)
    ref = torch.nn.BCEWithLogitsLoss()(t, torch.tensor(targets * (1 - smoothing) + smoothing / 2))
    ref.backward()
    ours, grad = jax.value_and_grad(lambda x: sigmoid_cross_entropy(x, jnp.asarray(targets), smoothing))(
        jnp.asarray(logits))
    np.testing.assert_allclose(float(ours), float(ref), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(grad), t.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_dsg_kd_total_is_ce_plus_weighted_span_losses():
    """total_loss (eq. 2.3-2.9) on precomputed teacher targets: torch's CE plus alpha * L_hidn + beta * L_attn, each
    as the teacher-in-the-loop losses compute it."""
    import jax

    from kdjax.losses.dsg_kd import mean_heads, teacher_attention_targets, teacher_hidden_targets, total_loss

    rng = np.random.default_rng(3)
    b, l, k, d, h = 3, 12, 4, 8, 2
    lmap = [(0, 0), (1, 2), (2, 4)]
    sw, tw = _word_ids(rng, b, l, k), _word_ids(rng, b, l + 2, k)
    sh = [jnp.asarray(rng.standard_normal((b, l, d)), jnp.float32) for _ in range(3)]
    th = [jnp.asarray(rng.standard_normal((b, l + 2, d)), jnp.float32) for _ in range(5)]
    sa = [jnp.asarray(jax.nn.softmax(rng.standard_normal((b, h, l, l)), -1)) for _ in range(2)]
    ta = [jnp.asarray(jax.nn.softmax(rng.standard_normal((b, h, l + 2, l + 2)), -1)) for _ in range(4)]
    logits, labels = rng.standard_normal((b, 2)).astype(np.float32), np.array([0, 1, 1])
    avg = mean_heads(h, h, "auto")
    hidden, counts = teacher_hidden_targets(th, jnp.asarray(tw), k, [t for _, t in lmap])
    attn = teacher_attention_targets(ta, jnp.asarray(tw), k, [2, 4], "word", avg)
    loss, terms = total_loss(jnp.asarray(logits), jnp.asarray(labels), sh, sa, jnp.asarray(sw),
                             {"hidden": hidden, "attn": attn, "counts": counts}, alpha=0.6, beta=0.2, num_words=k,
                             layer_map=lmap, keys="word", average_heads=avg)
    ce = F.cross_entropy(torch.tensor(logits), torch.tensor(labels)).item()
    hid = float(hidden_loss(sh, th, jnp.asarray(sw), jnp.asarray(tw), k, lmap))
    att = float(attention_loss(sa, ta, jnp.asarray(sw), jnp.asarray(tw), k, lmap, keys="word", heads="auto"))
    np.testing.assert_allclose([float(terms["ce"]), float(terms["hidn"]), float(terms["attn"])], [ce, hid, att],
                               rtol=1e-5)
    np.testing.assert_allclose(float(loss), ce + 0.6 * hid + 0.2 * att, rtol=1e-5)

    # the equations' form (eq. 2.3-2.8 as written): per-layer losses summed over the layers, alpha and beta twice
    # (eq. 2.4/2.6 and eq. 2.8); the per-layer terms from the word-by-word torch reference, one layer at a time
    loss_eq, terms_eq = total_loss(jnp.asarray(logits), jnp.asarray(labels), sh, sa, jnp.asarray(sw),
                                   {"hidden": hidden, "attn": attn, "counts": counts}, alpha=0.6, beta=0.2,
                                   num_words=k, layer_map=lmap, keys="word", average_heads=avg, form="equations")
    np_sh, np_th = [np.asarray(x) for x in sh], [np.asarray(x) for x in th]
    np_sa, np_ta = [np.asarray(x) for x in sa], [np.asarray(x) for x in ta]
    per_hid = [_torch_hidden(np_sh, np_th, sw, tw, [pair]) for pair in lmap]
    per_att = [_torch_attn(np_sa, np_ta, sw, tw, [pair], "word", False) for pair in lmap if pair[0] > 0]
    assert len(per_hid) == 3 and len(per_att) == 2
    np.testing.assert_allclose(float(loss_eq), ce + 0.6 * 0.6 * sum(per_hid) + 0.2 * 0.2 * sum(per_att), rtol=1e-5)
    assert float(terms_eq["hidn"]) == float(terms["hidn"])  # the logged terms are the same MSEs either way
    with pytest.raises(ValueError, match="unknown DSG-KD loss form"):
        total_loss(jnp.asarray(logits), jnp.asarray(labels), sh, sa, jnp.asarray(sw),
                   {"hidden": hidden, "attn": attn, "counts": counts}, alpha=0.6, beta=0.2, num_words=k,
                   layer_map=lmap, keys="word", average_heads=avg, form="sum")


def test_effaac_total_is_smoothed_ce_terms_plus_encoder_kd():
    """total_loss (seed 002 eq. 5) against torch's label-smoothed CrossEntropyLoss over the unmasked tokens."""
    from kdjax.losses.effaac import total_loss

    rng = np.random.default_rng(0)
    b, t, v = 3, 5, 7
    logits, seq_logits = rng.standard_normal((2, b, t, v)).astype(np.float32)
    ids, seq_ids = rng.integers(0, v, (2, b, t))
    mask = (np.arange(t)[None] < np.array([5, 3, 1])[:, None]).astype(np.int32)
    seq_mask = (np.arange(t)[None] < np.array([2, 5, 4])[:, None]).astype(np.int32)

    def ce(lg, y, m):
        keep = torch.tensor(m.reshape(-1) > 0)
        return F.cross_entropy(torch.tensor(lg).reshape(-1, v)[keep], torch.tensor(y).reshape(-1)[keep],
                               label_smoothing=0.1).item()

    loss, terms = total_loss(jnp.asarray(logits), jnp.asarray(ids), jnp.asarray(mask), label_smoothing=0.1,
                             seq_logits=jnp.asarray(seq_logits), seq_ids=jnp.asarray(seq_ids),
                             seq_mask=jnp.asarray(seq_mask), seq_weight=0.5, l_enc=jnp.float32(2.0), enc_weight=0.25)
    want = ce(logits, ids, mask) + 0.5 * ce(seq_logits, seq_ids, seq_mask) + 0.25 * 2.0
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    np.testing.assert_allclose(float(terms["l_sup"]), ce(logits, ids, mask), rtol=1e-5)
    alone, t2 = total_loss(jnp.asarray(logits), jnp.asarray(ids), jnp.asarray(mask), label_smoothing=0.1)
    assert set(t2) == {"l_sup", "token_acc"} and float(alone) == pytest.approx(ce(logits, ids, mask), rel=1e-5)
