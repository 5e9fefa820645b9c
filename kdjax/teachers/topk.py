"""A decoder teacher's top-k next-token distributions, cached (issue 26): what token-level KD needs of a teacher that
is kept out of training memory.

Per example (one token sequence), on issue 9's cache (`kdjax.teachers.cache`: array_record shards, one writer per
host, resumable): for each of its L positions the teacher's k most probable next tokens' log-probabilities (float16:
log-probabilities lie in [-65504, 0], where float16 keeps about 3 significant digits, against bfloat16's 2) and their
vocabulary ids (int32), fields `topk_logprobs` and `topk_ids` of shape (L, k), and the log of the mass outside them
(`topk_rest`, (L,) float16: summed from the dense distribution, as 1 - the sum of float16 values is off by ~1e-3). A
token costs k x 6 + 2 bytes (`bytes_per_token`), 386 for k = 64, against 4 x the vocabulary for dense float32 logits (196 kB for a 49k
vocabulary). The loss reads them with `kdjax.losses.token_kd.sparse_token_kd`. The same form holds k draws from the
teacher's distribution instead (`sampled`): the distinct tokens drawn and their frequencies.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from kdjax.teachers import cache as cache_lib

LOGPROBS, IDS, REST = "topk_logprobs", "topk_ids", "topk_rest"
_FLOAT16_MIN = float(np.finfo(np.float16).min)


def fields(k: int) -> dict[str, dict]:
    return {LOGPROBS: cache_lib.field(np.float16, (-1, k)), IDS: cache_lib.field(np.int32, (-1, k)),
            REST: cache_lib.field(np.float16, (-1,))}


def bytes_per_token(k: int) -> int:
    """The stored bytes of one token's entry (values, ids and the rest's log-mass; the record framing comes on top
    per example)."""
    return k * (np.dtype(np.float16).itemsize + np.dtype(np.int32).itemsize) + np.dtype(np.float16).itemsize


def rows(ids: Sequence[str], logits: np.ndarray, lengths: Sequence[int], k: int) -> list[dict]:
    """Cache rows of a batch: `logits` (batch, length, vocabulary) of the teacher on each example's tokens, of which
    the first lengths[i] positions are the example's."""
    values, idx, rest = (np.asarray(a) for a in top_k(logits, k))
    return [row(i, values[j, :n], idx[j, :n], rest[j, :n]) for j, (i, n) in enumerate(zip(ids, lengths))]


def top_k(logits, k: int):
    """(values, ids, rest): the top-k log-probabilities and ids of each position's logits and the log-mass outside
    them (`kdjax.losses.token_kd.rest_log_prob`): what a cache row holds, before float16."""
    from kdjax.losses.token_kd import rest_log_prob, top_k_log_probs

    values, idx = top_k_log_probs(logits, k)
    return values, idx, rest_log_prob(logits, idx)


def sampled(logits, k: int, key, head: int = 0):
    """(values, ids, rest) in top_k's form for a cache of k draws from each position's teacher distribution
    (softmax(logits)): the distinct tokens drawn (ids; -1 in the slots their repeats leave) and the log of the fraction
    of the k draws each got (values), no mass elsewhere (rest: float32's smallest normal). Read by
    `sparse_token_kd(rest=True)`, the forward KL's gradient against this empirical distribution is, in expectation
    over the draws, the dense KL's: an unbiased estimate at the top-k's bytes (random-sampling KD, Anshumann et al.
    2025), where the top-k keeps the head exactly and only the tail's total mass.

    head > 0: the `head` most probable tokens kept exactly (their log-probabilities first, as `top_k` gives them) and
    k - head draws from the rest of the distribution, each distinct token drawn given its share of the draws times
    the rest's mass: still unbiased, and the head's share of the estimate's variance gone."""
    import jax
    import jax.numpy as jnp

    from kdjax.losses.token_kd import _LOG_TINY

    if not 0 <= head < k:
        raise ValueError(f"sampled: head must be in [0, k) = [0, {k}), got {head}")
    logits = jnp.asarray(logits, jnp.float32)
    lead, vocab, n = logits.shape[:-1], logits.shape[-1], k - head
    log_scale = jnp.zeros(lead, jnp.float32)
    if head:
        head_values, head_ids, log_scale = top_k(logits, head)  # log_scale: the log-mass outside the head
        flat = logits.reshape(-1, vocab)
        logits = flat.at[jnp.arange(flat.shape[0])[:, None], head_ids.reshape(-1, head)].set(-jnp.inf).reshape(
            logits.shape)
    # inverse-CDF draws: one cumulative sum per position and n uniforms (jax.random.categorical with n draws would
    # hold n x vocabulary Gumbel noises per position: 51 GB for 8 x 128 positions, n = 64 and 49k tokens)
    cdf = jnp.cumsum(jax.nn.softmax(logits, -1), -1).reshape(-1, vocab)
    u = jax.random.uniform(key, (cdf.shape[0], n)) * cdf[:, -1:]
    draws = jax.vmap(lambda c, x: jnp.searchsorted(c, x, side="right"))(cdf, u)
    s = jnp.sort(jnp.minimum(draws, vocab - 1).astype(jnp.int32).reshape(lead + (n,)), -1)
    first = jnp.concatenate([jnp.ones_like(s[..., :1], bool), s[..., 1:] != s[..., :-1]], -1)
    pos = jnp.arange(n)
    # a run of one token starts at a `first` slot and ends where the next run starts: its length is its count
    starts = jnp.where(first, pos, n)
    nxt = jax.lax.cummin(jnp.concatenate([starts[..., 1:], jnp.full_like(starts[..., :1], n)], -1), axis=s.ndim - 1,
                         reverse=True)
    count = jnp.where(first, nxt - pos, 1)
    values = jnp.where(first, jnp.log(count / n) + log_scale[..., None], _LOG_TINY)
    ids = jnp.where(first, s, -1)
    if head:
        values, ids = jnp.concatenate([head_values, values], -1), jnp.concatenate([head_ids, ids], -1)
    return values, ids, jnp.full(lead, _LOG_TINY, jnp.float32)


