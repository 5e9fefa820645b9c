"""Packing token sequences into fixed-length rows for causal LM training (issue 26's distill_lm).

Sequences are laid end to end in their order; a row is closed when the next sequence does not fit, and a sequence
longer than a row is cut into row-length pieces (each its own segment). Every row carries `segment_ids`: 1, 2, ...
for its sequences, 0 for the padding at its end. The model keeps attention within a segment and restarts positions
at each (`kdjax.models.llama`: `segment_ids`); the losses drop each segment's last token, whose next token belongs to
another sequence (`kdjax.losses.token_kd.segment_mask`). Deterministic: the same sequences give the same rows.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np


def layout(lengths: Sequence[int], length: int) -> list[list[tuple[int, int, int]]]:
    """Where packing puts each sequence: per row, its pieces (sequence index, from, to) in order."""
    if length < 2:
        raise ValueError(f"rows of {length} tokens hold no next-token target; use 2 or more")
    rows: list[list[tuple[int, int, int]]] = []
    parts: list[tuple[int, int, int]] = []
    used = 0
    for n, size in enumerate(lengths):
        for start in range(0, size, length):
            piece = min(length, size - start)
            if used + piece > length:
                rows.append(parts)
                parts, used = [], 0
            parts.append((n, start, start + piece))
            used += piece
    if parts:
        rows.append(parts)
    return rows


def pack(sequences: Iterable[Sequence[int]], length: int,
         extras: Iterable[Mapping[str, np.ndarray]] | None = None,
         fill: Mapping[str, float] | None = None) -> dict[str, np.ndarray]:
    """{"input_ids", "segment_ids"}: (rows, length) int32 arrays of the packed sequences (empty ones skipped).

    `extras`: per sequence, arrays whose first axis runs over its tokens (e.g. a cached teacher's top-k per token);
    they are packed with the tokens into (rows, length, ...) arrays, padded with `fill[name]` (default 0)."""
    seqs = [[int(t) for t in sequence] for sequence in sequences]
    lengths = [len(x) for x in seqs]
    rows = layout(lengths, length)
    out = {"input_ids": np.zeros((len(rows), length), np.int32), "segment_ids": np.zeros((len(rows), length), np.int32)}
    for r, parts in enumerate(rows):
        at = 0
        for segment, (n, lo, hi) in enumerate(parts, start=1):
            out["input_ids"][r, at:at + hi - lo] = seqs[n][lo:hi]
            out["segment_ids"][r, at:at + hi - lo] = segment
            at += hi - lo
    if extras is None:
        return out
    extras = list(extras)
    if len(extras) != len(lengths):
        raise ValueError(f"{len(extras)} extras for {len(lengths)} sequences")
    for name in (extras[0] if extras else {}):
        first = np.asarray(extras[0][name])
        a = np.full((len(rows), length, *first.shape[1:]), (fill or {}).get(name, 0), first.dtype)
        for k, x in enumerate(extras):
            if len(x[name]) != lengths[k]:
                raise ValueError(f"sequence {k}: {name!r} has {len(x[name])} entries for {lengths[k]} tokens")
        for r, ps in enumerate(rows):
            at = 0
            for k, lo, hi in ps:
                a[r, at:at + hi - lo] = np.asarray(extras[k][name])[lo:hi]
                at += hi - lo
        out[name] = a
    return out
