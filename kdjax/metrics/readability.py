"""Readability of captions (thesis section 3.3, Figure 3.2): Flesch-Kincaid grade, Coleman-Liau index,
Dale-Chall score and Spache score; for each, lower means easier to read.

Every score is a formula over a few counts of the text (sentences, words, syllables, letters, words not on
a list of familiar words), so the counting is kept apart (`Counts`) and documented:
- words: runs of letters and digits with inner apostrophes (`lexical.words`);
- sentences: pieces ending in . ! or ?, or at the end of the text (a caption without a full stop is one);
- syllables: vowel groups (a e i o u y) of each word, less a final silent e, at least one per word (an
  estimate: "audio" counts 2);
- familiar words: the Dale-Chall list of about 3,000 words (the copy `textstat` ships); a word is familiar
  if it, or it without a regular inflection (-s, -es, -ed, -d, -ing, -er, -est, -ly), is on the list; numbers
  are familiar. Spache's own list of primary-grade words is not freely available; his formula is applied
  with the Dale-Chall list.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable

from kdjax.metrics.lexical import words as word_tokens

_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
_VOWELS = re.compile(r"[aeiouy]+")
_INFLECTIONS = ("ing", "est", "es", "ed", "er", "ly", "s", "d")


@dataclasses.dataclass(frozen=True)
class Counts:
    sentences: int
    words: int
    syllables: int
    letters: int
    unfamiliar: int  # words not on the familiar-word list


def syllables(word: str) -> int:
    w = word.lower().replace("'", "")
    if not w:
        return 0
    if not any(c.isalpha() for c in w):
        return 1  # a number reads as (at least) one word
    n = len(_VOWELS.findall(w))
    if w.endswith("e") and not w.endswith(("le", "ee", "ye")) and n > 1:
        n -= 1  # silent final e: "stone", "voice"
    return max(n, 1)


@functools.cache
def familiar_words() -> frozenset[str]:
    """The Dale-Chall list of familiar words, as packaged by `textstat` (pip install textstat)."""
    from importlib import resources

    try:
        text = resources.files("textstat").joinpath("resources/en/easy_words.txt").read_text(encoding="utf-8")
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError("readability scores need the Dale-Chall word list from textstat: "
                                  "pip install textstat") from e
    return frozenset(w.strip().lower() for w in text.splitlines() if w.strip())


def is_familiar(word: str, familiar: frozenset[str] | None = None) -> bool:
    familiar = familiar_words() if familiar is None else familiar
    w = word.lower()
    if w in familiar or any(c.isdigit() for c in w):
        return True
    w = w.removesuffix("'s")
    if w in familiar:
        return True
    for suffix in _INFLECTIONS:
        if w.endswith(suffix) and len(w) > len(suffix) + 1:
            stem = w[:-len(suffix)]
            if stem in familiar or stem + "e" in familiar or (len(stem) > 2 and stem[-1] == stem[-2]
                                                                and stem[:-1] in familiar):
                return True  # dogs, barked, running (runn -> run), closer (clos -> close)
            if suffix in ("es", "ed", "er", "est") and stem.endswith("i") and stem[:-1] + "y" in familiar:
                return True  # cries, tried, happier
    return False


def count(text: str, familiar: frozenset[str] | None = None) -> Counts:
    toks = word_tokens(text)
    pieces = [p for p in _SENTENCE_END.split(text) if word_tokens(p)]
    return Counts(sentences=max(len(pieces), 1 if toks else 0), words=len(toks),
                  syllables=sum(syllables(t) for t in toks),
                  letters=sum(c.isalpha() for t in toks for c in t),
                  unfamiliar=sum(not is_familiar(t, familiar) for t in toks))


def flesch_kincaid_grade(c: Counts) -> float:
    """0.39 (words / sentences) + 11.8 (syllables / words) - 15.59 (Kincaid et al. 1975)."""
    return 0.39 * c.words / c.sentences + 11.8 * c.syllables / c.words - 15.59


def coleman_liau(c: Counts) -> float:
    """0.0588 L - 0.296 S - 15.8, L letters and S sentences per 100 words (Coleman & Liau 1975)."""
    return 0.0588 * 100 * c.letters / c.words - 0.296 * 100 * c.sentences / c.words - 15.8


def dale_chall(c: Counts) -> float:
    """0.1579 (% unfamiliar words) + 0.0496 (words / sentences), + 3.6365 when more than 5 % of the words
    are unfamiliar (Dale & Chall 1948)."""
    pdw = 100 * c.unfamiliar / c.words
    return 0.1579 * pdw + 0.0496 * c.words / c.sentences + (3.6365 if pdw > 5 else 0.0)


def spache(c: Counts) -> float:
    """0.141 (words / sentences) + 0.086 (% unfamiliar words) + 0.839 (Spache 1953)."""
    return 0.141 * c.words / c.sentences + 0.086 * 100 * c.unfamiliar / c.words + 0.839


SCORES = {"flesch_kincaid": flesch_kincaid_grade, "coleman_liau": coleman_liau, "dale_chall": dale_chall,
          "spache": spache}


def readability(texts: Iterable[str]) -> dict[str, float]:
    """Each score averaged over the captions (each caption is one text); empty captions are left out and
    counted."""
    familiar = familiar_words()
    counted = [count(t, familiar) for t in texts]
    kept = [c for c in counted if c.words]
    if not kept:
        raise ValueError("readability needs at least one caption with a word")
    out = {name: sum(f(c) for c in kept) / len(kept) for name, f in SCORES.items()}
    out.update(captions=float(len(kept)), empty_captions=float(len(counted) - len(kept)))
    return out
