"""BLEU-1..4 as computed by the COCO caption evaluation code (pycocoevalcap 1.2, `Bleu(4)`).

Papineni et al. (2002), eq. 1-2: modified n-gram precisions (candidate counts clipped by the maximum
count in any reference) combined geometrically, times the brevity penalty exp(1 - r/c) when c < r.
The COCO conventions reproduced here: the reference length r of an item is the reference length
closest to the candidate's (ties: the shorter); corpus BLEU sums clipped matches, candidate n-grams,
c and r over items before combining; per-item BLEU uses the same formula on one item; both add 1e-15
to matches and 1e-9 to counts (so a zero precision gives ~0, not a division error).
"""

from __future__ import annotations

import numpy as np

from kdjax.metrics.captioning import ngrams

TINY, SMALL = 1e-15, 1e-9


def _combine(correct: np.ndarray, guess: np.ndarray, testlen, reflen) -> np.ndarray:
    """(..., 4) clipped matches and candidate n-gram counts -> BLEU-1..4, in the reference's order of
    floating-point operations (a running product of precisions, then the k-th root)."""
    ratios = (correct.astype(np.float64) + TINY) / (guess.astype(np.float64) + SMALL)
    prod = np.cumprod(ratios, axis=-1)
    bleu = prod ** (1.0 / np.arange(1, ratios.shape[-1] + 1))
    ratio = (np.asarray(testlen, np.float64) + TINY) / (np.asarray(reflen, np.float64) + SMALL)
    with np.errstate(divide="ignore", over="ignore"):
        penalty = np.where(ratio < 1, np.exp(1 - 1 / np.maximum(ratio, 1e-300)), 1.0)
    return bleu * penalty[..., None]


def score(cand: list[list[str]], refs: list[list[list[str]]], max_n: int = 4
          ) -> tuple[np.ndarray, np.ndarray]:
    """(corpus BLEU-1..max_n, per-item (items, max_n)) for whitespace-token lists."""
    num_items = len(cand)
    num_refs = np.array([len(r) for r in refs])
    item_of_ref = np.repeat(np.arange(num_items), num_refs)
    lengths, orders = ngrams.count(cand + [s for r in refs for s in r], max_n)
    testlen, reflens = lengths[:num_items], lengths[num_items:]
    # closest reference length (ties -> shorter): minimise |l - c| then l, per item
    key = np.abs(reflens - testlen[item_of_ref]) * (reflens.max(initial=0) + 1) + reflens
    first = np.concatenate([[0], np.cumsum(num_refs)[:-1]])
    reflen = np.minimum.reduceat(key, first) % (reflens.max(initial=0) + 1)
    correct = np.zeros((num_items, max_n), np.int64)
    for n, c in enumerate(orders):
        is_ref = c.sent >= num_items
        # max count of each n-gram over an item's references
        r_key = item_of_ref[c.sent[is_ref] - num_items] * c.num_grams + c.gram[is_ref]
        order = np.argsort(r_key, kind="stable")
        r_key, r_cnt = r_key[order], c.count[is_ref][order]
        uniq, start = np.unique(r_key, return_index=True)
        max_cnt = np.maximum.reduceat(r_cnt, start) if len(r_cnt) else r_cnt
        t_key = c.sent[~is_ref] * c.num_grams + c.gram[~is_ref]
        clipped = np.minimum(c.count[~is_ref], ngrams.lookup(uniq, max_cnt, t_key))
        correct[:, n] = np.bincount(c.sent[~is_ref], clipped, minlength=num_items)
    guess = np.maximum(testlen[:, None] - np.arange(max_n)[None, :], 0)
    per_item = _combine(correct, guess, testlen, reflen)
    corpus = _combine(correct.sum(0), guess.sum(0), testlen.sum(), reflen.sum())
    return corpus, per_item
