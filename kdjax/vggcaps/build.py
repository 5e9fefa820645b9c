"""Build VggCaps (thesis section 3.3, Figure 3.1) from videos and a VggSound-style CSV.

For each video: the snapshot time (the middle of the labelled 10-s segment by default), the frame there
saved as JPEG, the audio from 5 s before to 5 s after it (16 kHz mono FLAC), and its mel spectrogram as a
PNG; then the LLM captions the snapshot and the spectrogram (raw caption, Listing 3.1) and refines the
caption (Listing 3.2). Output, in `out`:
  vggcaps.jsonl   {id, audio, image, caption (refined), raw_caption, category, split}; 1 % of the items, drawn
                  with the seed, are the test split, the rest train
  audio/ images/ mels/ captions/   the per-item files (captions/: the LLM answers, the resume cache)
  manifest.json   counts, and every item left out with its reason (no video file, no audio stream, too
                  short, unreadable, the API's refusal or error)
and, with `tfds_dir`, the array_record dataset Multi2Cap reads (`kdjax.data.tfds_builders`, "vggcaps").
Every file is written under a temporary name and renamed, so a killed build resumes where it stopped and
no item is sent to the LLM twice.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import random
from typing import Any

import numpy as np

from kdjax.data import lines
from kdjax.errors import InputError
from kdjax.train.workdir_lock import WorkdirLock
from kdjax.vggcaps import llm

SAMPLE_RATE = 16000
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")


@dataclasses.dataclass(frozen=True)
class Row:
    video_id: str
    start: float
    label: str
    split: str
    where: str  # file:line, for messages

    @property
    def id(self) -> str:
        return f"{self.video_id}_{int(self.start):06d}"


def read_csv(path: str) -> list[Row]:
    """VggSound's CSV: youtube id, start second, label, split (a header row is allowed)."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such CSV")
    rows = []
    for n, r in lines.csv_rows(path):
        if not r or (n == 1 and not r[1].strip().replace(".", "", 1).isdigit()):
            continue  # blank line or header
        if len(r) < 3:
            raise InputError(f"{path}:{n}: expected youtube_id,start_seconds,label[,split]")
        try:
            start = float(r[1])
        except ValueError as e:
            raise InputError(f"{path}:{n}: start seconds {r[1]!r} is not a number") from e
        rows.append(Row(r[0].strip(), start, r[2].strip(), (r[3].strip() if len(r) > 3 else ""), f"{path}:{n}"))
    return rows


def find_video(videos: str, row: Row) -> str | None:
    for stem in (row.id, row.video_id):
        for ext in VIDEO_EXTENSIONS:
            p = os.path.join(videos, stem + ext)
            if os.path.isfile(p):
                return p
    return None


class Skip(Exception):
    """An item left out of the dataset; the message is the manifest's reason."""


