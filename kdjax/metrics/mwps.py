"""Medical Word Proportion Score (DSG-KD thesis eq. 2.10-2.11).

    MWPS = (m / E) / (E / A) = m * A / E^2

m: medical terms among the English words, E: English words, A: all words, counted over a set of notes
(the thesis uses the correctly classified test notes of each model). The medical-term list is
pluggable: any iterable of terms, or a file with one term a line.
"""

from __future__ import annotations

from typing import Iterable

from kdjax.data.synthetic_notes import word_category


def load_terms(path: str) -> set[str]:
    with open(path, encoding="utf-8") as f:
        return {ln.strip().lower() for ln in f if ln.strip()}


def word_counts(texts: Iterable[str], medical_terms: Iterable[str]) -> tuple[int, int, int]:
    """(m, E, A) over whitespace-separated words; English = ASCII letters only."""
    terms = {t.lower() for t in medical_terms}
    m = e = a = 0
    for text in texts:
        for w in text.split():
            a += 1
            if word_category(w) == "english":
                e += 1
                m += w.lower() in terms
    return m, e, a


def mwps(texts: Iterable[str], medical_terms: Iterable[str]) -> float:
    m, e, a = word_counts(texts, medical_terms)
    return float(m * a / (e * e)) if e else float("nan")
