"""Users' labelled notes from CSV or JSONL files, with row-level validation.

Bad rows (empty text, a label outside the label set, bytes that are not UTF-8, malformed JSON or CSV, missing
columns, a note longer than `max_note_bytes`) raise an error naming the file and line, or with on_bad='skip' are
skipped, counted and listed in the run report. Lines are read in bounded memory (`kdjax.data.lines`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from typing import Sequence

import numpy as np

from kdjax import paths
from kdjax.data import lines
from kdjax.data.synthetic_notes import Note
from kdjax.errors import InputError


class BadInputError(InputError):
    """A bad row or file of notes."""


@dataclasses.dataclass
class BadRows:
    rows: list[str] = dataclasses.field(default_factory=list)  # "file:line: reason"

    def add(self, where: str, reason: str, on_bad: str) -> None:
        msg = f"{where}: {reason}"
        if on_bad == "error":
            raise BadInputError(msg + " (set data.on_bad_input='skip' to skip such rows)")
        self.rows.append(msg)


def _label(raw, labels: Sequence[str]) -> int | None:
    s = str(raw).strip()
    if s in labels:
        return list(labels).index(s)
    return None


def _lines(path: str, bad: BadRows, on_bad: str, max_note_bytes: int) -> list[tuple[int, str]]:
    """(line number, line) for each line that is UTF-8 and within the size limit; the others are reported with their
    number. A line may hold a note escaped in JSON (up to 6 bytes a character) and its other columns."""
    out = []
    for n, text, problem in lines.read_lines(path, 2 * max_note_bytes + (64 << 10),
                                             limit_name="raise data.max_note_bytes"):
        if problem is not None:
            bad.add(f"{path}:{n}", problem, on_bad)
        else:
            out.append((n, text + "\n"))
    return out


def load_notes(path: str, *, text_column: str = "text", label_column: str | None = "label",
               labels: Sequence[str] = ("0", "1"), on_bad: str = "error", max_note_bytes: int = 1 << 20,
               bad: BadRows | None = None) -> tuple[list[Note], BadRows]:
    """Read a .csv (header row) or .jsonl file of notes. Labels are matched as strings against
    `labels` and returned as indices; a note longer than `max_note_bytes` (UTF-8) is a bad row.
    `label_column=None`: unlabelled notes (label -1; a label column, if any, is not read)."""
    if on_bad not in ("error", "skip"):
        raise InputError(f"data.on_bad_input must be 'error' or 'skip', got {on_bad!r}")
    if not paths.isfile(path):
        raise FileNotFoundError(f"notes file not found: {path}")
    bad = bad if bad is not None else BadRows()
    notes: list[Note] = []
    rows = _lines(path, bad, on_bad, max_note_bytes)
    add = lambda n, text, label: _add(notes, bad, f"{path}:{n}", text, label, labels if label_column else None,
                                      on_bad, max_note_bytes)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".csv":
        numbers = [n for n, _ in rows]
        reader = csv.DictReader(io.StringIO("".join(line for _, line in rows)))
        previous = csv.field_size_limit(max(csv.field_size_limit(), 2 * max_note_bytes + (64 << 10)))
        try:
            missing = {text_column, label_column} - {None} - set(reader.fieldnames or [])
            if missing:
                raise BadInputError(f"{path}: missing columns {sorted(missing)} (header: {reader.fieldnames})")
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as e:  # a quoted field running past the limit over several lines
                    bad.add(f"{path}:{numbers[min(reader.line_num, len(numbers)) - 1]}", f"malformed CSV ({e})",
                            on_bad)
                    continue
                # csv may span several physical lines per record; map back to the file's line numbers.
                add(numbers[min(reader.line_num, len(numbers)) - 1], row.get(text_column),
                    row.get(label_column) if label_column else None)
        finally:
            csv.field_size_limit(previous)
    elif ext in (".jsonl", ".json"):
        for n, line in rows:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                bad.add(f"{path}:{n}", f"invalid JSON ({e.msg})", on_bad)
                continue
            if not isinstance(row, dict):
                bad.add(f"{path}:{n}", "not a JSON object", on_bad)
                continue
            add(n, row.get(text_column), row.get(label_column) if label_column else None)
    else:
        raise BadInputError(f"{path}: unsupported notes format {ext!r}; use .csv or .jsonl")
    return notes, bad


def _add(notes, bad, where, text, raw_label, labels, on_bad, max_note_bytes) -> None:
    if text is None or not str(text).strip():
        bad.add(where, "empty text", on_bad)
        return
    size = len(str(text).encode("utf-8"))
    if size > max_note_bytes:
        bad.add(where, f"note of {size} bytes is longer than data.max_note_bytes={max_note_bytes}", on_bad)
        return
    if labels is None:  # unlabelled notes
        notes.append(Note(str(text), -1, where))
        return
    if raw_label is None:
        bad.add(where, "missing label", on_bad)
        return
    label = _label(raw_label, labels)
    if label is None:
        bad.add(where, f"label {raw_label!r} is not in the label set {list(labels)}", on_bad)
        return
    notes.append(Note(str(text), label, where))


def split_notes(notes: list[Note], ratios: Sequence[float], seed: int) -> list[list[Note]]:
    """Deterministic shuffled split by ratios (e.g. (0.8, 0.1, 0.1))."""
    if abs(sum(ratios) - 1.0) > 1e-6:
        raise InputError(f"split ratios must sum to 1, got {list(ratios)}")
    order = np.random.default_rng(seed).permutation(len(notes))
    bounds = np.cumsum([0] + [int(round(r * len(notes))) for r in ratios])
    bounds[-1] = len(notes)
    return [[notes[i] for i in order[a:b]] for a, b in zip(bounds[:-1], bounds[1:])]
