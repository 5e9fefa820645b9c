"""The embedded real audio set: contents, fixed splits, formats, licences; and the builder on a
miniature Debian tree (so CI needs no apt-get)."""

import json
import os

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from kdjax.data import real_sounds
from kdjax.errors import InputError


def test_embedded_set_contents():
    rows = real_sounds.manifest()
    s = real_sounds.summary(rows)
    assert s["examples"] == 159 and s["with_image"] == 124 and s["with_korean"] == 124
    assert s["by_split"] == {"train": 111, "validation": 24, "test": 24}
    assert set(s["by_label"]) == set(real_sounds.LABELS) and min(s["by_label"].values()) >= 18
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids)
    for split in real_sounds.SPLITS:  # every class appears in every split
        assert {r["label"] for r in real_sounds.manifest(split=split)} == set(real_sounds.LABELS)
    cat = next(r for r in rows if r["id"] == "tuxpaint/animals/mammals/cats/tiger")
    assert cat["caption"] == "A tiger." and cat["caption_ko"] and cat["label"] == "animal"
    size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(real_sounds.HERE) for f in fs)
    assert size <= 10 * 2**20
    for pkg in real_sounds.LICENCES:
        assert os.path.getsize(os.path.join(real_sounds.HERE, f"LICENSE.{pkg}.txt")) > 100


def test_embedded_audio_and_images_are_normalised():
    for r in real_sounds.manifest()[::10]:
        info = sf.info(r["audio"])
        assert info.samplerate == 16000 and info.channels == 1
        assert abs(info.duration - r["seconds"]) < 1e-3
        if r["image"]:
            img = Image.open(r["image"])
            assert img.size == (224, 224) and img.mode == "RGB"


def test_unknown_split_is_refused():
    with pytest.raises(InputError, match="unknown split 'dev'"):
        real_sounds.manifest(split="dev")


def _fake_tree(tmp_path):
    """A miniature /usr/share/tuxpaint/stamps and freedesktop theme built from embedded clips."""
    rows = real_sounds.manifest()
    stamps, theme = tmp_path / "stamps", tmp_path / "stereo"
    sr = 22050
    for i, (cat, stem) in enumerate([("animals/birds", "owl"), ("animals/mammals", "dog"),
                                     ("symbols/math", "7"), ("household", "kettle")]):
        d = stamps / cat
        d.mkdir(parents=True)
        wave = sf.read(rows[i]["audio"])[0]
        sf.write(d / f"{stem}.ogg", np.stack([wave, wave], 1), 16000)  # stereo, needs mixing down
        sf.write(d / f"{stem}_desc_fr.ogg", wave, 16000)  # spoken names are not sound effects
        (d / f"{stem}.txt").write_text(f"A {stem}.\nfr.utf8=Un {stem}.\nko.utf8=한국어 {stem}\n", encoding="utf-8")
        Image.new("RGBA", (300, 150), (200, 10, 10, 255)).save(d / f"{stem}.png")
    # a duplicate recording under another name is kept once
    d = stamps / "animals/mammals"
    (d / "dog2.ogg").write_bytes((d / "dog.ogg").read_bytes())
    (d / "dog2.txt").write_text("A dog.\n", encoding="utf-8")
    Image.new("RGB", (10, 10)).save(d / "dog2.png")
    theme.mkdir()
    sf.write(theme / "bell.oga", np.sin(np.arange(sr) / 5.0) * 0.3, sr, format="OGG")
    return stamps, theme


def test_builder_on_a_miniature_tree(tmp_path, monkeypatch):
    stamps, theme = _fake_tree(tmp_path)
    licence = tmp_path / "copyright"
    licence.write_text("licence text")
    monkeypatch.setattr(real_sounds, "LICENCES", {k: str(licence) for k in real_sounds.LICENCES})
    out = str(tmp_path / "out")
    summary = real_sounds.build(out, str(stamps), str(theme))
    assert summary["examples"] == 5 and summary["with_image"] == 4 and summary["with_korean"] == 4
    assert summary["by_label"] == {"animal": 1, "bird": 1, "voice": 1, "object": 1, "alert": 1}
    rows = real_sounds.manifest(out)
    owl = next(r for r in rows if r["id"] == "tuxpaint/animals/birds/owl")
    assert owl["caption"] == "A owl." and owl["caption_ko"] == "한국어 owl"
    wave, sr = sf.read(owl["audio"])
    assert sr == 16000 and wave.ndim == 1
    img = np.asarray(Image.open(owl["image"]))
    assert img.shape == (224, 224, 3) and img[0, 0].min() > 240 and img[112, 112, 0] > 150  # letterboxed
    # deterministic: a second build gives the same manifest
    again = str(tmp_path / "again")
    real_sounds.build(again, str(stamps), str(theme))
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("audio", "image")} for r in rs]
    assert strip(real_sounds.manifest(again)) == strip(rows)
    with open(os.path.join(out, "manifest.jsonl")) as f:
        assert all(json.loads(line)["split"] in real_sounds.SPLITS for line in f)


def test_builder_names_missing_packages(tmp_path):
    with pytest.raises(InputError, match="apt-get install tuxpaint-stamps-default"):
        real_sounds.build(str(tmp_path / "o"), str(tmp_path / "nope"), str(tmp_path))