def _atomic_bytes(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def extract(video: str, row: Row, snapshot: str | float = "middle", window: float = 10.0,
            min_seconds: float = 5.0) -> dict[str, Any]:
    """{"time", "frame" (HxWx3 uint8), "wave" (16 kHz mono float32)} of one video."""
    import av

    try:
        container = av.open(video)
    except av.error.FFmpegError as e:
        raise Skip(f"unreadable video ({type(e).__name__})") from e
    with container:
        if not container.streams.video:
            raise Skip("no video stream")
        if not container.streams.audio:
            raise Skip("no audio stream")
        duration = float(container.duration or 0) / av.time_base
        if snapshot == "middle":
            # a full-length video holds the labelled segment at [start, start + 10); a clip is the segment
            t = row.start + 5.0 if duration >= row.start + 10.0 else duration / 2
        else:
            t = float(snapshot)
        t = min(max(t, 0.0), max(duration - 1e-3, 0.0))
        lo, hi = max(t - window / 2, 0.0), min(t + window / 2, duration)
        if hi - lo < min_seconds:
            raise Skip(f"too short: {hi - lo:.1f} s of audio around the snapshot (need {min_seconds:g})")
        frame = None
        vs = container.streams.video[0]
        container.seek(int(max(t - 1.0, 0.0) / vs.time_base), stream=vs, backward=True)
        for f in container.decode(vs):  # the first frame at or after t (the last one if none is)
            frame = f
            if f.time is not None and f.time + 1e-6 >= t:
                break
        frame = frame.to_ndarray(format="rgb24") if frame is not None else None
        container.seek(0)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        chunks = []
        for f in container.decode(container.streams.audio[0]):
            for g in resampler.resample(f):
                chunks.append(g.to_ndarray().reshape(-1))
        for g in resampler.resample(None):
            chunks.append(g.to_ndarray().reshape(-1))
    if frame is None:
        raise Skip("no decodable frame")
    wave = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    wave = wave[int(lo * SAMPLE_RATE):int(hi * SAMPLE_RATE)].astype(np.float32)
    if len(wave) < min_seconds * SAMPLE_RATE:
        raise Skip(f"too short: {len(wave) / SAMPLE_RATE:.1f} s of decoded audio (need {min_seconds:g})")
    return {"time": t, "frame": frame, "wave": wave}


def mel_png(wave: np.ndarray) -> bytes:
    """The mel spectrogram (64 bands, dB, 10 ms hop) as a grayscale PNG, low frequencies at the bottom."""
    import librosa
    from PIL import Image

    mel = librosa.feature.melspectrogram(y=wave, sr=SAMPLE_RATE, n_fft=1024, hop_length=160, n_mels=64)
    db = librosa.power_to_db(mel, ref=np.max, top_db=80.0)
    img = ((db + 80.0) / 80.0 * 255.0).clip(0, 255).astype(np.uint8)[::-1]
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _png(frame: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return buf.getvalue()


def build(videos: str, csv_path: str, out: str, client: llm.ChatClient, *, snapshot: str | float = "middle",
          concurrency: int = 4, limit: int = 0, seed: int = 0, test_fraction: float = 0.01,
          retry_failed: bool = False, tfds_dir: str = "") -> dict[str, Any]:
    """Build the dataset in `out` (see the module docstring); returns the manifest."""
    rows = read_csv(csv_path)[:limit or None]
    for sub in ("audio", "images", "mels", "captions"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    with WorkdirLock(out, who="build", what="output folder", flag="--out"):  # one build per folder
        return _build(rows, videos, out, client, snapshot=snapshot, concurrency=concurrency, seed=seed,
                      test_fraction=test_fraction, retry_failed=retry_failed, tfds_dir=tfds_dir)


def _build(rows: list[Row], videos: str, out: str, client: llm.ChatClient, *, snapshot: str | float,
           concurrency: int, seed: int, test_fraction: float, retry_failed: bool, tfds_dir: str) -> dict[str, Any]:
    """The build itself, holding the folder's lock."""
    import soundfile
    from PIL import Image

    from kdjax.train.logging import progress_bar

    failures: list[dict[str, str]] = []
    media: dict[str, dict[str, Any]] = {}
    bar = progress_bar(len(rows), "vggcaps: audio, snapshots, spectrograms", "video")
    for row in rows:
        bar.update(1)
        paths = {k: os.path.join(out, d, row.id + ext) for k, d, ext in
                 (("audio", "audio", ".flac"), ("image", "images", ".jpg"), ("mel", "mels", ".png"))}
        if not all(os.path.exists(p) for p in paths.values()):
            video = find_video(videos, row)
            try:
                if video is None:
                    raise Skip("no video file")
                clip = extract(video, row, snapshot)
            except Skip as e:
                failures.append({"id": row.id, "where": row.where, "reason": str(e)})
                continue
            buf = io.BytesIO()
            soundfile.write(buf, clip["wave"], SAMPLE_RATE, format="FLAC")
            _atomic_bytes(paths["audio"], buf.getvalue())
            jpg = io.BytesIO()
            Image.fromarray(clip["frame"]).save(jpg, format="JPEG", quality=92)
            _atomic_bytes(paths["image"], jpg.getvalue())
            _atomic_bytes(paths["mel"], mel_png(clip["wave"]))
        media[row.id] = {"row": row, **paths}
    bar.close()
    items = [{"id": i, "category": m["row"].label, "mel": (lambda p=m["mel"]: open(p, "rb").read()),
              "snapshot": (lambda p=m["image"]: _png(np.asarray(Image.open(p).convert("RGB"))))}
             for i, m in media.items()]
    answers = llm.caption_items(client, items, os.path.join(out, "captions"), concurrency, retry_failed)
    rng = random.Random(seed)
    kept = []
    for i, m in media.items():
        a = answers[i]
        if "refined" not in a:
            failures.append({"id": i, "where": m["row"].where, "reason": f"captioning: {a['error']}"})
            continue
        kept.append({"id": i, "audio": os.path.relpath(m["audio"], out), "image": os.path.relpath(m["image"], out),
                     "caption": a["refined"], "raw_caption": a["raw"], "category": m["row"].label})
    n_test = max(1, round(test_fraction * len(kept))) if kept else 0
    test_ids = set(rng.sample(sorted(r["id"] for r in kept), n_test))
    tmp = os.path.join(out, "vggcaps.jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in kept:
            f.write(json.dumps({**r, "split": "test" if r["id"] in test_ids else "train"}, ensure_ascii=False) + "\n")
    os.replace(tmp, os.path.join(out, "vggcaps.jsonl"))
    reasons: dict[str, int] = {}
    for x in failures:
        key = x["reason"].split(":")[0] if x["reason"].startswith(("too short", "captioning")) else x["reason"]
        reasons[key] = reasons.get(key, 0) + 1
    manifest = {"rows": len(rows), "items": len(kept), "train": len(kept) - len(test_ids), "test": len(test_ids),
                "left_out": len(failures), "left_out_by_reason": reasons, "failures": failures}
    if tfds_dir and kept:
        from kdjax.data import tfds_builders

        manifest["tfds"] = tfds_builders.build("vggcaps", tfds_dir, manual_dir=out)
    with open(os.path.join(out, "manifest.json.tmp"), "w") as f:
        json.dump(manifest, f, indent=2)
    os.replace(os.path.join(out, "manifest.json.tmp"), os.path.join(out, "manifest.json"))
    logging.info("vggcaps: %d items (%d test), %d left out", len(kept), len(test_ids), len(failures))
    return manifest
