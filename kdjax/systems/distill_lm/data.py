"""distill_lm's text: documents, their split, the shared tokenizer, and packed rows per split."""

from __future__ import annotations

import ml_collections
import numpy as np

from kdjax import assets, paths
from kdjax.data import caption_corpus, docstring_corpus, jsonl, tokenizers
from kdjax.data.packing import pack
from kdjax.errors import InputError

SPLITS = ("train", "validation", "test")


def documents(d: ml_collections.ConfigDict) -> list[str]:
    if d.source == "captions":
        return caption_corpus.texts()
    if d.source == "docstrings":
        return docstring_corpus.texts(int(d.min_words))
    if d.source == "jsonl":
        out = []
        for n, row in jsonl.read_rows(d.file, (d.text_key,)):
            if not isinstance(row[d.text_key], str):
                raise InputError(f"{d.file}:{n}: {d.text_key!r} is not text")
            out.append(row[d.text_key])
        return out
    raise InputError(f"data.source must be 'captions', 'docstrings' or 'jsonl', got {d.source!r}")


def describe(d: ml_collections.ConfigDict, docs: list[str]) -> dict:
    """What a report records of the corpus: its source, size and sha256 (and the Python, whose standard library the
    docstrings corpus is)."""
    import hashlib
    import sys

    out = {"source": d.source, "documents": len(docs), "words": sum(len(t.split()) for t in docs),
           "sha256": hashlib.sha256("\x00".join(docs).encode("utf-8")).hexdigest()}
    if d.source == "docstrings":
        out["python"] = sys.version.split()[0]
    return out


def split_seed(cfg: ml_collections.ConfigDict) -> int:
    """data.split_seed, or the run's seed when it is negative."""
    s = int(cfg.data.get("split_seed", -1))
    return int(cfg.seed) if s < 0 else s


def split(docs: list[str], fractions, seed: int) -> dict[str, list[str]]:
    """The documents in a seeded order, cut by `fractions` (train, validation, test)."""
    order = np.random.default_rng(seed).permutation(len(docs))
    cuts = np.cumsum([int(round(f * len(docs))) for f in fractions[:2]])
    parts = np.split(order, cuts)
    return {name: [docs[i] for i in part] for name, part in zip(SPLITS, parts)}


def tokenizer(cfg: ml_collections.ConfigDict, train_texts: list[str] | None, workdir: str):
    """The teacher's tokenizer (the student's too unless `student.tokenizer` is set): `tokenizer` if set, the teacher
    checkpoint's, else a word-level vocabulary of the training texts kept in the workdir (resuming and evaluating
    reuse it)."""
    if cfg.tokenizer:
        return tokenizers.load(assets.resolve(cfg.tokenizer))
    if cfg.teacher.checkpoint:
        return tokenizers.load(assets.model_dir(cfg.teacher.checkpoint))
    out = paths.join(workdir, "tokenizer")
    if train_texts is None and not paths.isfile(paths.join(out, "tokenizer.json")):
        raise FileNotFoundError(f"{out}: no tokenizer (train this workdir first)")
    return tokenizers.train_word_level(train_texts or [], out, lowercase=False)


def student_tokenizer(cfg: ml_collections.ConfigDict, train_texts: list[str] | None, workdir: str, teacher_tok=None):
    """The student's tokenizer: the teacher's (`student.tokenizer` empty), a WordPiece vocabulary of
    `student.vocab_size` pieces built from the training texts and kept in the workdir ('wordpiece'), or an HF
    tokenizer directory."""
    spec = str(cfg.student.tokenizer)
    if not spec:
        return teacher_tok if teacher_tok is not None else tokenizer(cfg, train_texts, workdir)
    if spec == "wordpiece":
        out = paths.join(workdir, "student_tokenizer")
        if train_texts is None and not paths.isfile(paths.join(out, "tokenizer.json")):
            raise FileNotFoundError(f"{out}: no student tokenizer (train this workdir first)")
        return tokenizers.train_wordpiece(train_texts or [], int(cfg.student.vocab_size), out)
    return tokenizers.load(assets.resolve(spec))


def encode(tok, texts: list[str]) -> list[list[int]]:
    """Each document as the tokenizer's ids between its BOS and EOS (where it has them)."""
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
    return [bos + tok(t, add_special_tokens=False)["input_ids"] + eos for t in texts]


def rows(tok, texts: list[str], length: int, extras: list[dict[str, np.ndarray]] | None = None,
         fill: dict[str, float] | None = None) -> list[dict[str, np.ndarray]]:
    """Packed rows of the documents; `extras`: per document, per-token arrays packed with its tokens."""
    packed = pack(encode(tok, texts), length, extras, fill)
    return [{k: v[r] for k, v in packed.items()} for r in range(len(packed["input_ids"]))]


def target_tokens(rows: list[dict[str, np.ndarray]]) -> int:
    """How many positions of the rows have a next-token target (in the same sequence)."""
    total = 0
    for r in rows:
        s = r["segment_ids"]
        total += int(np.sum((s[:-1] > 0) & (s[1:] == s[:-1])))
    return total
