"""distill_lm's config checks: every problem named by its key before anything is read or compiled."""

from __future__ import annotations

import re

import ml_collections

from kdjax.losses.token_kd import DIVERGENCES
from kdjax.systems.checks import Checks


def validate(cfg: ml_collections.ConfigDict, c: Checks) -> None:
    source = c.one_of("data.source", ("captions", "docstrings", "jsonl"))
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
    source = c.one_of("kd.source", ("online", "topk", "sampled"))
    cached = source in ("topk", "sampled")
    c.number("kd.top_k", integer=True, gt=0)
    head = c.number("kd.sampled_head", integer=True, ge=0, default=0)
    head = head if isinstance(head, int) else 0  # anything else is named above
    if head and source != "sampled":
        c.problem("kd.sampled_head", "the exactly kept head of a cache of draws: set kd.source='sampled', or 0")
    elif head and isinstance(c.get("kd.top_k"), int) and head >= c.get("kd.top_k"):
        c.problem("kd.sampled_head", f"{head} of kd.top_k={c.get('kd.top_k')} entries leaves no draws: it must be "
                  "below kd.top_k (kd.source='topk' keeps the top-k exactly)")
    if source == "sampled" and (not c.get("kd.rest") or c.get("kd.kind") != "forward_kl"
                                or float(c.get("kd.temperature") or 1.0) != 1.0):
        c.problem("kd.source", "'sampled' estimates the forward KL's gradient from draws at temperature 1: it needs "
                  "kd.kind='forward_kl', kd.rest=True and kd.temperature=1")
    if cached:
        c.number("teacher.cache.batch_size", integer=True, gt=0)
        if c.get("kd.rest") and float(c.get("kd.temperature") or 1.0) != 1.0:
            c.problem("kd.rest", "the 'rest' bucket needs kd.temperature=1 (the cached log-probabilities fix the "
                      "teacher's temperature); set kd.rest=False to renormalise over the top-k")
    if float(c.get("kd.hidden.weight") or 0) > 0:
        c.number("kd.hidden.weight", ge=0)
        if cached or c.get("student.tokenizer"):
            c.problem("kd.hidden.weight", "hidden-state KD needs the teacher in the step on the student's tokens: "
                      "kd.source='online' and no student.tokenizer")
        spec = str(c.get("kd.hidden.layer_map") or "")
        if spec != "uniform" and not re.fullmatch(r"\s*\d+:\d+\s*(,\s*\d+:\d+\s*)*", spec):
            c.problem("kd.hidden.layer_map", f"'uniform' or pairs 's:t,s:t,...' of layer indices, got {spec!r}")
    if float(c.get("kd.on_policy.fraction") or 0) > 0:
        c.number("kd.on_policy.fraction", ge=0, le=1)
        c.number("kd.on_policy.prompt_tokens", integer=True, gt=0)
        c.number("kd.on_policy.max_new_tokens", integer=True, gt=0)
        c.number("kd.on_policy.temperature", gt=0)
        if cached or c.get("student.tokenizer"):
            c.problem("kd.on_policy.fraction", "on-policy KD needs the teacher in the step to score the student's "
                      "samples: kd.source='online' and no student.tokenizer")
        if int(c.get("kd.on_policy.prompt_tokens") or 0) > int(c.get("data.length") or 0):
            c.problem("kd.on_policy.prompt_tokens", "prompts are cut from packed rows: at most data.length tokens")
    if c.get("kd.sequence.enabled"):
        c.number("kd.sequence.prompt_tokens", integer=True, gt=0)
        c.number("kd.sequence.max_new_tokens", integer=True, gt=0)
        c.number("kd.sequence.num_beams", integer=True, gt=0)
        c.number("teacher.cache.batch_size", integer=True, gt=0)
    stok = str(c.get("student.tokenizer") or "")
    if stok == "wordpiece":
        c.number("student.vocab_size", integer=True, gt=5)
    elif stok:
        c.path("student.tokenizer", "dir")
    if stok and not cached and float(c.get("kd.alpha") or 0) > 0:
        c.problem("student.tokenizer", "a student with its own tokenizer learns from the teacher's top-k moved to its "
                  "tokens: set kd.source='topk'")
    c.number("aot.vocab_size", integer=True, gt=0)
