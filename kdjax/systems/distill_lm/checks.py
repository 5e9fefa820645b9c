"""distill_lm's config checks: every problem named by its key before anything is read or compiled."""

from __future__ import annotations

import ml_collections

from kdjax.losses.token_kd import DIVERGENCES
from kdjax.systems.checks import Checks


def validate(cfg: ml_collections.ConfigDict, c: Checks) -> None:
    source = c.one_of("data.source", ("captions", "jsonl"))
    if source == "jsonl":
        c.path("data.file", "file", required=True, why="data.source='jsonl'")
    fractions = tuple(c.get("data.fractions") or ())
    if len(fractions) != 3 or any(not isinstance(f, (int, float)) or f <= 0 for f in fractions) or \
            abs(sum(fractions) - 1) > 1e-6:
        c.problem("data.fractions", f"three positive fractions (train, validation, test) summing to 1, got {fractions}")
    c.number("data.length", integer=True, ge=2)
    if c.get("teacher.checkpoint"):
        c.path("teacher.checkpoint", "any")
    if int(c.get("student.from_teacher_layers") or 0) and not c.get("teacher.checkpoint"):
        c.problem("student.from_teacher_layers", "the student takes a teacher checkpoint's first layers: set "
                  "teacher.checkpoint, or 0 for a random student")
    c.number("student.from_teacher_layers", integer=True, ge=0)
    c.number("kd.alpha", ge=0)
    c.one_of("kd.kind", DIVERGENCES)
    c.number("kd.beta", gt=0, lt=1)  # jsd's mixture weight
    c.number("kd.temperature", gt=0)
    c.number("kd.chunk_tokens", integer=True, ge=0)
    c.number("aot.vocab_size", integer=True, gt=0)
