"""A teacher's per-example outputs, computed once and stored as array_record shards.

Layout of a cache directory:
    meta-h<host>.json                 one per writing host: {"format": 2, "fields": {...}, "fingerprint": {...},
                                      "teacher": text, "shards": [{"file", "count", "bytes"}], "count": n}
    part-h<host>-<n>.array_record     records of msgpack {"id": str, <field>: array or str, ...}
    part-h<host>-<n>.ids              the shard's example ids, one a line (an index without reading records)

`fields` describes each stored field: {"dtype": "float32", "shape": [d0, d1, ...]} (-1: that axis varies
per example) or {"dtype": "str"}. The fingerprint says what produced the outputs (teacher, input
preprocessing); writing into a cache of another fingerprint is refused, naming the keys that differ.

Each host writes only its own shards and meta file, so a multi-host job needs no lock: host p computes the
examples p, p + P, ... Shards are written under a temporary name and renamed, then the host's meta file is
rewritten atomically, so a killed writer loses at most the shard in progress and a rerun continues after the
last complete one. Caches written by kdjax's first format (EffAAC's `meta.json` of embeddings and captions) are
read as they are.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
import tempfile
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from flax import serialization

from kdjax import paths
from kdjax.errors import InputError

FORMAT = 2
STR = "str"


def field(dtype: Any, shape: Sequence[int] = ()) -> dict:
    """A field description: an array of `dtype` and `shape` (-1: that axis varies per example), or STR."""
    if dtype == STR or dtype is str:
        return {"dtype": STR}
    return {"dtype": np.dtype(dtype).name, "shape": [int(d) for d in shape]}


def _atomic_json(path: str, obj: dict) -> None:
    paths.write_text(path, json.dumps(obj, indent=1))


def _host() -> tuple[int, int]:
    import jax

    return jax.process_index(), jax.process_count()


def _meta_path(cache_dir: str, host: int) -> str:
    return paths.join(cache_dir, f"meta-h{host:03d}.json")


def _legacy_meta(path: str) -> dict:
    """kdjax's first cache format (EffAAC): meta.json with the embedding width and a shard list."""
    meta = json.loads(paths.read_text(path))
    if meta.get("format") != 1:
        raise InputError(f"{path}: teacher-cache format {meta.get('format')!r}, this kdjax reads 1 and {FORMAT}")
    return {"format": 1, "fields": {"embedding": field(np.float32, (int(meta["dim"]),)), "caption": field(STR)},
            "fingerprint": None, "teacher": meta.get("teacher", ""),
            "shards": [{"file": s, "count": None, "bytes": None} for s in meta["shards"]],
            "count": int(meta.get("count", 0))}


def read_metas(cache_dir: str) -> list[dict]:
    """Every host's meta of a cache (empty when nothing has been written)."""
    out = []
    legacy = paths.join(cache_dir, "meta.json")
    if paths.isfile(legacy):
        out.append(_legacy_meta(legacy))
    names = paths.listdir(cache_dir) if paths.isdir(cache_dir) else []
    for path in [paths.join(cache_dir, n) for n in names if fnmatch.fnmatch(n, "meta-h*.json")]:
        meta = json.loads(paths.read_text(path))
        if meta.get("format") != FORMAT:
            raise InputError(f"{path}: teacher-cache format {meta.get('format')!r}, this kdjax reads {FORMAT}")
        out.append(meta)
    return out


def _differences(a: Mapping, b: Mapping) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _check_compatible(cache_dir: str, metas: list[dict], fields: Mapping[str, dict], fingerprint: Mapping | None):
    for meta in metas:
        if meta["fields"] != dict(fields):
            raise InputError(f"{cache_dir}: holds fields {meta['fields']}, this teacher writes {dict(fields)}; "
                             "use another cache directory")
        if fingerprint is not None and meta["fingerprint"] is not None and meta["fingerprint"] != dict(fingerprint):
            diff = _differences(meta["fingerprint"], fingerprint)
            raise InputError(f"{cache_dir}: written by another teacher or preprocessing (differs in {diff}); delete "
                             "it or set another cache directory")


