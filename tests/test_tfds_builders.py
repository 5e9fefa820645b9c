"""array_record datasets for captioning (no TensorFlow): Clotho and AudioCaps release layouts, VggCaps, the
embedded set; decoding round trips; Multi2Cap trains from them lazily."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from kdjax.data import tfds_builders as tb
from kdjax.errors import InputError


def _wav(path, seconds=1.0, freq=440.0, sr=22050):
    t = np.arange(int(seconds * sr)) / sr
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, 0.3 * np.sin(2 * np.pi * freq * t), sr)


def _csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def clotho_release(root, counts=(("development", 3), ("validation", 1), ("evaluation", 2))):
    """Clotho's release layout at `root`: per split its WAVs (clip i lasts 1 + i s) and its captions CSV."""
    for name, n in counts:
        rows = []
        for i in range(n):
            _wav(str(root / name / f"{name}_{i}.wav"), 1.0 + i, 300.0 + 50 * i)
            rows.append([f"{name}_{i}.wav"] + [f"{name} clip {i} caption {k}" for k in range(1, 6)])
        os.makedirs(root, exist_ok=True)
        _csv(str(root / f"clotho_captions_{name}.csv"), ["file_name"] + [f"caption_{k}" for k in range(1, 6)], rows)
    return root


def test_clotho_layout_round_trips(tmp_path):
    root = clotho_release(tmp_path / "clotho")
    out = tb.build("clotho", str(tmp_path / "tfds"), str(root))
    train = tb.open_split(out, "train")
    assert len(train) == 3 and len(tb.open_split(out, "test")) == 2
    row = tb.decode_row(train[1])
    assert row["id"].startswith("development/") and len(row["captions"]) == 5 and row["image"] is None
    i = int(row["id"].split("_")[-1].split(".")[0])
    assert abs(len(row["wave"]) - (1.0 + i) * tb.SAMPLE_RATE) <= 1  # resampled to 16 kHz
    ref, _ = sf.read(str(root / "development" / f"development_{i}.wav"))
    assert np.abs(row["wave"]).max() == pytest.approx(np.abs(ref).max(), abs=2e-3)
    assert row["captions"][0] == f"development clip {i} caption 1"


def test_audiocaps_groups_references_and_counts_missing_clips(tmp_path):
    root = tmp_path / "audiocaps"
    os.makedirs(root)
    for split, n in (("train", 2), ("val", 1), ("test", 1)):
        rows = []
        for i in range(n):
            yid = f"{split}{i}"
            if not (split == "train" and i == 1):  # one video is gone
                _wav(str(root / "audio" / split / f"{yid}.wav"))
            for k in range(5 if split == "test" else 1):
                rows.append([f"{split}{i}{k}", yid, "30", f"{split} {i} ref {k}"])
        _csv(str(root / f"{split}.csv"), ["audiocap_id", "youtube_id", "start_time", "caption"], rows)
    out = tb.build("audiocaps", str(tmp_path / "tfds"), str(root))
    assert len(tb.open_split(out, "train")) == 1
    test = tb.decode_row(tb.open_split(out, "test")[0])
    assert test["captions"] == [f"test 0 ref {k}" for k in range(5)]
    missing = open(os.path.join(out, "missing_audio.txt")).read()
    assert "train.csv" in missing and "train1" in missing
    with pytest.raises(InputError, match="audio file missing"):
        tb.build("audiocaps", str(tmp_path / "tfds_strict"), str(root), on_missing="error")


def test_vggcaps_keeps_images_and_bad_rows_name_the_line(tmp_path):
    root = tmp_path / "vggcaps"
    _wav(str(root / "a.wav"))
    Image.fromarray(np.full((60, 80, 3), 200, np.uint8)).save(root / "a.jpg")
    rows = [{"id": f"v{s}", "audio": "a.wav", "image": "a.jpg", "caption": f"a {s} scene", "split": s}
            for s in ("train", "validation", "test")]
    (root / "vggcaps.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tb.build("vggcaps", str(tmp_path / "tfds"), str(root))
    row = tb.decode_row(tb.open_split(out, "train")[0])
    assert row["image"].shape == (60, 80, 3) and abs(int(row["image"].mean()) - 200) < 3
    (root / "vggcaps.jsonl").write_text(json.dumps({"id": "x", "audio": "a.wav"}) + "\n")
    with pytest.raises(InputError, match=r"vggcaps.jsonl:1"):
        tb.build("vggcaps", str(tmp_path / "tfds2"), str(root))


@pytest.mark.slow
def test_multi2cap_trains_from_the_embedded_array_record_set(tmp_path):
    from kdjax.systems import multi2cap
    from kdjax.train.trainer import Trainer
    from tests.test_multi2cap import tiny_config

    out = tb.build("embedded", str(tmp_path / "tfds"))
    assert len(tb.open_split(out, "train")) == 86
    cfg = tiny_config(steps=2)
    cfg.data.source, cfg.data.tfds_dir = "tfds", out
    task = multi2cap.build(cfg, str(tmp_path / "run"))
    assert task.info["num_examples"] == {"train": 86, "validation": 19, "test": 19}
    first = task.train_data[0]  # decoded on access
    assert first["wave"].dtype == np.float32 and first["image"].shape[-1] == 3
    result = Trainer(cfg, task, str(tmp_path / "run")).run()
    assert result.step == 2 and np.isfinite(result.metrics["test"]["bleu_1"])
