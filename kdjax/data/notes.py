"""Users' labelled notes from CSV or JSONL files, with row-level validation.

Bad rows (empty text, a label outside the label set, bytes that are not UTF-8, malformed JSON, missing
columns) raise an error naming the file and line, or with on_bad='skip' are skipped, counted and listed
in the run report.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from typing import Sequence

import numpy as np

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


def _lines(path: str, bad: BadRows, on_bad: str) -> list[tuple[int, str]]:
    """(line number, decoded line); undecodable lines are reported with their number."""
    out = []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                out.append((n, raw.decode("utf-8-sig" if n == 1 else "utf-8")))
            except UnicodeDecodeError as e:
                bad.add(f"{path}:{n}", f"not UTF-8 ({e.reason} at byte {e.start})", on_bad)
    return out


def load_notes(path: str, *, text_column: str = "text", label_column: str = "label",
               labels: Sequence[str] = ("0", "1"), on_bad: str = "error",
               bad: BadRows | None = None) -> tuple[list[Note], BadRows]:
    """Read a .csv (header row) or .jsonl file of notes. Labels are matched as strings against
    `labels` and returned as indices."""
    if on_bad not in ("error", "skip"):
        raise InputError(f"data.on_bad_input must be 'error' or 'skip', got {on_bad!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"notes file not found: {path}")
    bad = bad if bad is not None else BadRows()
    notes: list[Note] = []
    lines = _lines(path, bad, on_bad)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".csv":
        text = "".join(line for _, line in lines)
        numbers = [n for n, _ in lines]
        reader = csv.DictReader(io.StringIO(text))
        missing = {text_column, label_column} - set(reader.fieldnames or [])
        if missing:
            raise BadInputError(f"{path}: missing columns {sorted(missing)} (header: {reader.fieldnames})")
        for row in reader:
            # csv may span several physical lines per record; map back to the file's line numbers.
            n = numbers[min(reader.line_num, len(numbers)) - 1]
            _add(notes, bad, f"{path}:{n}", row.get(text_column), row.get(label_column), labels, on_bad)
    elif ext in (".jsonl", ".json"):
        for n, line in lines:
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
            _add(notes, bad, f"{path}:{n}", row.get(text_column), row.get(label_column), labels, on_bad)
    else:
        raise BadInputError(f"{path}: unsupported notes format {ext!r}; use .csv or .jsonl")
    return notes, bad


def _add(notes, bad, where, text, raw_label, labels, on_bad) -> None:
    if text is None or not str(text).strip():
        bad.add(where, "empty text", on_bad)
        return
    if raw_label is None:
        bad.add(where, "missing label", on_bad)
        return
    label = _label(raw_label, labels)
    if label is None:
        bad.add(where, f"label {raw_label!r} is not in the label set {list(labels)}", on_bad)
        return
    notes.append(Note(str(text), label))


def split_notes(notes: list[Note], ratios: Sequence[float], seed: int) -> list[list[Note]]:
    """Deterministic shuffled split by ratios (e.g. (0.8, 0.1, 0.1))."""
    if abs(sum(ratios) - 1.0) > 1e-6:
        raise InputError(f"split ratios must sum to 1, got {list(ratios)}")
    order = np.random.default_rng(seed).permutation(len(notes))
    bounds = np.cumsum([0] + [int(round(r * len(notes))) for r in ratios])
    bounds[-1] = len(notes)
    return [[notes[i] for i in order[a:b]] for a, b in zip(bounds[:-1], bounds[1:])]
