"""ROUGE-L as computed by the COCO caption evaluation code (pycocoevalcap 1.2, `Rouge`).

Lin (2004), sec. 3.1: F_lcs = (1 + beta^2) R P / (R + beta^2 P) with beta = 1.2, where, per the COCO
code, P and R are the maxima over the references of LCS/|candidate| and LCS/|reference| (taken
separately); the corpus score is the mean over items. Tokens come from `str.split(" ")`, as in the
reference, so an empty sentence is one empty token.

The LCS dynamic programme runs for all (candidate, reference) pairs at once: row i of the table is
cummax_j(max(L[i-1, j], L[i-1, j-1] + match(i, j))), one vectorised step per candidate token.
"""

from __future__ import annotations

import numpy as np

from kdjax.metrics.captioning import ngrams

BETA = 1.2
_CHUNK = 4096  # pairs per DP batch; pairs are length-sorted so padding stays small


def _padded(ids: np.ndarray, starts: np.ndarray, lengths: np.ndarray, width: int, pad: int) -> np.ndarray:
    """Rows ids[starts[k] : starts[k] + lengths[k]], right-padded with `pad` to `width`."""
    cols = np.arange(width)
    pos = np.minimum(starts[:, None] + cols[None, :], max(len(ids) - 1, 0))
    vals = ids[pos] if len(ids) else np.zeros(pos.shape, np.int64)
    return np.where(cols[None, :] < lengths[:, None], vals, pad)


def lcs_lengths(ids: np.ndarray, a_start: np.ndarray, a_len: np.ndarray, b_start: np.ndarray,
                b_len: np.ndarray) -> np.ndarray:
    """LCS length of each pair of token sequences given as (start, length) slices of flat `ids`."""
    out = np.zeros(len(a_len), np.int64)
    order = np.lexsort((b_len, a_len))
    for s in range(0, len(order), _CHUNK):
        idx = order[s:s + _CHUNK]
        la, lb = int(a_len[idx].max(initial=0)), int(b_len[idx].max(initial=0))
        A = _padded(ids, a_start[idx], a_len[idx], la, -1)  # distinct pads never match each other
        B = _padded(ids, b_start[idx], b_len[idx], lb, -2)
        L = np.zeros((len(idx), lb + 1), np.int64)
        for i in range(la):
            match = (A[:, i:i + 1] == B).astype(np.int64)
            cand = np.maximum(L[:, 1:], L[:, :-1] + match)
            L[:, 1:] = np.maximum.accumulate(cand, axis=1)
        out[idx] = L[:, -1]
    return out


def score(cand: list[str], refs: list[list[str]]) -> tuple[float, np.ndarray]:
    """(corpus ROUGE-L, per-item) for tokenised sentences (tokens separated by single spaces)."""
    num_refs = np.array([len(r) for r in refs])
    item_of_ref = np.repeat(np.arange(len(cand)), num_refs)
    toks = [s.split(" ") for s in cand] + [s.split(" ") for r in refs for s in r]
    ids, lengths = ngrams.token_ids(toks)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    n = len(cand)
    lcs = lcs_lengths(ids, starts[:n][item_of_ref], lengths[:n][item_of_ref], starts[n:],
                      lengths[n:]).astype(np.float64)
    prec = lcs / lengths[:len(cand)][item_of_ref]
    rec = lcs / lengths[len(cand):]
    first = np.concatenate([[0], np.cumsum(num_refs)[:-1]])
    p, r = np.maximum.reduceat(prec, first), np.maximum.reduceat(rec, first)
    with np.errstate(invalid="ignore", divide="ignore"):
        f = ((1 + BETA ** 2) * p * r) / (r + BETA ** 2 * p)
    f = np.where((p != 0) & (r != 0), f, 0.0)
    return float(np.mean(f)), f
