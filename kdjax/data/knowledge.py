"""Domain words and knowledge masks (DSG-KD thesis eq. 2.1-2.2).

A domain-word finder maps a note to the character spans of its domain words. The knowledge mask M of
one tokenization gives each token the 1-based index of the domain word it belongs to (0 = none). It
is built from the tokenizer's character offsets, separately for teacher and student: the tokenizers
differ, so the same word covers different subword spans in each, but word k is the same word in both.
"""

from __future__ import annotations

import importlib
import re
from typing import Callable, Iterable, Sequence

import numpy as np

from kdjax.data import lines
from kdjax.errors import InputError

Span = tuple[int, int]
DomainWordFinder = Callable[[str], list[Span]]

_WORD = re.compile(r"\S+")
_LATIN = re.compile(r"^[A-Za-z]+$")


def all_words(text: str) -> list[Span]:
    """Every whitespace-separated word."""
    return [m.span() for m in _WORD.finditer(text)]


def latin_words(text: str) -> list[Span]:
    """The thesis's default: whitespace-separated words made only of ASCII letters (English words in
    Korean notes)."""
    return [m.span() for m in _WORD.finditer(text) if _LATIN.match(m.group())]


def word_list_finder(words: Iterable[str], case_sensitive: bool = False) -> DomainWordFinder:
    """Domain words = whitespace-separated words found in `words`."""
    norm = (lambda w: w) if case_sensitive else str.lower
    vocab = {norm(w.strip()) for w in words if w.strip()}

    def find(text: str) -> list[Span]:
        return [m.span() for m in _WORD.finditer(text) if norm(m.group()) in vocab]

    return find


def resolve_finder(spec: str | DomainWordFinder) -> DomainWordFinder:
    """'latin' | 'file:/path/words.txt' (one word a line) | 'module.path:function' | a callable."""
    if callable(spec):
        return spec
    if spec == "latin":
        return latin_words
    if spec.startswith("file:"):
        path = spec[5:]
        try:
            return word_list_finder(text for _, text in lines.strict_lines(path))
        except OSError as e:
            raise InputError(f"domain word list {path!r}: {e}") from None
    if ":" in spec:
        mod, fn = spec.split(":", 1)
        return getattr(importlib.import_module(mod), fn)
    raise InputError(f"unknown domain-word finder {spec!r}; use 'latin', 'file:PATH' or 'module:function'")


_HANGUL = "\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f"
_SPLITS = [
    re.compile(rf"(?<=[{_HANGUL}])(?=[A-Za-z0-9])"), re.compile(rf"(?<=[A-Za-z0-9])(?=[{_HANGUL}])"),
    re.compile(rf"(?<=[{_HANGUL}A-Za-z])(?=[,;:()\[\]<>!?~+=*\"])"),
    re.compile(rf"(?<=[,;:()\[\]<>!?~+=*\"])(?=[{_HANGUL}A-Za-z])"),
    # A full stop that ends a word (not a decimal point or an abbreviation inside a token).
    re.compile(rf"(?<=[{_HANGUL}A-Za-z])(?=\.(\s|$))"),
]


def preprocess_note(text: str) -> str:
    """Thesis 2.3.1: drop newlines and put blanks between languages and between words and symbols,
    so that an English word glued to Korean text or punctuation is still found as a word."""
    text = text.replace("\r", " ").replace("\n", " ")
    for pat in _SPLITS:
        text = pat.sub(" ", text)
    return re.sub(r"\s+", " ", text).strip()


def clip_words(text: str, max_words: int) -> str:
    """The text up to the end of its `max_words`-th whitespace-separated word.

    A tokenizer that splits on whitespace gives each word at least one token, so clipping a note to as many words
    as the tokenizer keeps tokens changes nothing it returns while bounding what it is given: a 1 MB note would
    otherwise be tokenized whole (with character offsets) only to keep its first 512 tokens."""
    end = 0
    for k, m in enumerate(_WORD.finditer(text), start=1):
        end = m.end()
        if k == max_words:
            return text[:end]
    return text


def knowledge_mask(offsets: np.ndarray, spans: Sequence[Span], max_words: int = 32) -> np.ndarray:
    """(tokens, 2) character offsets -> (tokens,) int32 word index (1..k, 0 = not a domain word).

    Only the first `max_words` domain words are kept. Special tokens (offset (0, 0)) are never part
    of a word. A word that the tokenizer truncated away has no tokens in this mask.
    """
    offsets = np.asarray(offsets)
    mask = np.zeros(len(offsets), np.int32)
    starts, ends = offsets[:, 0], offsets[:, 1]
    real = ends > starts
    for k, (ws, we) in enumerate(spans[:max_words], start=1):
        mask[real & (starts < we) & (ends > ws)] = k
    return mask


def encode(tokenizer, text: str, spans: Sequence[Span], max_length: int, max_words: int
           ) -> dict[str, np.ndarray]:
    """Tokenize one note (padded to max_length) with its knowledge mask under this tokenizer."""
    enc = tokenizer(text, max_length=max_length, truncation=True, padding="max_length",
                    return_offsets_mapping=True, return_token_type_ids=True)
    return {
        "input_ids": np.asarray(enc["input_ids"], np.int32),
        "attention_mask": np.asarray(enc["attention_mask"], np.int32),
        "token_type_ids": np.asarray(enc["token_type_ids"], np.int32),
        "word_ids": knowledge_mask(np.asarray(enc["offset_mapping"]).reshape(-1, 2), spans, max_words),
    }
