"""N-gram counts of many sentences at once, as flat integer arrays (no per-n-gram Python objects).

Every distinct n-gram gets an integer id (per order n): unigram ids come from a vocabulary, and the id of
an n-gram is the rank of (id of its first n-1 words, id of its last word) among all such pairs, so
ids are built with `np.unique` order by order. BLEU and CIDEr-D join candidates and references on
(item, n-gram id) keys with sorted searches.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Counts:
    """Counts of the n-grams of one order: entry e says sentence `sent[e]` holds n-gram `gram[e]`
    `count[e]` times. Entries are sorted by (sent, gram); `num_grams` bounds the ids."""

    sent: np.ndarray
    gram: np.ndarray
    count: np.ndarray
    num_grams: int


def token_ids(sentences: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """(flat token ids, lengths) with ids interned over all sentences."""
    vocab: dict[str, int] = {}
    lengths = np.fromiter((len(s) for s in sentences), np.int64, len(sentences))
    ids = np.fromiter((vocab.setdefault(w, len(vocab)) for s in sentences for w in s), np.int64,
                      int(lengths.sum()))
    return ids, lengths


def count(sentences: list[list[str]], max_n: int = 4) -> tuple[np.ndarray, list[Counts]]:
    """(word counts per sentence, [Counts for n = 1..max_n])."""
    ids, lengths = token_ids(sentences)
    num_sent = len(sentences)
    sent_of = np.repeat(np.arange(num_sent), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    remaining = lengths[sent_of] - (np.arange(len(ids)) - starts[sent_of])  # words from here to the end
    vocab_size = int(ids.max()) + 1 if len(ids) else 1
    out: list[Counts] = []
    grams = ids  # id of the n-gram starting at each position (valid where remaining >= n)
    for n in range(1, max_n + 1):
        if n > 1:
            valid_prev = remaining >= n  # n-grams of order n start where n words remain
            nxt = np.zeros_like(ids)
            nxt[: len(ids) - (n - 1)] = ids[n - 1:]
            key = np.where(valid_prev, grams * vocab_size + nxt, -1)
            uniq, inv = np.unique(key, return_inverse=True)
            grams = inv.reshape(-1) - (1 if len(uniq) and uniq[0] == -1 else 0)
        valid = remaining >= n
        num_grams = int(grams[valid].max()) + 1 if valid.any() else 1
        key = sent_of[valid] * num_grams + grams[valid]
        uniq, cnt = np.unique(key, return_counts=True)
        out.append(Counts(uniq // num_grams, uniq % num_grams, cnt.astype(np.int64), num_grams))
    return lengths, out


def lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray, default=0) -> np.ndarray:
    """values[keys == q] for each q in `query` (keys sorted and unique), `default` where absent."""
    if len(keys) == 0:
        return np.full(len(query), default, dtype=values.dtype)
    pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return np.where(keys[pos] == query, values[pos], default)
