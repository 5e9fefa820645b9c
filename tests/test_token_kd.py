"""Token-level KD losses (kdjax.losses.token_kd) against PyTorch: torch.nn.KLDivLoss for the KLs and an independent
float64 implementation for generalised JSD and the top-k forms, values and gradients to 1e-6, with masks, temperature,
chunking and hidden-state inputs; and the chunked loss's memory, which never holds tokens x vocabulary floats."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdjax.losses.token_kd import (rest_log_prob, segment_mask, sparse_token_kd, token_cross_entropy, token_kd,
                                   top_k_log_probs)
from tests.torch_token_kd import dense_loss, divergence, sparse_loss

B, S, V, D = 3, 7, 53, 16


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    s = rng.normal(0, 2.0, (B, S, V)).astype(np.float32)
    t = rng.normal(0, 2.0, (B, S, V)).astype(np.float32)
    mask = (rng.random((B, S)) > 0.3).astype(np.float32)
    mask[0, :] = 0  # a sequence of padding only
    return s, t, mask


@pytest.mark.parametrize("kind, beta", [("forward_kl", 0.5), ("reverse_kl", 0.5), ("jsd", 0.1), ("jsd", 0.5),
                                        ("jsd", 0.9)])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("chunk", [0, 4])
def test_dense_divergences_match_torch_values_and_gradients(kind, beta, temperature, chunk):
    s, t, mask = _inputs()
    want, want_grad = dense_loss(s, t, mask, kind, beta, temperature)
    fn = lambda x: token_kd(x, jnp.asarray(t), jnp.asarray(mask), kind=kind, beta=beta,  # noqa: E731
                            temperature=temperature, chunk_tokens=chunk)
    got, grad = jax.value_and_grad(fn)(jnp.asarray(s))
    assert float(got) == pytest.approx(want, abs=1e-6, rel=1e-6)
    np.testing.assert_allclose(np.asarray(grad), want_grad, atol=1e-6)
    assert np.abs(want_grad[0]).max() == 0 and np.abs(want_grad).max() > 1e-4  # padding gets no gradient


def test_forward_kl_is_kldivloss_batchmean_over_kept_tokens():
    s, t, mask = _inputs(1)
    keep = mask.reshape(-1) > 0
    ls = F.log_softmax(torch.tensor(s).reshape(-1, V)[keep], -1)
    lt = F.log_softmax(torch.tensor(t).reshape(-1, V)[keep], -1)
    want = float(torch.nn.KLDivLoss(reduction="batchmean", log_target=True)(ls, lt))
    assert float(token_kd(jnp.asarray(s), jnp.asarray(t), jnp.asarray(mask))) == pytest.approx(want, abs=1e-6)


def test_hidden_states_with_heads_and_chunks_equal_the_logits():
    rng = np.random.default_rng(2)
    hs, ht = rng.normal(size=(B, S, D)).astype(np.float32), rng.normal(size=(B, S, D)).astype(np.float32)
    ws, wt = rng.normal(size=(D, V)).astype(np.float32), rng.normal(size=(D, V)).astype(np.float32)
    mask = jnp.asarray((rng.random((B, S)) > 0.2).astype(np.float32))
    whole = lambda h: token_kd(h @ ws, jnp.asarray(ht @ wt), mask, kind="jsd", temperature=1.5)  # noqa: E731
    chunked = lambda h: token_kd(h, jnp.asarray(ht), mask, kind="jsd", temperature=1.5,  # noqa: E731
                                 chunk_tokens=5, student_head=jnp.asarray(ws), teacher_head=jnp.asarray(wt))
    a, ga = jax.value_and_grad(whole)(jnp.asarray(hs))
    b, gb = jax.value_and_grad(chunked)(jnp.asarray(hs))
    assert float(a) == pytest.approx(float(b), abs=1e-6)
    np.testing.assert_allclose(np.asarray(ga), np.asarray(gb), atol=1e-6)


@pytest.mark.parametrize("rest, temperature", [(False, 1.0), (False, 2.0), (True, 1.0)])
@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl", "jsd"])
def test_top_k_forms_match_torch_values_and_gradients(rest, temperature, kind):
    s, t, mask = _inputs(3)
    lp, idx = top_k_log_probs(jnp.asarray(t), 8)
    lp16 = lp.astype(jnp.bfloat16)  # as a cache holds them
    want, want_grad = sparse_loss(s, np.asarray(lp16.astype(jnp.float32)), np.asarray(idx), mask, kind, 0.5,
                                    temperature, rest)
    fn = lambda x: sparse_token_kd(x, lp16, idx, jnp.asarray(mask), kind=kind, temperature=temperature,  # noqa
                                   rest=rest, chunk_tokens=6)
    got, grad = jax.value_and_grad(fn)(jnp.asarray(s))
    assert float(got) == pytest.approx(want, abs=1e-6, rel=1e-6)
    np.testing.assert_allclose(np.asarray(grad), want_grad, atol=1e-6)
    if rest:  # the teacher's rest given (as a cache stores it: summed outside the top-k) instead of 1 - the sum
        t_rest = rest_log_prob(jnp.asarray(t), idx)
        want_rest = np.log(1 - np.exp(np.asarray(lp16.astype(jnp.float32), np.float64)).sum(-1))
        np.testing.assert_allclose(np.asarray(t_rest), want_rest, atol=2e-2)  # lp16: bfloat16's rounding
        np.testing.assert_allclose(np.asarray(t_rest), np.log(1 - np.exp(np.asarray(lp, np.float64)).sum(-1)),
                                   rtol=1e-5)
        given = sparse_token_kd(jnp.asarray(s), lp, idx, jnp.asarray(mask), kind=kind, rest=True,
                                teacher_rest=t_rest, chunk_tokens=6)
        derived = sparse_token_kd(jnp.asarray(s), lp, idx, jnp.asarray(mask), kind=kind, rest=True, chunk_tokens=6)
        assert float(given) == pytest.approx(float(derived), rel=1e-5)


def _draws_setup():
    """Inputs for the draw-cache tests: student logits s, teacher logits t, the mask, the dense forward KL's gradient
    q - p (float64 torch, the mean over kept tokens) and the rest form's gradient from a cache's (values, ids, rest)."""
    s, t, mask = _inputs(5)
    m = jnp.asarray(mask)
    p = torch.softmax(torch.tensor(t, dtype=torch.float64), -1).numpy()
    q = torch.softmax(torch.tensor(s, dtype=torch.float64), -1).numpy()
    want = (q - p) * mask[..., None] / mask.sum()  # d KL(p || q) / d student logits, the mean over kept tokens

    @jax.jit
    def _grad(values, ids, rest):
        return jax.grad(lambda x: sparse_token_kd(x, values.astype(jnp.float16), ids, m, rest=True,
                                                  teacher_rest=rest.astype(jnp.float16)))(jnp.asarray(s))

    return s, t, m, want, lambda *a: np.asarray(_grad(*a))


def test_a_cache_of_draws_gives_the_dense_kl_gradient_in_expectation():
    """kd.source='sampled' (kdjax.teachers.topk.sampled): k draws from each position's teacher distribution, kept as
    the distinct tokens and their frequencies, read by the rest form. Its gradient is q - p_hat per kept token; over
    many sets of draws it averages to the dense forward KL's, q - p (float64 here, independent of kdjax), and the top-8
    of the same teacher does not (it keeps the head and only the tail's total)."""
    from kdjax.teachers import topk

    s, t, m, want, grad = _draws_setup()
    draw = jax.jit(lambda key: topk.sampled(jnp.asarray(t), 16, key))
    sets = 600
    mean = sum(grad(*draw(jax.random.PRNGKey(i))) for i in range(sets)) / sets
    scale = np.abs(want).max()
    assert np.abs(mean - want).max() < 0.06 * scale  # 9600 draws a token: the frequencies' spread is below that
    one = grad(*draw(jax.random.PRNGKey(0)))
    assert np.abs(one - want).max() > 0.2 * scale  # one set of 16 draws is noisy: the average above is the point
    values, ids, _ = (np.asarray(a) for a in draw(jax.random.PRNGKey(0)))
    kept = ids >= 0
    assert np.allclose(np.where(kept, np.exp(values.astype(np.float64)), 0).sum(-1), 1.0, atol=1e-6)
    assert all(len(set(r[k])) == k.sum() for r, k in zip(ids.reshape(-1, 16), kept.reshape(-1, 16)))
    v8, i8, r8 = topk.top_k(jnp.asarray(t), 8)
    top = np.asarray(jax.grad(lambda x: sparse_token_kd(x, v8.astype(jnp.float16), i8, m, rest=True,
                                                        teacher_rest=r8.astype(jnp.float16)))(jnp.asarray(s)))
    assert np.abs(top - want).max() > 0.1 * scale


def test_a_head_kept_exactly_leaves_the_draws_unbiased_and_less_noisy():
    """kd.sampled_head: the teacher's top-4 kept exactly (the top-k's values and ids) and 12 draws from the mass outside
    them: averaged over 600 sets the gradient is still the dense KL's q - p (float64 torch), and one set of them is
    closer to it than one set of 16 plain draws, at the same bytes."""
    from kdjax.teachers import topk

    s, t, m, want, grad = _draws_setup()
    draw = jax.jit(lambda key, head: topk.sampled(jnp.asarray(t), 16, key, head), static_argnums=1)
    sets = 600
    grads = {h: [grad(*draw(jax.random.PRNGKey(i), h)) for i in range(sets)] for h in (0, 4)}
    scale = np.abs(want).max()
    assert np.abs(np.mean(grads[4], 0) - want).max() < 0.06 * scale
    noise = {h: np.mean([np.square(g - want).sum() for g in grads[h]]) for h in (0, 4)}
    assert noise[4] < 0.4 * noise[0], noise  # measured: 0.18 of it
    values, ids, _ = (np.asarray(a) for a in draw(jax.random.PRNGKey(0), 4))
    v4, i4, _ = topk.top_k(jnp.asarray(t), 4)
    np.testing.assert_array_equal(ids[..., :4], np.asarray(i4))
    np.testing.assert_allclose(values[..., :4], np.asarray(v4), atol=1e-6)
    kept = ids >= 0
    assert np.allclose(np.where(kept, np.exp(values.astype(np.float64)), 0).sum(-1), 1.0, atol=1e-5)
    assert all(len(set(r[k])) == k.sum() for r, k in zip(ids.reshape(-1, 16), kept.reshape(-1, 16)))
    with pytest.raises(ValueError, match="head must be in"):
        topk.sampled(jnp.asarray(t), 16, jax.random.PRNGKey(0), 16)


def test_draws_never_hold_draws_times_vocabulary_floats():
    """64 draws at each of 8 x 128 positions over SmolLM2's 49,152 tokens: a few positions x vocabulary arrays of
    temporaries (the cumulative sums), never draws x positions x vocabulary (12.9 GB of float32; Gumbel-max sampling
    allocated 51.5 GB and ran out of memory on a real run)."""
    from kdjax.teachers import topk

    logits = jax.ShapeDtypeStruct((8, 128, 49152), jnp.float32)
    f = jax.jit(lambda x, key: topk.sampled(x, 64, key))
    temp = f.lower(logits, jax.random.PRNGKey(0)).compile().memory_analysis().temp_size_in_bytes
    assert temp < 4 * 8 * 128 * 49152 * 4


def test_top_k_of_the_whole_vocabulary_is_the_dense_loss():
    s, t, mask = _inputs(4)
    lp, idx = top_k_log_probs(jnp.asarray(t), V)
    dense = token_kd(jnp.asarray(s), jnp.asarray(t), jnp.asarray(mask))
    for rest in (False, True):
        sparse = sparse_token_kd(jnp.asarray(s), lp, idx, jnp.asarray(mask), rest=rest)
        assert float(sparse) == pytest.approx(float(dense), abs=1e-5)
    with pytest.raises(ValueError, match="temperature 1"):
        sparse_token_kd(jnp.asarray(s), lp, idx, jnp.asarray(mask), rest=True, temperature=2.0)
    with pytest.raises(ValueError, match="0 < beta < 1"):
        token_kd(jnp.asarray(s), jnp.asarray(t), jnp.asarray(mask), kind="jsd", beta=1.0)


def test_chunked_gradient_never_holds_tokens_times_vocabulary_floats():
    """A 64k vocabulary over 2 x 512 tokens from hidden states: XLA's temporaries for the loss and its gradient hold
    more than one tokens x vocabulary float32 array (256 MiB) unchunked, under half of one in chunks of 128 tokens,
    and shrink with the chunk (measured: 528, 81 and 49 MiB for chunks of all, 128 and 64)."""
    b, s, d, v = 2, 512, 64, 65536
    h = jax.ShapeDtypeStruct((b, s, d), jnp.bfloat16)
    w = jax.ShapeDtypeStruct((d, v), jnp.bfloat16)
    m = jax.ShapeDtypeStruct((b, s), jnp.float32)

    def temp_bytes(chunk):
        f = jax.grad(lambda hs, ht, ws, wt, mk: token_kd(hs, ht, mk, chunk_tokens=chunk, student_head=ws,
                                                         teacher_head=wt))
        return jax.jit(f).lower(h, h, w, w, m).compile().memory_analysis().temp_size_in_bytes

    full = b * s * v * 4
    assert temp_bytes(64) < temp_bytes(128) < full / 2 < full < temp_bytes(0)


def test_packed_segments_are_each_sequence_on_its_own():
    """Two sequences packed into one row (segments 1, 2, then padding): the loss is the unpacked rows' loss, each
    segment's last token (whose next token is another segment's) and the padding left out."""
    rng = np.random.default_rng(5)
    s, t = rng.normal(size=(1, 12, V)).astype(np.float32), rng.normal(size=(1, 12, V)).astype(np.float32)
    seg = np.array([[1, 1, 1, 1, 1, 2, 2, 2, 2, 0, 0, 0]])
    assert segment_mask(jnp.asarray(seg)).tolist() == [[1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0]]
    packed = token_kd(jnp.asarray(s), jnp.asarray(t), jnp.ones((1, 12)), kind="jsd", segment_ids=jnp.asarray(seg))
    rows = np.zeros((2, 5, V), np.float32), np.zeros((2, 5, V), np.float32)
    rows[0][0, :5], rows[1][0, :5], rows[0][1, :4], rows[1][1, :4] = s[0, :5], t[0, :5], s[0, 5:9], t[0, 5:9]
    causal = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]], np.float32)  # each row's last real token has no target
    unpacked = token_kd(jnp.asarray(rows[0]), jnp.asarray(rows[1]), jnp.asarray(causal), kind="jsd")
    assert float(packed) == pytest.approx(float(unpacked), abs=1e-6)


