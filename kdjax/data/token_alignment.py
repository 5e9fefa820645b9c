"""Two tokenizations of one text aligned by character offsets, for teacher/student pairs with different tokenizers
(issue 26; DSG-KD's domain-word spans, `kdjax.data.knowledge`, are the case where one side's spans are given).

Spans. Each token covers the characters of its offsets with surrounding whitespace trimmed (byte-level BPE puts the
space before a word into the word's token; WordPiece drops it); special and whitespace-only tokens cover nothing. A
*boundary* of a tokenization is a character position where one token ends and the next one starts (never inside a
character that byte-fallback split over several tokens). The aligned spans are the pieces of text between the
boundaries both tokenizations share: "unbelievable" is one span of WordPiece's "unbelievable" and BPE's "UN B EL I
EV ABLE"; "dog" is one span of one token on each side. `spans` numbers each token's span (1, 2, ...; 0: none).

Next-token distributions across vocabularies. Where the student's next token starts a span, the teacher's next
token starts it too: the student's position before that token and the teacher's position before the span's first
token (after any whitespace-only tokens) predict the same text. There the teacher's top-k tokens are mapped into the
student's vocabulary by their text (normalised as the student normalises, e.g. lower-cased and accents stripped for
an uncased BERT, whitespace trimmed), choosing among the student's word-initial pieces where the student's actual
next token is word-initial and among its continuation pieces ('##ing') where it is not; teacher tokens with no
student piece of that text are absent (their mass goes to the "rest" bucket of
`kdjax.losses.token_kd.sparse_token_kd`), and teacher tokens that map to one student piece (" Dog" and "dog" for an
uncased student) have their probabilities summed. An approximation, as every cross-vocabulary KD is: a teacher
token is compared with the student piece of the same text even where one continues further than the other.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def char_ranges(text: str, offsets: np.ndarray) -> np.ndarray:
    """(tokens, 2) character offsets -> the same with whitespace trimmed; (0, 0) for tokens covering no character
    (special tokens, whitespace-only tokens)."""
    out = np.zeros((len(offsets), 2), np.int64)
    for i, (s, e) in enumerate(np.asarray(offsets).reshape(-1, 2)):
        s, e = int(s), int(e)
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            out[i] = s, e
    return out


def _boundaries(ranges: np.ndarray) -> set[int]:
    """Character positions where one covering token ends and the next covering token starts at or after it."""
    real = ranges[ranges[:, 1] > ranges[:, 0]]
    out = set()
    for i, (_, e) in enumerate(real):
        if i + 1 == len(real) or real[i + 1, 0] >= e:
            out.add(int(e))
    return out


def spans(text: str, offsets_a: np.ndarray, offsets_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each token's aligned span (1, 2, ...; 0: it covers no character, or lies after the last boundary the two
    share, e.g. where one tokenization was truncated) for tokenization a and b of `text`."""
    ra, rb = char_ranges(text, offsets_a), char_ranges(text, offsets_b)
    shared = np.asarray(sorted(_boundaries(ra) & _boundaries(rb)), np.int64)

    def number(r: np.ndarray) -> np.ndarray:
        real = r[:, 1] > r[:, 0]
        # a token's span: 1 + the shared boundaries at or before its start; kept only if a shared boundary closes it
        k = np.searchsorted(shared, r[:, 0], side="right") + 1
        closed = np.searchsorted(shared, r[:, 1], side="left") < len(shared)
        return np.where(real & closed, k, 0).astype(np.int32)

    return number(ra), number(rb)


def span_starts(span: np.ndarray) -> dict[int, int]:
    """{span: the position of its first token}."""
    out: dict[int, int] = {}
    for i, k in enumerate(np.asarray(span).tolist()):
        if k and k not in out:
            out[k] = i
    return out


