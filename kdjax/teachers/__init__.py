"""The teacher interface: a teacher is a source of per-example outputs, of one of three kinds.

    online    a frozen model inside the jitted step (`Task.teacher`): never differentiated, updated or saved
    cached    its outputs computed once per example into array_record shards (`kdjax.teachers.cache`):
              resumable, one writer per host, read back by the input pipeline, sized and timed in the logs;
              the step runs only the student
    imported  another framework's outputs, converted from files into the same cache (e.g. EffAAC's
              `python -m kdjax.data.teacher_cache --import`)

A decoder teacher's cache for token-level KD holds its top-k next-token log-probabilities per token
(`kdjax.teachers.topk`).

Each system says which kinds it offers and what the outputs are (its batch description names the fields a
cached teacher adds); `describe` is what a run's report records of its teacher.
"""

from __future__ import annotations

from typing import Any

ONLINE, CACHED, IMPORTED = "online", "cached", "imported"
KINDS = (ONLINE, CACHED, IMPORTED)


def describe(kind: str, cache: Any = None, stats: dict | None = None, **extra: Any) -> dict[str, Any]:
    """The report's record of a teacher: its kind and, for a cache, where it is, how big and what it took."""
    if kind not in KINDS:
        raise ValueError(f"teacher kind {kind!r} is not one of {KINDS}")
    out: dict[str, Any] = {"kind": kind, **extra}
    if cache is not None:
        out.update(cache=cache.dir, examples=len(cache), bytes=int(cache.bytes),
                   bytes_per_example=round(cache.bytes / max(len(cache), 1)))
    if stats:
        out["written"] = {k: v for k, v in stats.items() if k not in ("dir",)}
    return out