@pytest.mark.parametrize("rest", [False, True])
@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl", "jsd"])
def test_absent_top_k_entries_are_left_out_of_both_distributions(rest, kind):
    """Index -1 (a teacher token the student's vocabulary lacks, kdjax.data.token_alignment): token by token in
    float64 torch, the divergence over the present entries (+ the rest); a token with none present adds 0."""
    s, t, mask = _inputs(5)
    lp, idx = (np.asarray(a) for a in top_k_log_probs(jnp.asarray(t), 8))
    rng = np.random.default_rng(5)
    idx = np.where(rng.random(idx.shape) < 0.3, -1, idx).astype(np.int32)
    idx[1, 2] = -1  # a token with no entry present
    mask[1, 2] = 1.0
    st = torch.tensor(s, dtype=torch.float64, requires_grad=True)
    total = torch.zeros((), dtype=torch.float64)
    for b, j in np.ndindex(B, S):
        keep = idx[b, j] >= 0
        if not mask[b, j] or not keep.any():
            continue
        ids = torch.tensor(idx[b, j][keep], dtype=torch.int64)
        lt = torch.tensor(lp[b, j][keep], dtype=torch.float64)
        if rest:
            ls_k = F.log_softmax(st[b, j], -1)[ids]
            log_t = torch.cat([lt, (1 - lt.exp().sum()).log()[None]])
            log_s = torch.cat([ls_k, (1 - ls_k.exp().sum()).log()[None]])
        else:
            log_t, log_s = F.log_softmax(lt, -1), F.log_softmax(st[b, j][ids], -1)
        total = total + divergence(log_t[None], log_s[None], kind, 0.5)[0]
    want = total / mask.sum()
    want.backward()
    fn = lambda x: sparse_token_kd(x, jnp.asarray(lp), jnp.asarray(idx), jnp.asarray(mask), kind=kind,  # noqa
                                   rest=rest, chunk_tokens=5)
    got, grad = jax.value_and_grad(fn)(jnp.asarray(s))
    assert float(got) == pytest.approx(float(want), abs=1e-6, rel=1e-6)
    np.testing.assert_allclose(np.asarray(grad), st.grad.numpy(), atol=1e-6)
    assert np.all(np.isfinite(np.asarray(grad)))


