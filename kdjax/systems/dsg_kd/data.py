"""DSG-KD's notes: the splits (synthetic or users' files), both sides' tokenizers, and each note encoded for
student and teacher (ids, masks, and the knowledge mask of its domain words)."""

from __future__ import annotations

import functools
import logging

import ml_collections
import numpy as np

from kdjax import assets, paths
from kdjax.data import knowledge, synthetic_notes, tokenizers
from kdjax.data import notes as notes_lib
from kdjax.errors import InputError


def load_splits(cfg: ml_collections.ConfigDict) -> tuple[dict[str, list[synthetic_notes.Note]], list[str]]:
    """train/dev/test notes and the bad rows skipped (empty unless on_bad_input='skip')."""
    d = cfg.data
    if d.source == "synthetic":
        s = d.synthetic
        return {"train": synthetic_notes.generate_notes(s.num_train, s.seed),
                "dev": synthetic_notes.generate_notes(s.num_dev, s.seed + 1),
                "test": synthetic_notes.generate_notes(s.num_test, s.seed + 2)}, []
    if d.source != "files":
        raise InputError(f"data.source must be 'synthetic' or 'files', got {d.source!r}")
    bad = notes_lib.BadRows()
    read = functools.partial(notes_lib.load_notes, text_column=d.text_column, label_column=d.label_column,
                             labels=tuple(d.labels), on_bad=d.on_bad_input,
                             max_note_bytes=int(d.get("max_note_bytes", 1 << 20)), bad=bad)
    if d.train_file and not d.split_ratios:
        missing = [k for k in ("train_file", "dev_file", "test_file") if not d[k]]
        if missing:
            raise InputError(f"data: set {missing} or data.split_ratios with a single data.train_file")
        splits = {s: read(d[f"{s}_file"])[0] for s in ("train", "dev", "test")}
    elif d.train_file:
        notes, _ = read(d.train_file)
        tr, dv, te = notes_lib.split_notes(notes, tuple(d.split_ratios), cfg.seed)
        splits = {"train": tr, "dev": dv, "test": te}
    else:
        raise InputError("data.source='files' needs data.train_file (a .csv or .jsonl of notes)")
    for name, rows in splits.items():
        if not rows:
            raise InputError(f"data: the {name} split is empty")
    if bad.rows:
        logging.warning("skipped %d bad rows, e.g. %s", len(bad.rows), bad.rows[0])
    return splits, bad.rows


def uses_unlabelled(cfg: ml_collections.ConfigDict) -> bool:
    u = cfg.data.get("unlabelled", {})
    return bool(u.get("file", "")) or int(u.get("num_synthetic", 0)) > 0


def load_unlabelled(cfg: ml_collections.ConfigDict) -> tuple[list[synthetic_notes.Note], list[str]]:
    """The notes without labels the KD terms also read (`data.unlabelled`; label -1) and the bad rows skipped."""
    u, d = cfg.data.unlabelled, cfg.data
    if u.file:
        bad = notes_lib.BadRows()
        notes, _ = notes_lib.load_notes(u.file, text_column=d.text_column, label_column=None,
                                        on_bad=d.on_bad_input, max_note_bytes=int(d.get("max_note_bytes", 1 << 20)),
                                        bad=bad)
        if not notes:
            raise InputError(f"data.unlabelled.file: {u.file} holds no usable note")
        return notes, bad.rows
    # generated notes whose labels are dropped: the same generator as the labelled splits, another seed
    return [synthetic_notes.Note(n.text, -1) for n in synthetic_notes.generate_notes(int(u.num_synthetic),
                                                                                      int(u.seed))], []


def tokenizer(side: ml_collections.ConfigDict, name: str, train_texts: list[str], workdir: str):
    spec = side.tokenizer or side.hf_dir
    if not spec:
        raise InputError(f"{name}.tokenizer: set a tokenizer directory, 'wordpiece:N', or {name}.hf_dir")
    if spec.startswith("wordpiece:"):
        return tokenizers.train_wordpiece(train_texts, int(spec.split(":")[1]),
                                          paths.join(workdir, "tokenizers", name))
    return tokenizers.load(assets.resolve(spec))


def trained_tokenizer(side: ml_collections.ConfigDict, name: str, workdir: str):
    """The tokenizer a finished run in `workdir` used for `side` (a WordPiece vocabulary it trained is read from
    the workdir, never trained again)."""
    spec = side.tokenizer or side.hf_dir
    if spec.startswith("wordpiece:"):
        path = paths.join(workdir, "tokenizers", name)
        if not paths.isfile(paths.join(path, "tokenizer.json")):
            raise FileNotFoundError(f"{path}: no tokenizer (was {workdir} trained?)")
        return tokenizers.load(path)
    return tokenizer(side, name, [], workdir)


def student_tokenizer(cfg: ml_collections.ConfigDict, train_texts: list[str], workdir: str):
    """The student's tokenizer: its own, or with `student.init_from` the one the initialising run read with (a
    WordPiece vocabulary it trained is copied into this workdir, never trained again: its rows are the
    embeddings this student starts from)."""
    s, src = cfg.student, cfg.student.get("init_from", "")
    if src and (s.tokenizer or s.hf_dir).startswith("wordpiece:"):
        return tokenizers.copy(paths.join(src, "tokenizers", "student"), paths.join(workdir, "tokenizers", "student"))
    return tokenizer(s, "student", train_texts, workdir)


def teacher_tokenizer(cfg: ml_collections.ConfigDict, train_texts: list[str], workdir: str):
    """The teacher's tokenizer: its own, or with `teacher.workdir` the one that run's classifier read with."""
    t = cfg.teacher
    if t.workdir:
        from kdjax.train.restore import workdir_config

        return trained_tokenizer(workdir_config(t.workdir).student, "student", t.workdir)
    return tokenizer(t, "teacher", train_texts, workdir)


def encode_fn(tok_s, tok_t, finder, cfg):
    d = cfg.data

    def encode(note: synthetic_notes.Note) -> dict[str, np.ndarray]:
        # both sides keep at most this many tokens, so no more words can matter (bounded work per note)
        text = knowledge.clip_words(note.text, max(d.student_max_length, d.teacher_max_length))
        text = knowledge.preprocess_note(text) if d.preprocess else text
        spans = finder(text)
        s = knowledge.encode(tok_s, text, spans, d.student_max_length, d.max_words)
        t = knowledge.encode(tok_t, text, spans, d.teacher_max_length, d.max_words)
        out = {f"s_{k}": v for k, v in s.items()}
        out.update({f"t_{k}": v for k, v in t.items()})
        out["label"] = np.int32(note.label)
        return out

    return encode
