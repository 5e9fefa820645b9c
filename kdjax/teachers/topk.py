"""A decoder teacher's top-k next-token distributions, cached (issue 26): what token-level KD needs of a teacher that
is kept out of training memory.

Per example (one token sequence), on issue 9's cache (`kdjax.teachers.cache`: array_record shards, one writer per
host, resumable): for each of its L positions the teacher's k most probable next tokens' log-probabilities (float16:
log-probabilities lie in [-65504, 0], where float16 keeps about 3 significant digits, against bfloat16's 2) and their
vocabulary ids (int32), fields `topk_logprobs` and `topk_ids` of shape (L, k). A token costs k x 6 bytes
(`bytes_per_token`), 384 for k = 64, against 4 x the vocabulary for dense float32 logits (196 kB for a 49k
vocabulary). The loss reads them with `kdjax.losses.token_kd.sparse_token_kd`.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from kdjax.teachers import cache as cache_lib

LOGPROBS, IDS = "topk_logprobs", "topk_ids"
_FLOAT16_MIN = float(np.finfo(np.float16).min)


def fields(k: int) -> dict[str, dict]:
    return {LOGPROBS: cache_lib.field(np.float16, (-1, k)), IDS: cache_lib.field(np.int32, (-1, k))}


def bytes_per_token(k: int) -> int:
    """The stored bytes of one token's entry (values and ids; the record framing comes on top per example)."""
    return k * (np.dtype(np.float16).itemsize + np.dtype(np.int32).itemsize)


def rows(ids: Sequence[str], logits: np.ndarray, lengths: Sequence[int], k: int) -> list[dict]:
    """Cache rows of a batch: `logits` (batch, length, vocabulary) of the teacher on each example's tokens, of which
    the first lengths[i] positions are the example's."""
    from kdjax.losses.token_kd import top_k_log_probs

    values, idx = (np.asarray(a) for a in top_k_log_probs(logits, k))
    return [{"id": i, LOGPROBS: np.maximum(values[j, :n], _FLOAT16_MIN).astype(np.float16),
             IDS: idx[j, :n].astype(np.int32)} for j, (i, n) in enumerate(zip(ids, lengths))]


def write(cache_dir: str, ids: Sequence[str], compute_logits: Callable[[list[str]], tuple[np.ndarray, list[int]]],
          k: int, *, batch_size: int, shard_size: int, teacher: str = "", fingerprint: Mapping | None = None) -> dict:
    """Cache the top-k of every example not cached yet: `compute_logits(ids)` gives the teacher's logits of up to
    `batch_size` examples and their lengths. Returns cache.fill's statistics with `bytes_per_token` added."""
    stats = cache_lib.fill(cache_dir, ids, lambda part: rows(part, *compute_logits(part), k), fields(k),
                           batch_size=batch_size, shard_size=shard_size, teacher=teacher,
                           fingerprint={"k": k, **dict(fingerprint or {})}, progress="top-k teacher cache")
    return {**stats, "bytes_per_token": bytes_per_token(k)}


def batch(cache: cache_lib.OutputCache, ids: Sequence[str], length: int) -> dict[str, np.ndarray]:
    """The cached top-k of `ids` as a batch padded to `length` positions: logprobs (float16) and ids (int32) of
    shape (batch, length, k), and `topk_mask` (batch, length): 1 where the example has a cached position."""
    k = int(cache.fields[LOGPROBS]["shape"][1])
    out = {LOGPROBS: np.zeros((len(ids), length, k), np.float16), IDS: np.zeros((len(ids), length, k), np.int32),
           "topk_mask": np.zeros((len(ids), length), np.float32)}
    for j, i in enumerate(ids):
        row = cache.get(i)
        n = min(length, len(row[IDS]))
        out[LOGPROBS][j, :n], out[IDS][j, :n], out["topk_mask"][j, :n] = row[LOGPROBS][:n], row[IDS][:n], 1.0
    return out
