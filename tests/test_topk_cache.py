"""Top-k teacher caches (kdjax.teachers.topk, issue 26 part 2): written once and resumably per example, read back as
padded batches equal to the teacher's top-k (values to float16 precision, ids exactly), their size per token as
stated, another k refused; the sparse loss on the cache equals it on the teacher's own top-k."""

import jax.numpy as jnp
import numpy as np
import pytest

from kdjax.errors import InputError
from kdjax.losses.token_kd import sparse_token_kd, top_k_log_probs
from kdjax.teachers import cache as cache_lib
from kdjax.teachers import topk

V, K = 40, 8
LENGTHS = {"a": 3, "b": 7, "c": 5, "d": 1, "e": 6}


def _logits(i: str) -> np.ndarray:
    return np.random.default_rng(ord(i)).normal(0, 3, (LENGTHS[i], V)).astype(np.float32)


def _compute(calls: list):
    def compute(ids):
        calls.append(list(ids))
        n = max(LENGTHS[i] for i in ids)
        out = np.full((len(ids), n, V), 7.0, np.float32)  # what padding positions hold must not matter
        for j, i in enumerate(ids):
            out[j, :LENGTHS[i]] = _logits(i)
        return out, [LENGTHS[i] for i in ids]
    return compute


def test_top_k_cache_round_trip_size_resume_and_loss(tmp_path):
    where, calls = str(tmp_path / "topk"), []
    stats = topk.write(where, list(LENGTHS), _compute(calls), K, batch_size=2, shard_size=3, teacher="t")
    assert stats["computed"] == 5 and stats["bytes_per_token"] == K * 6 + 2 == 50
    assert calls == [["a", "b"], ["c"], ["d", "e"]]  # shards of 3, batches of 2
    cache = cache_lib.OutputCache(where)
    tokens = sum(LENGTHS.values())
    assert 50 * tokens < cache.bytes < 50 * tokens + 100 * len(LENGTHS)  # values, ids, rests and little framing

    got = topk.batch(cache, ["b", "d"], 7)
    assert got[topk.LOGPROBS].dtype == np.float16 and got[topk.IDS].shape == (2, 7, K)
    assert got["topk_mask"].tolist() == [[1] * 7, [1] + [0] * 6]
    for j, i in enumerate(["b", "d"]):
        values, idx = top_k_log_probs(jnp.asarray(_logits(i)), K)
        np.testing.assert_array_equal(got[topk.IDS][j, :LENGTHS[i]], np.asarray(idx))
        np.testing.assert_allclose(got[topk.LOGPROBS][j, :LENGTHS[i]].astype(np.float32), np.asarray(values),
                                   rtol=1e-3, atol=1e-3)
        # the rest: the probability outside the top-k, summed in float64 here
        p = np.exp(_logits(i).astype(np.float64) - np.log(np.exp(_logits(i).astype(np.float64)).sum(-1))[:, None])
        outside = p.sum(-1) - np.take_along_axis(p, np.asarray(idx), -1).sum(-1)
        np.testing.assert_allclose(np.exp(got[topk.REST][j, :LENGTHS[i]].astype(np.float64)), outside, rtol=2e-3)

    # the loss on the cached top-k is the loss on the teacher's own (up to float16's rounding)
    student = np.random.default_rng(0).normal(size=(2, 7, V)).astype(np.float32)
    teacher = np.stack([_logits("b"), np.pad(_logits("d"), ((0, 6), (0, 0)))])
    values, idx = top_k_log_probs(jnp.asarray(teacher), K)
    mask = jnp.asarray(got["topk_mask"])
    own = sparse_token_kd(jnp.asarray(student), values, idx, mask, kind="jsd")
    cached = sparse_token_kd(jnp.asarray(student), jnp.asarray(got[topk.LOGPROBS]), jnp.asarray(got[topk.IDS]),
                             mask, kind="jsd")
    assert float(cached) == pytest.approx(float(own), rel=2e-3)
    # with the rest bucket: the stored rest keeps float16's rounding of the k values out of it
    own = sparse_token_kd(jnp.asarray(student), values, idx, mask, rest=True)
    cached = sparse_token_kd(jnp.asarray(student), jnp.asarray(got[topk.LOGPROBS]), jnp.asarray(got[topk.IDS]),
                             mask, rest=True, teacher_rest=jnp.asarray(got[topk.REST]))
    assert float(cached) == pytest.approx(float(own), rel=2e-3)

    again = topk.write(where, list(LENGTHS), _compute(calls), K, batch_size=2, shard_size=3, teacher="t")
    assert again["computed"] == 0 and len(calls) == 3  # resumed: nothing recomputed
    with pytest.raises(InputError, match="holds fields"):
        topk.write(where, list(LENGTHS), _compute(calls), K * 2, batch_size=2, shard_size=3, teacher="t")
