"""A captioning teacher's per-clip outputs for EffAAC, stored once: clip id, clip embedding, beam-search caption.

The store is the teacher interface's cache (kdjax.teachers.cache: array_record shards, one writer per host,
resumable) with two fields: "embedding" float32 (d,) and "caption" str. Caches of kdjax's first format
(meta.json, e.g. the shipped EffAAC smoke teacher) read as they are.

Import from other frameworks (e.g. a PyTorch HTSAT-BART teacher) is a file of the same three fields:
    JSONL  one object per line: {"id": "clip id", "embedding": [floats], "caption": "text"}
    .npz   arrays `ids` (n,) str, `embeddings` (n, d) float, `captions` (n,) str
converted with `python -m kdjax.data.teacher_cache --import FILE --out DIR`.
"""

from __future__ import annotations

import json
import os
from typing import Iterable, Iterator

import numpy as np

from kdjax import paths
from kdjax.errors import InputError
from kdjax.teachers import cache as cache_lib


def fields(dim: int) -> dict[str, dict]:
    return {"embedding": cache_lib.field(np.float32, (int(dim),)), "caption": cache_lib.field(cache_lib.STR)}


def write_shard(cache_dir: str, rows: list[dict], teacher: str = "") -> None:
    """Append one shard of rows {"id", "embedding", "caption"} to this host's part of the cache (atomic)."""
    dims = {int(np.shape(r["embedding"])[-1]) for r in rows}
    existing = {TeacherCache.dim_of(m["fields"]) for m in cache_lib.read_metas(cache_dir)} if paths.isdir(
        cache_dir) else set()
    if len(dims | existing) > 1:
        raise InputError(f"{cache_dir}: teacher embeddings of different widths {sorted(dims | existing)}")
    rows = [{**r, "embedding": np.asarray(r["embedding"], np.float32).reshape(-1)} for r in rows]
    cache_lib.write_shard(cache_dir, rows, fields(dims.pop()), teacher=teacher)


def done_ids(cache_dir: str) -> set[str]:
    return cache_lib.done_ids(cache_dir) if paths.isdir(cache_dir) else set()


class TeacherCache:
    """Random access by clip id: `embedding(id)` (d,) float32 and `caption(id)`; read once into memory (the
    captions are re-tokenized for the student when its pipeline is built)."""

    def __init__(self, cache_dir: str):
        store = cache_lib.OutputCache(cache_dir)
        if set(store.fields) != {"embedding", "caption"}:
            raise InputError(f"{cache_dir}: holds {sorted(store.fields)}, not a captioner's embeddings and captions")
        self.dir, self.dim, self.teacher = cache_dir, self.dim_of(store.fields), store.teacher
        self.bytes = store.bytes
        self.index = {i: n for n, i in enumerate(store.index)}
        rows = [store.get(i) for i in store.index]
        self.embeddings = [r["embedding"] for r in rows]
        self.captions = [r["caption"] for r in rows]

    @staticmethod
    def dim_of(f: dict) -> int:
        return int(f["embedding"]["shape"][0])

    def __len__(self) -> int:
        return len(self.captions)

    def row(self, clip_id: str) -> int:
        try:
            return self.index[clip_id]
        except KeyError:
            raise InputError(f"{self.dir}: teacher cache has no clip {clip_id!r}") from None

    def embedding(self, clip_id: str) -> np.ndarray:
        return self.embeddings[self.row(clip_id)]

    def caption(self, clip_id: str) -> str:
        return self.captions[self.row(clip_id)]

    def check(self, ids: Iterable[str]) -> None:
        missing = [i for i in ids if i not in self.index]
        if missing:
            raise InputError(f"{self.dir}: teacher cache lacks {len(missing)} clip(s), e.g. {missing[:5]} "
                             "(run --mode=teacher_cache, or import the teacher's outputs for them)")


def read(cache_dir: str) -> TeacherCache:
    return TeacherCache(cache_dir)


def _import_rows(path: str) -> Iterator[dict]:
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            for key in ("ids", "embeddings", "captions"):
                if key not in z:
                    raise InputError(f"{path}: no array {key!r} (needs ids, embeddings, captions)")
            ids, emb, caps = z["ids"], z["embeddings"], z["captions"]
        if not (len(ids) == len(emb) == len(caps)) or emb.ndim != 2:
            raise InputError(f"{path}: ids {ids.shape}, embeddings {emb.shape}, captions {caps.shape} do not "
                             "describe n clips with (n, d) embeddings")
        for i, e, c in zip(ids, emb, caps):
            yield {"id": str(i), "embedding": e, "caption": str(c)}
        return
    from kdjax.data import jsonl

    for n, row in jsonl.read_rows(path, ("id", "embedding", "caption")):
        e = row["embedding"]
        if not isinstance(e, list) or not e or not all(isinstance(v, (int, float)) for v in e):
            raise InputError(f"{path}:{n}: 'embedding' must be a non-empty list of numbers")
        if not isinstance(row["caption"], str):
            raise InputError(f"{path}:{n}: 'caption' must be a string")
        yield {"id": str(row["id"]), "embedding": np.asarray(e, np.float32), "caption": row["caption"]}


def import_file(path: str, cache_dir: str, shard_size: int = 4096, teacher: str = "") -> int:
    """Convert a JSONL/.npz file of teacher outputs into a cache; returns the number of clips written.
    Clips already in the cache are kept (re-running after an interruption continues)."""
    have = done_ids(cache_dir)
    buf, n, seen = [], 0, set()
    for r in _import_rows(path):
        if r["id"] in seen:
            raise InputError(f"{path}: clip id {r['id']!r} appears twice")
        seen.add(r["id"])
        if r["id"] in have:
            continue
        buf.append(r)
        if len(buf) == shard_size:
            write_shard(cache_dir, buf, teacher or f"imported from {os.path.basename(path)}")
            n, buf = n + len(buf), []
    if buf:
        write_shard(cache_dir, buf, teacher or f"imported from {os.path.basename(path)}")
        n += len(buf)
    return n


def main(argv: list[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--import", dest="src", required=True, help="JSONL or .npz of id/embedding/caption")
    p.add_argument("--out", required=True, help="cache directory (created; resumed if it exists)")
    p.add_argument("--teacher", default="", help="free-text description stored in meta.json")
    a = p.parse_args(argv)
    n = import_file(a.src, a.out, teacher=a.teacher)
    c = read(a.out)
    print(json.dumps({"written": n, "total": len(c), "dim": c.dim, "bytes": c.bytes}))


if __name__ == "__main__":
    main()
