"""The embedded real audio set: Tux Paint's stamp sound effects (each with an image and a caption in
English and Korean) and the freedesktop sound theme's event sounds, as 16 kHz mono FLAC, 224x224 JPEG
and a JSONL manifest with fixed train/validation/test splits.

The processed set ships inside the package (kdjax/data/assets/real_sounds, about 5 MB, with the
sources' licence notices), so nothing needs installing to use it. `build` regenerates it from the
Debian packages:

    apt-get install tuxpaint-stamps-default sound-theme-freedesktop
    pip install cairosvg   # three stamps only have an SVG image
    python -m kdjax.data.real_sounds --out kdjax/data/assets/real_sounds

Labels are coarse sound classes (animal, bird, voice, object, alert) for classification tests; the
stamp's folder is kept as `category`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys

import numpy as np

from kdjax.data.splits import SPLITS
from kdjax.errors import InputError

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "real_sounds")
TUXPAINT = "/usr/share/tuxpaint/stamps"
FREEDESKTOP = "/usr/share/sounds/freedesktop/stereo"
LICENCES = {"tuxpaint-stamps-default": "/usr/share/doc/tuxpaint-stamps-default/copyright",
            "sound-theme-freedesktop": "/usr/share/doc/sound-theme-freedesktop/copyright"}
LABELS = ("animal", "bird", "voice", "object", "alert")
SPLIT_FRACTIONS = dict(zip(SPLITS, (0.7, 0.15, 0.15)))
SAMPLE_RATE = 16000
IMAGE_SIZE = 224


def stamp_label(category: str) -> str:
    """Coarse class of a Tux Paint stamp from its folder (e.g. 'animals/birds/owls')."""
    if category.startswith("animals/birds"):
        return "bird"
    if category.startswith("animals/"):
        return "animal"
    if category.startswith("symbols/"):  # spoken digits and letters, vocal expressions
        return "voice"
    return "object"


def _captions(txt_file: str) -> tuple[str, str | None]:
    with open(txt_file, encoding="utf-8") as f:
        lines = f.read().splitlines()
    english = lines[0].strip()
    korean = next((ln.split("=", 1)[1].strip() for ln in lines[1:] if ln.startswith("ko.utf8=")), None)
    return english, korean or None


def _find_stamps(root: str) -> list[dict]:
    """Stamps with a sound effect, a caption and an image; identical sound files are kept once."""
    found, seen = [], set()
    for folder, _, files in sorted(os.walk(root)):
        names = set(files)
        for f in sorted(files):
            stem, ext = os.path.splitext(f)
            if ext not in (".ogg", ".wav") or stem + ".txt" not in names:
                continue
            image = next((stem + e for e in (".png", ".svg") if stem + e in names), None)
            if image is None:
                continue
            path = os.path.join(folder, f)
            with open(path, "rb") as fh:
                digest = hashlib.md5(fh.read()).hexdigest()
            if digest in seen:  # e.g. upper/lower-case letters share one recording
                continue
            seen.add(digest)
            category = os.path.relpath(folder, root)
            en, ko = _captions(os.path.join(folder, stem + ".txt"))
            found.append({"id": f"tuxpaint/{category}/{stem}", "source": "tuxpaint-stamps-default",
                          "audio_src": path, "image_src": os.path.join(folder, image), "category": category,
                          "label": stamp_label(category), "caption": en, "caption_ko": ko})
    return found


def _find_freedesktop(root: str) -> list[dict]:
    out = []
    for f in sorted(os.listdir(root)):
        stem = os.path.splitext(f)[0]
        out.append({"id": f"freedesktop/{stem}", "source": "sound-theme-freedesktop",
                    "audio_src": os.path.join(root, f), "image_src": None, "category": "freedesktop",
                    "label": "alert", "caption": f"The '{stem.replace('-', ' ')}' desktop event sound.",
                    "caption_ko": None})
    return out


def _image(src: str) -> "PIL.Image.Image":  # noqa: F821
    from PIL import Image

    if src.endswith(".svg"):
        import io

        import cairosvg

        img = Image.open(io.BytesIO(cairosvg.svg2png(url=src, output_width=IMAGE_SIZE * 2)))
    else:
        img = Image.open(src)
    img = img.convert("RGBA")
    img.thumbnail((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    canvas = Image.new("RGBA", (IMAGE_SIZE, IMAGE_SIZE), (255, 255, 255, 255))  # letterbox on white
    canvas.alpha_composite(img, ((IMAGE_SIZE - img.width) // 2, (IMAGE_SIZE - img.height) // 2))
    return canvas.convert("RGB")


def assign_splits(items: list[dict], seed: int = 0) -> None:
    """Stratified by label, deterministic given the item ids."""
    for label in sorted({it["label"] for it in items}):
        group = sorted((it for it in items if it["label"] == label), key=lambda it: it["id"])
        order = np.random.default_rng(seed).permutation(len(group))
        n_val = max(1, round(SPLIT_FRACTIONS["validation"] * len(group)))
        n_test = max(1, round(SPLIT_FRACTIONS["test"] * len(group)))
        for rank, i in enumerate(order):
            group[i]["split"] = "test" if rank < n_test else "validation" if rank < n_test + n_val else "train"


def build(out_dir: str, tuxpaint_root: str = TUXPAINT, freedesktop_root: str = FREEDESKTOP) -> dict:
    """Process the Debian packages' files into `out_dir`; returns summary counts."""
    import soundfile as sf

    from kdjax.audio.io import load_audio

    for root, pkg in ((tuxpaint_root, "tuxpaint-stamps-default"), (freedesktop_root, "sound-theme-freedesktop")):
        if not os.path.isdir(root):
            raise InputError(f"{root} not found: apt-get install {pkg}")
    items = _find_stamps(tuxpaint_root) + _find_freedesktop(freedesktop_root)
    assign_splits(items)
    tmp = out_dir.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "audio"))
    os.makedirs(os.path.join(tmp, "images"))
    rows = []
    for it in items:
        name = it["id"].replace("/", "__")
        wave = load_audio(it["audio_src"], SAMPLE_RATE)
        peak = float(np.abs(wave).max())
        if peak > 1.0:  # resampling can overshoot; keep 16-bit PCM unclipped
            wave = wave / peak
        sf.write(os.path.join(tmp, "audio", name + ".flac"), wave, SAMPLE_RATE, subtype="PCM_16")
        row = {k: it[k] for k in ("id", "source", "category", "label", "caption", "caption_ko", "split")}
        row.update(audio=f"audio/{name}.flac", seconds=round(len(wave) / SAMPLE_RATE, 3), image=None,
                   original_audio=os.path.relpath(it["audio_src"], "/"))
        if it["image_src"]:
            _image(it["image_src"]).save(os.path.join(tmp, "images", name + ".jpg"), quality=88)
            row["image"] = f"images/{name}.jpg"
        rows.append(row)
    with open(os.path.join(tmp, "manifest.jsonl"), "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    for pkg, src in LICENCES.items():
        shutil.copy(src, os.path.join(tmp, f"LICENSE.{pkg}.txt"))
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return summary(rows)


def summary(rows: list[dict]) -> dict:
    return {"examples": len(rows),
            "by_split": {s: sum(r["split"] == s for r in rows) for s in SPLITS},
            "by_label": {lab: sum(r["label"] == lab for r in rows) for lab in LABELS},
            "with_image": sum(r["image"] is not None for r in rows),
            "with_korean": sum(r["caption_ko"] is not None for r in rows)}


def manifest(root: str = HERE, split: str | None = None) -> list[dict]:
    """Rows of the set (audio/image paths made absolute), optionally one split."""
    file = os.path.join(root, "manifest.jsonl")
    if not os.path.isfile(file):
        raise InputError(f"{file} not found; build the set with python -m kdjax.data.real_sounds --out {root}")
    if split is not None and split not in SPLITS:
        raise InputError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    rows = []
    with open(file, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if split is None or row["split"] == split:
                row["audio"] = os.path.join(root, row["audio"])
                row["image"] = os.path.join(root, row["image"]) if row["image"] else None
                rows.append(row)
    return rows


def caption_rows() -> dict[str, list[dict]]:
    """The Tux Paint stamps as an audio-caption dataset: per split, rows {"id", "audio", "image", "captions"}
    (the freedesktop sounds have no picture or caption and are left out)."""
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for r in manifest():
        if r.get("image") and r.get("caption"):
            out[r["split"]].append({"id": r["id"], "audio": r["audio"], "image": r["image"],
                                    "captions": [r["caption"]]})
    return out


if __name__ == "__main__":
    out = sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else HERE
    print(json.dumps(build(out)))
