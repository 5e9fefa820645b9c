"""TFDS builders that write audio-caption datasets as array_record (no TensorFlow needed), read back with
`tfds.data_source` and grain.

Every builder writes the same features: `id`, `audio` (16 kHz mono FLAC bytes), `image` (JPEG bytes of a
picture of the clip, or empty), `captions` (a list of strings), so one reader serves them all
(kdjax.data.captions, source "tfds"). They read a *manual directory* laid out as each release ships:

  clotho     Clotho v2.1: clotho_captions_{development,validation,evaluation}.csv (file_name,
             caption_1..caption_5) and the audio folders development/, validation/, evaluation/.
             development -> train, validation -> validation, evaluation -> test.
  audiocaps  AudioCaps: train.csv, val.csv, test.csv (audiocap_id, youtube_id, start_time, caption) and
             the clips you obtained under audio/{train,val,test}/<youtube_id>.{wav,flac} (or
             Y<youtube_id>.wav, <youtube_id>_<start>.wav). Clips are grouped per (youtube_id,
             start_time), so test clips carry their five references. Videos that are gone (no audio file)
             are skipped and counted in the dataset's description (on_missing="error" stops instead).
  vggcaps    VggCaps (kdjax.vggcaps build): vggcaps.jsonl rows {"id", "audio", "image", "caption" (the
             refined caption), "split"} with paths relative to the directory.
  embedded   kdjax's embedded Tux Paint stamps (sound effect, picture, caption); no manual directory.

    python -m kdjax.data.tfds_builders --dataset=clotho --manual_dir=/data/clotho --data_dir=/data/tfds
"""

from __future__ import annotations

import io
import os
import tempfile
from typing import Iterator

import numpy as np

from kdjax import paths
from kdjax.data import lines
from kdjax.data.splits import SPLITS
from kdjax.errors import InputError

SAMPLE_RATE = 16000
VERSION = "1.0.0"


