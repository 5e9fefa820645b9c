"""Packing token sequences into fixed-length rows for causal LM training (issue 26's distill_lm).

Sequences are laid end to end in their order; a row is closed when the next sequence does not fit, and a sequence
longer than a row is cut into row-length pieces (each its own segment). Every row carries `segment_ids`: 1, 2, ...
for its sequences, 0 for the padding at its end. The model keeps attention within a segment and restarts positions
at each (`kdjax.models.llama`: `segment_ids`); the losses drop each segment's last token, whose next token belongs to
another sequence (`kdjax.losses.token_kd.segment_mask`). Deterministic: the same sequences give the same rows.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np


def pack(sequences: Iterable[Sequence[int]], length: int) -> dict[str, np.ndarray]:
    """{"input_ids", "segment_ids"}: (rows, length) int32 arrays of the packed sequences (empty ones skipped)."""
    if length < 2:
        raise ValueError(f"rows of {length} tokens hold no next-token target; use 2 or more")
    rows: list[tuple[list[int], list[int]]] = []
    ids: list[int] = []
    seg: list[int] = []
    for sequence in sequences:
        s = [int(t) for t in sequence]
        for start in range(0, len(s), length):
            piece = s[start:start + length]
            if len(ids) + len(piece) > length:
                rows.append((ids, seg))
                ids, seg = [], []
            seg += [(seg[-1] if seg else 0) + 1] * len(piece)
            ids += piece
    if ids:
        rows.append((ids, seg))
    out = {"input_ids": np.zeros((len(rows), length), np.int32), "segment_ids": np.zeros((len(rows), length), np.int32)}
    for r, (i, s) in enumerate(rows):
        out["input_ids"][r, :len(i)], out["segment_ids"][r, :len(s)] = i, s
    return out