def row(example_id: str, logprobs: np.ndarray, ids: np.ndarray, rest: np.ndarray) -> dict:
    """One example's cache row from its (L, k) top-k log-probabilities and ids (-1: no entry at that position) and
    (L,) log-mass outside them."""
    f16 = lambda a: np.maximum(np.asarray(a, np.float32), _FLOAT16_MIN).astype(np.float16)  # noqa: E731
    return {"id": example_id, LOGPROBS: f16(logprobs), IDS: np.asarray(ids).astype(np.int32), REST: f16(rest)}


def fill(cache_dir: str, ids: Sequence[str], compute_rows: Callable[[list[str]], list[dict]], k: int, *,
         batch_size: int, shard_size: int, teacher: str = "", fingerprint: Mapping | None = None) -> dict:
    """Cache the top-k of every example not cached yet: `compute_rows(ids)` gives up to `batch_size` examples'
    rows (`row`). Returns cache.fill's statistics with `bytes_per_token` added."""
    stats = cache_lib.fill(cache_dir, ids, compute_rows, fields(k), batch_size=batch_size, shard_size=shard_size,
                           teacher=teacher, fingerprint={"k": k, **dict(fingerprint or {})},
                           progress="top-k teacher cache")
    return {**stats, "bytes_per_token": bytes_per_token(k)}


def write(cache_dir: str, ids: Sequence[str], compute_logits: Callable[[list[str]], tuple[np.ndarray, list[int]]],
          k: int, *, batch_size: int, shard_size: int, teacher: str = "", fingerprint: Mapping | None = None) -> dict:
    """`fill` from logits: `compute_logits(ids)` gives the teacher's logits of up to `batch_size` examples and their
    lengths."""
    return fill(cache_dir, ids, lambda part: rows(part, *compute_logits(part), k), k, batch_size=batch_size,
                shard_size=shard_size, teacher=teacher, fingerprint=fingerprint)


def batch(cache: cache_lib.OutputCache, ids: Sequence[str], length: int) -> dict[str, np.ndarray]:
    """The cached top-k of `ids` as a batch padded to `length` positions: logprobs (float16) and ids (int32) of
    shape (batch, length, k), the rest's log-mass (batch, length) and `topk_mask` (batch, length): 1 where the
    example has a cached position."""
    k = int(cache.fields[LOGPROBS]["shape"][1])
    out = {LOGPROBS: np.zeros((len(ids), length, k), np.float16), IDS: np.zeros((len(ids), length, k), np.int32),
           REST: np.zeros((len(ids), length), np.float16), "topk_mask": np.zeros((len(ids), length), np.float32)}
    for j, i in enumerate(ids):
        row = cache.get(i)
        n = min(length, len(row[IDS]))
        for name in (LOGPROBS, IDS, REST):
            out[name][j, :n] = row[name][:n]
        out["topk_mask"][j, :n] = 1.0
    return out
