"""A teacher's per-clip outputs for distillation, stored once: clip id, clip embedding, beam-search caption.

Layout of a cache directory:
    meta.json                   {"format": 1, "dim": d, "teacher": free text, "shards": [file, ...]}
    part-00000.array_record     records of msgpack {"id": str, "embedding": float32 (d,), "caption": str}

Shards are written to a temporary name and renamed, and meta.json is rewritten atomically after each,
so a killed writer loses at most the shard in progress and `write` resumes after the last complete one.

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
from flax import serialization

from kdjax.errors import InputError

FORMAT = 1


def _atomic_json(path: str, obj: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def read_meta(cache_dir: str) -> dict:
    path = os.path.join(cache_dir, "meta.json")
    if not os.path.isfile(path):
        return {"format": FORMAT, "dim": None, "teacher": "", "shards": [], "count": 0}
    with open(path) as f:
        meta = json.load(f)
    if meta.get("format") != FORMAT:
        raise InputError(f"{path}: teacher-cache format {meta.get('format')!r}, this kdjax reads {FORMAT}")
    return meta


def write_shard(cache_dir: str, rows: list[dict], teacher: str = "") -> None:
    """Append one shard of rows {"id", "embedding", "caption"}; atomic (file, then meta.json)."""
    from array_record.python.array_record_module import ArrayRecordWriter

    os.makedirs(cache_dir, exist_ok=True)
    meta = read_meta(cache_dir)
    dims = {np.shape(r["embedding"])[-1] for r in rows}
    if meta["dim"] is not None:
        dims.add(meta["dim"])
    if len(dims) > 1:
        raise InputError(f"{cache_dir}: teacher embeddings of different widths {sorted(dims)}")
    name = f"part-{len(meta['shards']):05d}.array_record"
    tmp = os.path.join(cache_dir, name + ".tmp")
    writer = ArrayRecordWriter(tmp, "group_size:1")
    for r in rows:
        writer.write(serialization.msgpack_serialize({
            "id": str(r["id"]), "caption": str(r["caption"]),
            "embedding": np.asarray(r["embedding"], np.float32).reshape(-1)}))
    writer.close()
    os.replace(tmp, os.path.join(cache_dir, name))
    meta.update(dim=int(dims.pop()), teacher=teacher or meta.get("teacher", ""),
                shards=meta["shards"] + [name], count=int(meta.get("count", 0)) + len(rows))
    _atomic_json(os.path.join(cache_dir, "meta.json"), meta)


def done_ids(cache_dir: str) -> set[str]:
    return set(read(cache_dir).index) if read_meta(cache_dir)["shards"] else set()


class TeacherCache:
    """Random access by clip id: `embedding(id)` (d,) float32 and `caption(id)`."""

    def __init__(self, cache_dir: str):
        from array_record.python.array_record_module import ArrayRecordReader

        meta = read_meta(cache_dir)
        if not meta["shards"]:
            raise FileNotFoundError(f"{cache_dir}: no teacher cache (meta.json lists no shards)")
        self.dir, self.dim, self.teacher = cache_dir, int(meta["dim"]), meta.get("teacher", "")
        self.embeddings: list[np.ndarray] = []
        self.captions: list[str] = []
        self.index: dict[str, int] = {}
        for name in meta["shards"]:
            reader = ArrayRecordReader(os.path.join(cache_dir, name))
            for raw in reader.read(0, reader.num_records()):
                r = serialization.msgpack_restore(raw)
                self.index[r["id"]] = len(self.captions)
                self.embeddings.append(np.asarray(r["embedding"], np.float32))
                self.captions.append(r["caption"])
            reader.close()

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
    print(json.dumps({"written": n, "total": len(read(a.out)), "dim": read(a.out).dim}))


if __name__ == "__main__":
    main()
