"""Audio-caption datasets as rows {"id", "audio", "image" (optional), "captions": [...]} per split
(train / validation / test).

Sources (`data.source`):
  embedded   the Tux Paint stamps of kdjax's embedded real set (kdjax.data.real_sounds): a real sound
             effect, the stamp's picture and its English caption; the CPU smoke set.
  manifest   users' JSONL: {"audio": path, "image": path (optional), "caption": str | "captions": [str],
             "split": train|validation|test, "id": optional}; relative paths are read from the
             manifest's folder.
  tfds       an array_record dataset written by kdjax.data.tfds_builders (Clotho, AudioCaps, VggCaps,
             embedded), read lazily.
  synthetic  kdjax.data.synthetic_sounds: any number of generated clips whose caption and picture say which
             events they hold (`data.synthetic`: per-split sizes and a seed), made on access: volume without
             files, and a teacher that can be trained on far more clips than a student sees.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import grain

from kdjax import paths
from kdjax.audio.io import load_many
from kdjax.data import jsonl, real_sounds, tfds_builders
from kdjax.data.splits import SPLITS
from kdjax.errors import InputError

SOURCES = ("embedded", "manifest", "tfds", "synthetic")
SYNTHETIC_SPLITS = {"train": "num_train", "validation": "num_validation", "test": "num_test"}


def _synthetic(d, k: int, size: int):
    """Part k of the synthetic data of seed s (the splits 0-2, the audio-only clips 3): generator seed 4s + k, so
    parts and seeds never share a clip."""
    from kdjax.data.synthetic_sounds import SyntheticSounds

    return SyntheticSounds(size, seed=4 * int(d.synthetic.seed) + k, seconds=float(d.clip_seconds),
                           sample_rate=int(d.sample_rate))


def synthetic_split(d, split: str):
    """The `synthetic` source's clips of one split (train, validation, test): a SyntheticSounds of the split's size."""
    return _synthetic(d, list(SYNTHETIC_SPLITS).index(split), int(d.synthetic[SYNTHETIC_SPLITS[split]]))


def synthetic_sources(d) -> tuple[dict[str, Any], Callable[[str], list[dict]]]:
    """The `synthetic` source: per split, clips of `data.clip_seconds` made on access (`_synthetic`)."""
    srcs = {split: synthetic_split(d, split) for split in SYNTHETIC_SPLITS}

    def row(split: str):
        def make(i: int) -> dict:
            ex = srcs[split][i]
            return {"id": f"synthetic-{split}-{i}", "wave": ex["wave"], "image": ex["image"],
                    "captions": [ex["caption"]]}
        return make

    out = {s: grain.MapDataset.range(len(src)).map(row(s)) for s, src in srcs.items()}
    return out, lambda split: [{"id": f"synthetic-{split}-{i}", "input": None, "captions": [srcs[split].caption(i)]}
                               for i in range(len(srcs[split]))]


def synthetic_audio_only(d) -> list[dict]:
    """`data.synthetic.num_audio_only` clips without captions (a teacher's pseudo-captions replace them), drawn
    apart from every split: rows {"id", "synthetic": generator, "index"}, the samples made when drawn."""
    n = int(d.synthetic.get("num_audio_only", 0))
    gen = _synthetic(d, 3, n)
    return [{"id": f"synthetic-audio_only-{i}", "synthetic": gen, "index": i} for i in range(n)]


def read_manifest(file: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    root = paths.parent(file)
    for n, row in jsonl.read_rows(file, ("audio", "split")):
        if row["split"] not in SPLITS:
            raise InputError(f"{file}:{n}: split {row['split']!r} is not one of {SPLITS}")
        caps = row.get("captions", [row["caption"]] if "caption" in row else None)
        if not caps or not all(isinstance(c, str) and c.strip() for c in caps):
            raise InputError(f"{file}:{n}: needs a non-empty 'caption' or 'captions' list")
        item = {"id": str(row.get("id", f"{os.path.basename(file)}:{n}")),
                "audio": paths.join(root, row["audio"]), "captions": [c.strip() for c in caps]}
        if row.get("image"):
            item["image"] = paths.join(root, row["image"])
        out[row["split"]].append(item)
    return out


def load(d) -> dict[str, list[dict]]:
    """Rows per split for a config's `data` node."""
    if d.source == "embedded":
        rows = real_sounds.caption_rows()
    elif d.source == "manifest":
        if not d.manifest_file:
            raise InputError("data.source='manifest' needs data.manifest_file")
        rows = read_manifest(d.manifest_file)
    else:
        raise InputError(f"data.source must be 'embedded', 'manifest' or 'tfds', got {d.source!r}")
    empty = [s for s in SPLITS if not rows[s]]
    if empty:
        raise InputError(f"data ({d.source}): no examples in split(s) {empty}")
    return rows


def sources(d) -> tuple[dict[str, Any], Callable[[str], list[dict]], list[str]]:
    """Per split, a random-access sequence of raw clips {"id", "wave", "image" (uint8 or None), "captions"}:
    decoded on access for array_record datasets (large corpora never sit in memory), loaded up front for
    the embedded set and JSONL manifests (bad audio files stop the run or are skipped and counted); a function
    giving a split's items in order, {"id", "input" (the audio file, or where the record is; None for generated
    clips), "captions"}, without decoding audio; and the bad audio files skipped."""
    if d.source == "synthetic":
        return (*synthetic_sources(d), [])
    if d.source == "tfds":
        if not d.tfds_dir:
            raise InputError("data.source='tfds' needs data.tfds_dir (a directory written by kdjax.data.tfds_builders)")
        raw = {s: tfds_builders.open_split(d.tfds_dir, s) if tfds_builders.has_split(d.tfds_dir, s) else []
               for s in SPLITS}
        dec = lambda x: x.decode() if isinstance(x, bytes) else str(x)  # noqa: E731
        items = lambda split: [{"id": dec(r["id"]), "input": f"{d.tfds_dir}#{split}[{i}]",  # noqa: E731
                                "captions": [dec(c) for c in r["captions"]]} for i, r in enumerate(raw[split])]
        return {s: grain.MapDataset.source(src).map(tfds_builders.decode_row) for s, src in raw.items()}, items, []
    rows = load(d)
    out, skipped = {}, []
    for split, items in rows.items():
        waves, kept, bad = load_many([r["audio"] for r in items], d.sample_rate, d.on_bad_input)
        skipped += bad
        out[split] = [{"id": items[i]["id"], "wave": w, "captions": items[i]["captions"],
                       "image_path": items[i].get("image"), "audio": items[i]["audio"]} for w, i in zip(waves, kept)]
    return out, (lambda split: [{"id": r["id"], "input": r["audio"], "captions": list(r["captions"])}
                                for r in out[split]]), skipped


def train_images(d) -> str | None:
    """Why the training split of a config's `data` node has no picture for every clip (a dataset such as
    Clotho or AudioCaps, a manifest row without "image"), or None when it has. Reads captions and paths only,
    no audio."""
    import json

    if d.source in ("embedded", "synthetic"):
        return None
    if d.source == "manifest":
        if not d.manifest_file or not paths.isfile(d.manifest_file):
            return None  # its own check names the file
        for n, row in jsonl.read_rows(d.manifest_file, ("audio", "split")):
            if row["split"] == "train" and not row.get("image"):
                return f"{d.manifest_file}:{n}: a training clip without an \"image\""
        return None
    if d.source == "tfds" and d.tfds_dir:
        info = paths.join(d.tfds_dir, "dataset_info.json")
        if paths.isfile(info):
            name = json.loads(paths.read_text(info)).get("name", "")
            if name.removeprefix("kdjax_") in tfds_builders.WITHOUT_IMAGES:
                return f"{d.tfds_dir}: {name} has no images"
    return None