def test_chunked_cross_entropy_from_hidden_states_is_the_cross_entropy():
    from kdjax.losses.classification import cross_entropy

    rng = np.random.default_rng(6)
    h = jnp.asarray(rng.normal(size=(B, S, D)).astype(np.float32))
    head = jnp.asarray(rng.normal(size=(D, V)).astype(np.float32))
    targets = jnp.asarray(rng.integers(0, V, (B, S)))
    mask = jnp.asarray(_inputs(6)[2])
    want, want_g = jax.value_and_grad(lambda x: cross_entropy(x @ head, targets, mask))(h)
    got, got_g = jax.value_and_grad(lambda x: token_cross_entropy(x, targets, mask, head=head, chunk_tokens=4))(h)
    assert float(got) == pytest.approx(float(want), rel=1e-6)
    np.testing.assert_allclose(np.asarray(got_g), np.asarray(want_g), atol=1e-6)
    t = torch.nn.functional.cross_entropy(torch.tensor(np.asarray(h @ head)).reshape(-1, V),
                                          torch.tensor(np.asarray(targets), dtype=torch.int64).reshape(-1), reduction="none")
    m = np.asarray(mask).reshape(-1)
    assert float(got) == pytest.approx(float((t.numpy() * m).sum() / m.sum()), rel=1e-5)
