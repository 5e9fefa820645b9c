"""Lexical diversity of a caption set (thesis section 3.3, Figure 3.3): type-token ratio, Herdan's Vm,
Yule's K and Simpson's D, from the frequency spectrum of the tokens (Tweedie & Baayen 1998's notation:
N tokens, V types, V(i, N) types that occur exactly i times).

Higher TTR and Vm mean a more varied vocabulary; Yule's K and Simpson's D measure repetition (the chance
that two tokens drawn at random are the same word), so for them lower means more varied.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


def words(text: str) -> list[str]:
    """Lower-cased word tokens: runs of letters and digits, keeping inner apostrophes (dog's, don't)."""
    return _WORD.findall(text.lower())


def spectrum(tokens: Sequence[str]) -> dict[int, int]:
    """{i: V(i, N)}: how many types occur exactly i times."""
    return dict(Counter(Counter(tokens).values()))


def ttr(tokens: Sequence[str]) -> float:
    """V / N (Templin 1957)."""
    _check(tokens)
    return len(set(tokens)) / len(tokens)


def herdan_vm(tokens: Sequence[str]) -> float:
    """Herdan's Vm = sqrt(sum_i V(i, N) (i / N)^2 - 1 / V) (Herdan 1955)."""
    _check(tokens)
    n, v = len(tokens), len(set(tokens))
    return math.sqrt(max(sum(vi * (i / n) ** 2 for i, vi in spectrum(tokens).items()) - 1 / v, 0.0))


def yule_k(tokens: Sequence[str]) -> float:
    """Yule's K = 10^4 (sum_i i^2 V(i, N) - N) / N^2 (Yule 1944)."""
    _check(tokens)
    n = len(tokens)
    return 1e4 * (sum(i * i * vi for i, vi in spectrum(tokens).items()) - n) / (n * n)


def simpson_d(tokens: Sequence[str]) -> float:
    """Simpson's D = sum_i V(i, N) (i / N) ((i - 1) / (N - 1)) (Simpson 1949): the probability that two tokens
    drawn without replacement are the same type."""
    _check(tokens, 2)
    n = len(tokens)
    return sum(vi * i * (i - 1) for i, vi in spectrum(tokens).items()) / (n * (n - 1))


def diversity(texts: Iterable[str]) -> dict[str, float]:
    """The four measures over the pooled tokens of all `texts` (a dataset's captions)."""
    tokens = [w for t in texts for w in words(t)]
    return {"ttr": ttr(tokens), "herdan_vm": herdan_vm(tokens), "yule_k": yule_k(tokens),
            "simpson_d": simpson_d(tokens), "tokens": float(len(tokens)), "types": float(len(set(tokens)))}


def _check(tokens: Sequence[str], least: int = 1) -> None:
    if len(tokens) < least:
        raise ValueError(f"lexical diversity needs at least {least} token(s), got {len(tokens)}")
