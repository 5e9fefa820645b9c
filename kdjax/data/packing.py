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


def pack(sequences: Iterable[Sequence[int]], length: int,
         extras: Iterable[Mapping[str, np.ndarray]] | None = None,
         fill: Mapping[str, float] | None = None) -> dict[str, np.ndarray]:
    """{"input_ids", "segment_ids"}: (rows, length) int32 arrays of the packed sequences (empty ones skipped).

    `extras`: per sequence, arrays whose first axis runs over its tokens (e.g. a cached teacher's top-k per token);
    they are packed with the tokens into (rows, length, ...) arrays, padded with `fill[name]` (default 0)."""
    if length < 2:
        raise ValueError(f"rows of {length} tokens hold no next-token target; use 2 or more")
    rows: list[tuple[list[int], list[int], list[tuple[int, int, int]]]] = []  # ids, segments, (sequence, from, to)
    ids: list[int] = []
    seg: list[int] = []
    parts: list[tuple[int, int, int]] = []
    lengths: list[int] = []
    for n, sequence in enumerate(sequences):
        s = [int(t) for t in sequence]
        lengths.append(len(s))
        for start in range(0, len(s), length):
            piece = s[start:start + length]
            if len(ids) + len(piece) > length:
                rows.append((ids, seg, parts))
                ids, seg, parts = [], [], []
            seg += [(seg[-1] if seg else 0) + 1] * len(piece)
            ids += piece
            parts.append((n, start, start + len(piece)))
    if ids:
        rows.append((ids, seg, parts))
    out = {"input_ids": np.zeros((len(rows), length), np.int32), "segment_ids": np.zeros((len(rows), length), np.int32)}
    for r, (i, s, _) in enumerate(rows):
        out["input_ids"][r, :len(i)], out["segment_ids"][r, :len(s)] = i, s
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
        for r, (_, _, ps) in enumerate(rows):
            at = 0
            for k, lo, hi in ps:
                a[r, at:at + hi - lo] = np.asarray(extras[k][name])[lo:hi]
                at += hi - lo
        out[name] = a
    return out