def flac_bytes(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(wave, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def decode_audio(data: bytes) -> np.ndarray:
    import soundfile as sf

    wave, _ = sf.read(io.BytesIO(data), dtype="float32")
    return wave


def jpeg_bytes(path: str, max_side: int = 512) -> bytes:
    from PIL import Image

    from kdjax.data.images import load_rgb

    img = Image.fromarray(load_rgb(path))
    img.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def decode_image(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


# ------------------------------------------------------------------------------------------ row readers
def _read_csv(path: str) -> list[dict]:
    if not os.path.isfile(path):
        raise InputError(f"{path}: missing (expected the dataset's official caption CSV)")
    return [row for _, row in lines.csv_dicts(path)]


def clotho_rows(root: str) -> dict[str, list[dict]]:
    out = {}
    for split, name in (("train", "development"), ("validation", "validation"), ("test", "evaluation")):
        rows = []
        for n, r in enumerate(_read_csv(os.path.join(root, f"clotho_captions_{name}.csv")), start=2):
            caps = [r.get(f"caption_{k}", "").strip() for k in range(1, 6)]
            if "file_name" not in r or not all(caps):
                raise InputError(f"{root}/clotho_captions_{name}.csv:{n}: needs file_name and caption_1..5")
            rows.append({"id": f"{name}/{r['file_name']}", "audio": os.path.join(root, name, r["file_name"]),
                         "captions": caps})
        out[split] = rows
    return out


def _audiocaps_audio(root: str, split: str, yid: str, start: str) -> str | None:
    names = [f"{yid}.wav", f"{yid}.flac", f"Y{yid}.wav", f"{yid}_{start}.wav", f"{yid}_{int(float(start))}.wav"]
    for name in names:
        p = os.path.join(root, "audio", split, name)
        if os.path.isfile(p):
            return p
    return None


def audiocaps_rows(root: str) -> dict[str, list[dict]]:
    out = {}
    for split, name in (("train", "train"), ("validation", "val"), ("test", "test")):
        clips: dict[tuple[str, str], dict] = {}
        for n, r in enumerate(_read_csv(os.path.join(root, f"{name}.csv")), start=2):
            if not {"youtube_id", "start_time", "caption"} <= set(r):
                raise InputError(f"{root}/{name}.csv:{n}: needs youtube_id, start_time and caption columns")
            key = (r["youtube_id"], r["start_time"])
            clip = clips.setdefault(key, {"id": f"{r['youtube_id']}_{r['start_time']}",
                                          "audio": _audiocaps_audio(root, name, *key), "captions": [],
                                          "where": f"{root}/{name}.csv:{n}"})
            clip["captions"].append(r["caption"].strip())
        out[split] = list(clips.values())
    return out


def vggcaps_rows(root: str) -> dict[str, list[dict]]:
    from kdjax.data import jsonl

    file = os.path.join(root, "vggcaps.jsonl")
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for n, r in jsonl.read_rows(file, ("id", "audio", "image", "caption", "split")):
        if r["split"] not in SPLITS:
            raise InputError(f"{file}:{n}: split {r['split']!r} is not one of {SPLITS}")
        out[r["split"]].append({"id": r["id"], "audio": os.path.join(root, r["audio"]),
                                "image": os.path.join(root, r["image"]), "captions": [r["caption"]]})
    return out


def wavcaps_rows(root: str) -> dict[str, list[dict]]:
    """WavCaps' caption files: every *.json under `root` (its json_files/<source>/ folders), each
    {"data": [{"id", "caption", optional "duration" (s), optional "audio" or "wav_path"}, ...]}. WavCaps has
    no official splits: everything is "train"."""
    import glob
    import json

    files = sorted(glob.glob(os.path.join(root, "**", "*.json"), recursive=True))
    if not files:
        raise InputError(f"{root}: no WavCaps .json caption files")
    rows = []
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            raise InputError(f"{path}: not a readable JSON file ({e})") from e
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise InputError(f"{path}: expected an object with a \"data\" list")
        for n, r in enumerate(items):
            if not isinstance(r, dict) or not r.get("id") or not str(r.get("caption", "")).strip():
                raise InputError(f"{path}: data[{n}] needs id and caption")
            audio = r.get("audio") or r.get("wav_path")
            rows.append({"id": str(r["id"]), "audio": os.path.join(root, audio) if audio else None,
                         "captions": [str(r["caption"]).strip()],
                         **({"duration": float(r["duration"])} if r.get("duration") is not None else {})})
    return {"train": rows, "validation": [], "test": []}


def embedded_rows(_root: str | None = None) -> dict[str, list[dict]]:
    from kdjax.data.real_sounds import caption_rows

    return caption_rows()


# datasets whose clips come without a picture (cross-modal distillation cannot use them)
WITHOUT_IMAGES = ("clotho", "audiocaps", "wavcaps")
READERS = {"clotho": clotho_rows, "audiocaps": audiocaps_rows, "vggcaps": vggcaps_rows, "embedded": embedded_rows}


# ------------------------------------------------------------------------------------------ builders
def _builder_class(name: str):
    import tensorflow_datasets as tfds

    class CaptionBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version(VERSION)
        MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__
        code_path = None  # no checksums or metadata files beside the code: nothing is downloaded

        def __init__(self, *, manual_dir: str | None = None, on_missing: str = "skip", **kw):
            self._manual, self._on_missing = manual_dir, on_missing
            self.missing: list[str] = []
            super().__init__(**kw)

        def _info(self):
            f = tfds.features
            return tfds.core.DatasetInfo(
                builder=self, description=f"{name} audio captions (kdjax)", features=f.FeaturesDict({
                    "id": f.Text(), "audio": f.Tensor(shape=(), dtype=np.object_),
                    "image": f.Tensor(shape=(), dtype=np.object_), "captions": f.Sequence(f.Text())}))

        def _split_generators(self, dl_manager):
            if name != "embedded" and not (self._manual and os.path.isdir(self._manual)):
                raise InputError(f"{name}: manual_dir {self._manual!r} is not a directory\n{__doc__}")
            rows = READERS[name](self._manual)
            # a split without rows is left out (TFDS cannot write an empty one): VggCaps and WavCaps have
            # no validation split; readers of the dataset see it as empty (`has_split`)
            return {split: self._generate_examples(rows[split]) for split in SPLITS if rows[split]}

        def _generate_examples(self, rows) -> Iterator[tuple[str, dict]]:
            from kdjax.audio.io import load_audio

            for r in rows:
                if not r.get("audio") or not os.path.isfile(r["audio"]):
                    msg = (f"{r.get('where', r['id'])}: clip {r['id']}: audio file missing "
                           f"({r.get('audio') or 'no matching file name'})")
                    if self._on_missing == "error":
                        raise InputError(msg)
                    self.missing.append(msg)
                    continue
                yield r["id"], {"id": r["id"], "audio": flac_bytes(load_audio(r["audio"], SAMPLE_RATE)),
                                "image": jpeg_bytes(r["image"]) if r.get("image") else b"",
                                "captions": r["captions"]}

    CaptionBuilder.__name__ = CaptionBuilder.name = f"kdjax_{name}"
    return CaptionBuilder


def build(name: str, data_dir: str, manual_dir: str | None = None, on_missing: str = "skip") -> str:
    """Write dataset `name` under data_dir (array_record); returns its directory. Rebuilding an existing
    version is a no-op locally. Either directory may be a bucket: the downloaded files are copied here once
    (`paths.local_mirror`), and a dataset for a bucket is built here and uploaded (array_record writes local
    files), replacing the version there."""
    if name not in READERS:
        raise InputError(f"unknown dataset {name!r}; known: {sorted(READERS)}")
    if paths.is_remote(data_dir):
        with tempfile.TemporaryDirectory(prefix="kdjax-tfds-") as tmp:
            rel = os.path.relpath(build(name, tmp, manual_dir, on_missing), tmp)
            paths.upload_tree(os.path.join(tmp, rel), paths.join(data_dir, rel))
        return paths.join(data_dir, rel)
    manual_dir = paths.local_mirror(manual_dir) if manual_dir else manual_dir
    builder = _builder_class(name)(data_dir=data_dir, manual_dir=manual_dir, on_missing=on_missing,
                                   file_format="array_record")
    builder.download_and_prepare()
    if builder.missing:
        with open(os.path.join(str(builder.data_dir), "missing_audio.txt"), "w") as f:
            f.write("\n".join(builder.missing) + "\n")
    return str(builder.data_dir)


def has_split(path: str, split: str) -> bool:
    import tensorflow_datasets as tfds

    return split in tfds.builder_from_directory(paths.local_mirror(path)).info.splits


def open_split(path: str, split: str):
    """The split of a built dataset (its versioned directory) as a random-access source of decoded rows:
    {"id", "wave" (float32, 16 kHz), "image" (uint8 HxWx3 or None), "captions": [str]}."""
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(paths.local_mirror(path))  # array_record reads local files
    if split not in builder.info.splits:
        raise InputError(f"{path}: no split {split!r} (has {sorted(builder.info.splits)})")
    return builder.as_data_source(split=split)


def decode_row(r: dict) -> dict:
    dec = lambda x: x.decode() if isinstance(x, bytes) else str(x)
    return {"id": dec(r["id"]), "wave": decode_audio(r["audio"]),
            "image": decode_image(r["image"]) if len(r["image"]) else None,
            "captions": [dec(c) for c in r["captions"]]}


def main(argv=None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True, choices=sorted(READERS), help="which captioning dataset to build")
    ap.add_argument("--manual_dir", default=None, help="the dataset's downloaded files (its CSVs and audio)")
    ap.add_argument("--data_dir", required=True, help="where the array_record dataset is written")
    ap.add_argument("--on_missing", default="skip", choices=("skip", "error"),
                    help="a listed clip whose audio file is missing: skip and count it, or stop naming it")
    a = ap.parse_args(argv)
    print(build(a.dataset, a.data_dir, a.manual_dir, a.on_missing))


if __name__ == "__main__":
    main()