def _ids_of_shard(cache_dir: str, shard: dict) -> list[str]:
    path = paths.join(cache_dir, shard["file"])
    sidecar = path[: -len(".array_record")] + ".ids"
    if paths.isfile(sidecar):
        return paths.read_text(sidecar).split("\n")[:-1]
    from array_record.python.array_record_module import ArrayRecordReader  # the first format has no sidecar

    reader = ArrayRecordReader(paths.local_mirror(path))
    try:
        return [serialization.msgpack_restore(r)["id"] for r in reader.read(0, reader.num_records())]
    finally:
        reader.close()


def done_ids(cache_dir: str) -> set[str]:
    """The ids of every example the cache holds (all hosts)."""
    return {i for meta in read_metas(cache_dir) for s in meta["shards"] for i in _ids_of_shard(cache_dir, s)}


def write_shard(cache_dir: str, rows: Sequence[dict], fields: Mapping[str, dict], *, teacher: str = "",
                fingerprint: Mapping | None = None, host: int | None = None) -> dict:
    """Append one shard of rows {"id", <field>: value} to this host's part of the cache; atomic (shard, its ids,
    then the host's meta). Returns the shard's entry {"file", "count", "bytes"}."""
    from array_record.python.array_record_module import ArrayRecordWriter

    host = _host()[0] if host is None else host
    paths.makedirs(cache_dir)
    metas = read_metas(cache_dir)
    _check_compatible(cache_dir, metas, fields, fingerprint)
    path = _meta_path(cache_dir, host)
    mine = next((m for m in metas if m.get("host") == host and m["format"] == FORMAT), None) or {
        "format": FORMAT, "host": host, "fields": dict(fields), "fingerprint": dict(fingerprint or {}) or None,
        "teacher": teacher, "shards": [], "count": 0}
    name = f"part-h{host:03d}-{len(mine['shards']):05d}"
    # array_record writes local files: a bucket's shard is written here and uploaded whole
    stage = tempfile.mkdtemp(prefix="kdjax-cache-") if paths.is_remote(cache_dir) else None
    tmp = os.path.join(stage or cache_dir, name + ".array_record.tmp")
    writer = ArrayRecordWriter(tmp, "group_size:1")
    size = 0
    for r in rows:
        rec = {"id": str(r["id"])}
        for k, spec in fields.items():
            if k not in r:
                raise InputError(f"{cache_dir}: example {r['id']!r} lacks field {k!r}")
            rec[k] = str(r[k]) if spec["dtype"] == STR else _conform(np.asarray(r[k]), spec, k, r["id"])
        data = serialization.msgpack_serialize(rec)
        size += len(data)
        writer.write(data)
    writer.close()
    paths.write_text(paths.join(cache_dir, name + ".ids"), "".join(str(r["id"]) + "\n" for r in rows))
    if stage is None:
        os.replace(tmp, os.path.join(cache_dir, name + ".array_record"))
    else:
        paths.upload_tree(tmp, paths.join(cache_dir, name + ".array_record"))
        shutil.rmtree(stage, ignore_errors=True)
    entry = {"file": name + ".array_record", "count": len(rows), "bytes": size}
    mine.update(shards=mine["shards"] + [entry], count=int(mine["count"]) + len(rows),
                teacher=teacher or mine.get("teacher", ""))
    _atomic_json(path, mine)
    return entry


def _conform(a: np.ndarray, spec: dict, name: str, example: Any) -> np.ndarray:
    want = spec["shape"]
    if a.ndim != len(want) or any(w not in (-1, g) for w, g in zip(want, a.shape)):
        raise InputError(f"example {example!r}: field {name!r} has shape {list(a.shape)}, described {want} "
                         "(-1: any size)")
    return a.astype(spec["dtype"])


