"""CIDEr-D as computed by the COCO caption evaluation code (pycocoevalcap 1.2, `Cider`).

Vedantam et al. (2015), eq. 2-4 with the CIDEr-D changes of sec. 8: each sentence is a tf-idf vector
per n-gram order (n = 1..4; tf the raw count, idf = log(#items) - log(max(1, df)), df the number of
items whose references contain the n-gram, i.e. the evaluated corpus's references); the similarity of
candidate and reference is sum_g min(c_g, r_g) r_g / (|c| |r|) (clipping) times a Gaussian length
penalty exp(-(l_c - l_r)^2 / (2 * 6^2)); item score = 10 x the mean over orders and references;
corpus score = the mean over items. As in the COCO code, the "length" in the penalty is the number of
bigrams (words - 1), not of words.

All of it runs on flat arrays: the clipped dot products come from joining each reference's entries
with the candidate's on (item, n-gram id).
"""

from __future__ import annotations

import numpy as np

from kdjax.metrics.captioning import ngrams

SIGMA = 6.0


def score(cand: list[list[str]], refs: list[list[list[str]]], max_n: int = 4
          ) -> tuple[float, np.ndarray]:
    """(corpus CIDEr-D, per-item) for whitespace-token lists (scores x1, i.e. up to ~10)."""
    num_items = len(cand)
    num_refs = np.array([len(r) for r in refs])
    item_of_ref = np.repeat(np.arange(num_items), num_refs)
    _, orders = ngrams.count(cand + [s for r in refs for s in r], max_n)
    num_sent = num_items + len(item_of_ref)
    item_of_sent = np.concatenate([np.arange(num_items), item_of_ref])
    log_items = np.log(float(num_items))
    bigrams = np.bincount(orders[1].sent, orders[1].count, minlength=num_sent) if max_n > 1 else None
    sims = np.zeros((max_n, len(item_of_ref)))
    for n, c in enumerate(orders):
        is_ref = c.sent >= num_items
        # document frequency: items whose references hold the n-gram (each item counted once)
        item_gram = np.unique(item_of_ref[c.sent[is_ref] - num_items] * c.num_grams + c.gram[is_ref])
        df = np.bincount(item_gram % c.num_grams, minlength=c.num_grams).astype(np.float64)
        vec = c.count * (log_items - np.log(np.maximum(1.0, df)))[c.gram]
        norm = np.sqrt(np.bincount(c.sent, vec * vec, minlength=num_sent))
        # join reference entries with the candidate entry of the same (item, n-gram)
        t = ~is_ref
        t_key = c.sent[t] * c.num_grams + c.gram[t]  # candidate sentence index == item index
        r_key = item_of_sent[c.sent[is_ref]] * c.num_grams + c.gram[is_ref]
        v_ref = vec[is_ref]
        v_hyp = ngrams.lookup(t_key, vec[t], r_key, 0.0)
        dot = np.bincount(c.sent[is_ref] - num_items, np.minimum(v_hyp, v_ref) * v_ref,
                          minlength=len(item_of_ref))
        denom = norm[:num_items][item_of_ref] * norm[num_items:]
        sims[n] = np.where(denom != 0, dot / np.where(denom != 0, denom, 1.0), dot)
    lengths = bigrams if bigrams is not None else np.zeros(num_sent)
    delta = lengths[:num_items][item_of_ref] - lengths[num_items:]
    sims *= np.e ** (-(delta ** 2) / (2 * SIGMA ** 2))
    per_ref = sims.sum(0)
    per_item = np.bincount(item_of_ref, per_ref, minlength=num_items) / max_n / num_refs * 10.0
    return float(np.mean(per_item)), per_item