def predicting_pairs(span_t: np.ndarray, span_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(student positions, teacher positions): for each span with a token before it on both sides, the position
    before its first token in each tokenization (these predict the same text: the span's beginning)."""
    st, ss = span_starts(span_t), span_starts(span_s)
    keys = [k for k in sorted(ss) if k in st and ss[k] > 0 and st[k] > 0]
    return (np.asarray([ss[k] - 1 for k in keys], np.int64), np.asarray([st[k] - 1 for k in keys], np.int64))


# --- vocabularies -------------------------------------------------------------------------------------------------

def _model(tok):
    return tok.backend_tokenizer.model


def _normalise(tok, text: str) -> str:
    norm = tok.backend_tokenizer.normalizer
    return (norm.normalize_str(text) if norm is not None else text).strip()


def pieces(tok) -> list[tuple[str, bool] | None]:
    """Per vocabulary id: (its text, normalised as `tok` normalises and trimmed; whether it starts a word), or None
    for special tokens and pieces with no text. Word start: WordPiece's pieces without its continuing prefix, every
    word of a word-level vocabulary, a byte-level BPE / SentencePiece piece with a leading space ('Ġ', '▁')."""
    model = _model(tok)
    kind = type(model).__name__
    prefix = getattr(model, "continuing_subword_prefix", None) if kind == "WordPiece" else None
    special = set(tok.all_special_ids)
    toks = tok.convert_ids_to_tokens(list(range(len(tok))))
    out: list[tuple[str, bool] | None] = []
    for i, t in enumerate(toks):
        if i in special or t is None:
            out.append(None)
            continue
        if kind == "WordPiece":
            cont = bool(prefix) and t.startswith(prefix)
            text, start = (t[len(prefix):] if cont else t), not cont
        elif kind == "WordLevel":
            text, start = t, True
        else:
            raw = tok.convert_tokens_to_string([t])
            text, start = raw, t[:1] in ("Ġ", "▁") or raw[:1].isspace()
        text = text.strip()
        out.append((text, start) if text and "\ufffd" not in text else None)
    return out


def vocab_map(teacher_tok, student_tok) -> np.ndarray:
    """(2, teacher vocabulary) int32: the student id of each teacher token's text among the student's continuation
    pieces (row 0) and its word-initial pieces (row 1); -1 where the student has no piece of that text. Lowest id
    wins where the student has several."""
    by_key: dict[tuple[str, bool], int] = {}
    for i, p in enumerate(pieces(student_tok)):
        if p is not None:
            by_key.setdefault(p, i)
    out = np.full((2, len(teacher_tok)), -1, np.int32)
    for i, p in enumerate(pieces(teacher_tok)):
        if p is None:
            continue
        text = _normalise(student_tok, p[0])
        for start in (0, 1):
            out[start, i] = by_key.get((text, bool(start)), -1)
    return out


def merge_duplicates(logprobs: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., k) log-probabilities and mapped ids (-1 absent): where ids repeat within a row, the first keeps the
    summed probability and the others become absent (-1, log-probability 0 unused)."""
    lp = np.asarray(logprobs, np.float32)
    ids = np.asarray(ids, np.int32)
    k = ids.shape[-1]
    same = (ids[..., :, None] == ids[..., None, :]) & (ids[..., :, None] >= 0)
    earlier = np.tril(np.ones((k, k), bool), -1)  # [i, j]: j before i
    first = ~np.any(same & earlier, -1)
    keep = first & (ids >= 0)
    total = np.sum(np.where(same, np.exp(lp[..., None, :].astype(np.float64)), 0.0), -1)
    summed = np.log(np.where(keep, total, 1.0))
    return np.where(keep, summed, 0.0).astype(np.float32), np.where(keep, ids, -1).astype(np.int32)


def student_topk(text: str, teacher_offsets: np.ndarray, student_offsets: np.ndarray, student_ids: Sequence[int],
                 teacher_logprobs: np.ndarray, teacher_ids: np.ndarray, vmap: np.ndarray, word_start: np.ndarray,
                 teacher_rest: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The teacher's top-k over its own tokens of `text` ((teacher tokens, k) log-probabilities and ids, -1 absent;
    `teacher_rest` (teacher tokens,) the log-mass outside them), moved to the student's tokens: {"topk_logprobs"
    (student tokens, k) float32, "topk_ids" int32 (student ids, -1 absent), "topk_rest" (student tokens,) float32
    (the teacher's rest plus what no student piece received), "topk_mask" (student tokens,) float32, 1 where the
    student's next token starts an aligned span}. `vmap`: `vocab_map`; `word_start`: per student id, 1 if its piece
    starts a word (`word_starts`)."""
    span_t, span_s = spans(text, teacher_offsets, student_offsets)
    pos_s, pos_t = predicting_pairs(span_t, span_s)
    n, k = len(student_ids), teacher_ids.shape[-1]
    out = {"topk_logprobs": np.zeros((n, k), np.float32), "topk_ids": np.full((n, k), -1, np.int32),
           "topk_rest": np.zeros((n,), np.float32), "topk_mask": np.zeros((n,), np.float32)}
    if len(pos_s):
        t_ids = np.asarray(teacher_ids)[pos_t]
        nxt = np.asarray(student_ids, np.int64)[pos_s + 1]
        mapped = np.where(t_ids >= 0, vmap[np.asarray(word_start)[nxt].astype(np.int64)[:, None],
                                           np.maximum(t_ids, 0)], -1)
        lp = np.asarray(teacher_logprobs, np.float64)[pos_t]
        out["topk_logprobs"][pos_s], out["topk_ids"][pos_s] = merge_duplicates(lp, mapped)
        rest = (np.exp(np.asarray(teacher_rest, np.float64)[pos_t]) if teacher_rest is not None
                else np.clip(1.0 - np.sum(np.where(t_ids >= 0, np.exp(lp), 0.0), -1), 0.0, 1.0))
        lost = np.sum(np.where((t_ids >= 0) & (mapped < 0), np.exp(lp), 0.0), -1)
        out["topk_rest"][pos_s] = np.log(np.maximum(rest + lost, np.finfo(np.float32).tiny))
        out["topk_mask"][pos_s] = 1.0
    return out


def word_starts(tok) -> np.ndarray:
    """Per vocabulary id: 1 if its piece starts a word (`pieces`), else 0 (specials too)."""
    return np.asarray([int(bool(p and p[1])) for p in pieces(tok)], np.int8)