class OutputCache:
    """Random access by example id: `get(id)` -> {field: value}. Records are read on access (a corpus-sized
    cache never sits in memory)."""

    def __init__(self, cache_dir: str):
        metas = read_metas(cache_dir)
        if not metas or not any(m["shards"] for m in metas):
            raise FileNotFoundError(f"{cache_dir}: no teacher cache (no shards written)")
        self.dir = cache_dir
        self.fields = metas[0]["fields"]
        self.teacher = metas[0].get("teacher", "")
        self.fingerprint = metas[0].get("fingerprint")
        _check_compatible(cache_dir, metas[1:], self.fields, self.fingerprint)
        self._files: list[str] = []
        self._readers: dict[int, Any] = {}
        self.index: dict[str, tuple[int, int]] = {}
        self.bytes = 0
        for meta in metas:
            for shard in meta["shards"]:
                k = len(self._files)
                self._files.append(paths.join(cache_dir, shard["file"]))
                for j, i in enumerate(_ids_of_shard(cache_dir, shard)):
                    self.index[i] = (k, j)
                self.bytes += int(shard.get("bytes") or paths.getsize(self._files[-1]))

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, example_id: str) -> bool:
        return example_id in self.index

    def get(self, example_id: str) -> dict[str, Any]:
        try:
            k, j = self.index[example_id]
        except KeyError:
            raise InputError(f"{self.dir}: the teacher cache has no example {example_id!r}") from None
        if k not in self._readers:
            from array_record.python.array_record_module import ArrayRecordReader

            self._readers[k] = ArrayRecordReader(paths.local_mirror(self._files[k]), "readahead_buffer_size:0")
        rec = serialization.msgpack_restore(self._readers[k].read([j])[0])
        return {name: (rec[name] if spec["dtype"] == STR else np.asarray(rec[name], spec["dtype"]))
                for name, spec in self.fields.items()}

    def check(self, ids: Iterable[str]) -> None:
        missing = [i for i in ids if i not in self.index]
        if missing:
            raise InputError(f"{self.dir}: the teacher cache lacks {len(missing)} example(s), e.g. {missing[:5]} "
                             "(write them first, or import the teacher's outputs for them)")

    def __getstate__(self):  # readers are per process (grain workers reopen them)
        state = dict(self.__dict__)
        state["_readers"] = {}
        return state


def fill(cache_dir: str, ids: Sequence[str], compute: Callable[[list[str]], list[dict]], fields: Mapping[str, dict],
         *, batch_size: int, shard_size: int, teacher: str = "", fingerprint: Mapping | None = None,
         progress: str = "teacher cache") -> dict:
    """Compute and store the outputs of every id not yet cached: this host takes ids p, p + P, ...;
    `compute(ids)` returns their rows ({"id", <field>: value}) for up to `batch_size` ids. Resumable; logs and
    returns the examples, bytes and seconds it took."""
    host, hosts = _host()
    metas = read_metas(cache_dir) if paths.isdir(cache_dir) else []
    _check_compatible(cache_dir, metas, fields, fingerprint)
    have = done_ids(cache_dir) if metas else set()
    mine = [i for n, i in enumerate(ids) if n % hosts == host]
    todo = [i for i in mine if i not in have]
    logging.info("%s %s: %d of this host's %d examples cached, %d to compute", progress, cache_dir,
                 len(mine) - len(todo), len(mine), len(todo))
    from kdjax.train.logging import progress_bar

    t0, written = time.perf_counter(), 0
    with progress_bar(len(todo), progress, "example") as bar:
        for s0 in range(0, len(todo), shard_size):
            part = todo[s0:s0 + shard_size]
            rows: list[dict] = []
            for b0 in range(0, len(part), batch_size):
                rows += compute(part[b0:b0 + batch_size])
                bar.update(len(part[b0:b0 + batch_size]))
            entry = write_shard(cache_dir, rows, fields, teacher=teacher, fingerprint=fingerprint, host=host)
            written += entry["bytes"]
            logging.info("%s: %d / %d examples", progress, len(mine) - len(todo) + s0 + len(part), len(mine))
    seconds = time.perf_counter() - t0
    stats = {"dir": cache_dir, "examples": len(ids), "computed": len(todo), "seconds": round(seconds, 2),
             "bytes_written": written}
    if todo:
        logging.info("%s %s: %d examples computed in %.1f s (%.0f/s), %.2f MB (%.1f KB each)", progress, cache_dir,
                     len(todo), seconds, len(todo) / max(seconds, 1e-9), written / 2 ** 20,
                     written / len(todo) / 1024)
    return stats
