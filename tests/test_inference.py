"""Batch inference from a trained workdir (`--mode=predict`, `--mode=caption`; kdjax.systems.inference): inputs as
files, directories and manifests; every path checked before anything is written; unreadable inputs named, skipped
and counted; long clips whole, never cropped; the workdir only read. (The captioners' and DSG-KD's modes are
tested beside their trained runs: test_effaac, test_multi2cap, test_trainer_runs.)"""

import json
import math
import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from kdjax.data import real_sounds
from kdjax.systems import inference
from tests import runs

CONFIG = "configs/audio_tagging.py:real_sounds"
QUICK = ("--config.model.depth=2", "--config.train.batch_size=4", "--config.data.clip_seconds=0.5",
         "--config.train.steps=2", "--config.eval.every=0", "--config.eval.batch_size=4")


@pytest.fixture(scope="module")
def tagger(tmp_path_factory) -> str:
    wd = str(tmp_path_factory.mktemp("inference") / "tagger run")  # a path with a space
    runs.run(CONFIG, wd, *QUICK)
    return wd


def _clips(n: int) -> list[str]:
    return [r["audio"] for r in real_sounds.manifest(split="test")][:n]


def test_predict_reads_files_directories_and_manifests_and_skips_what_it_cannot_read(tagger, tmp_path):
    clips = _clips(6)
    folder = tmp_path / "clips dir"
    (folder / "sub").mkdir(parents=True)
    for i, c in enumerate(clips[:4]):
        shutil.copy(c, folder / ("sub" if i % 2 else "") / os.path.basename(c))
    (folder / "notes.txt").write_text("not audio")  # not an audio file: not an input
    broken = tmp_path / "broken.flac"
    broken.write_bytes(open(clips[4], "rb").read()[:200])
    long = tmp_path / "long.wav"  # 3.2 clip lengths: 4 chunks of the training crop
    sr, clip_samples = 16000, 8000
    wave = np.concatenate([np.random.default_rng(0).normal(0, 0.1, 3 * clip_samples), np.zeros(1600)])
    sf.write(long, wave.astype(np.float32), sr)
    manifest = runs.write_manifest(tmp_path / "m.jsonl", [{"audio": os.path.basename(str(long)), "id": "long"},
                                                          {"audio": "gone.wav", "id": "gone"},
                                                          {"audio": clips[5]}])
    out = tmp_path / "out" / "pred.jsonl"
    before = runs.snapshot(tagger)
    p = runs.run_mode("predict", tagger, f"--input={folder}", f"--input={broken}", f"--input={manifest}",
                      f"--out={out}")
    assert runs.snapshot(tagger) == before  # the workdir is only read
    rows = [json.loads(ln) for ln in open(out, encoding="utf-8")]
    in_folder = sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs
                       if f.endswith(".flac"))
    assert [r["id"] for r in rows] == [*in_folder, "long", "m.jsonl:3"]  # the inputs' order
    assert "skipped " + str(broken) in p.stderr and "m.jsonl:2: " in p.stderr and "gone.wav" in p.stderr
    assert "6 of 8 inputs predicted, 2 skipped (unreadable)" in p.stderr
    labels = json.load(open(os.path.join(tagger, "config.json")))["data"]["labels"]
    for r in rows:
        assert set(r["probabilities"]) == set(labels) and r["prediction"]["label"] in labels
        assert abs(sum(r["probabilities"].values()) - 1) < 1e-4
    # the long clip is heard whole (padded to 4 chunks of the training crop), as the model hears it directly
    [row] = [r for r in rows if r["id"] == "long"]
    assert row["seconds"] == pytest.approx(len(wave) / sr)
    import jax
    import ml_collections

    from kdjax.systems.audio_tagging import build_model
    from kdjax.train.restore import restore_trained

    cfg = ml_collections.ConfigDict(json.load(open(os.path.join(tagger, "config.json"))))
    model = restore_trained(cfg, build_model(cfg, len(labels)), None, tagger)
    n = math.ceil(len(wave) / clip_samples) * clip_samples
    x, m = np.zeros((1, n), np.float32), np.zeros((1, n), bool)
    x[0, :len(wave)], m[0, :len(wave)] = sf.read(long, dtype="float32")[0], True
    direct = np.asarray(jax.nn.softmax(model(x, m)["logits"], -1))[0]
    np.testing.assert_allclose([row["probabilities"][k] for k in labels], direct, atol=2e-6)
    cropped = np.asarray(jax.nn.softmax(model(x[:, :clip_samples], m[:, :clip_samples])["logits"], -1))[0]
    assert np.abs(cropped - direct).max() > 1e-4  # what a crop would have given differs

    # an existing --out is refused; so is a path that does not exist (nothing written), and the wrong mode
    again = runs.run_mode("predict", tagger, f"--input={clips[0]}", f"--out={out}", check=False)
    assert again.returncode != 0 and "exists; give a new file" in again.stderr
    fresh = tmp_path / "fresh.jsonl"
    missing = runs.run_mode("predict", tagger, f"--input={clips[0]}", "--input=/no/such.wav", f"--out={fresh}",
                            check=False)
    assert missing.returncode != 0 and "/no/such.wav: no such file or directory" in missing.stderr
    assert not fresh.exists() and not os.path.exists(str(fresh) + ".partial")
    wrong = runs.run_mode("caption", tagger, f"--input={clips[0]}", check=False)
    assert wrong.returncode != 0 and "has no --mode=caption; use --mode=predict" in wrong.stderr
    with_config = runs.run_mode("predict", tagger, f"--input={clips[0]}", f"--config={runs.REPO}/{CONFIG}",
                                check=False)
    assert with_config.returncode != 0 and "drop --config" in with_config.stderr
    assert runs.snapshot(tagger) == before


def test_every_input_unreadable_exits_nonzero(tagger, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF")
    p = runs.run_mode("predict", tagger, f"--input={bad}", check=False)
    assert p.returncode == 1 and "0 of 1 inputs predicted, 1 skipped" in p.stderr and p.stdout.strip() == ""


def test_listing_inputs_names_what_it_cannot_use(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="a directory without audio files"):
        inference.list_inputs([str(tmp_path / "empty")], "audio")
    (tmp_path / "a.csv").write_text("text\nx\n")
    with pytest.raises(Exception, match=r"a.csv: not an audio file .* or a manifest \(.jsonl\)"):
        inference.list_inputs([str(tmp_path / "a.csv")], "audio")
    (tmp_path / "notes.csv").write_text("id,body\n7,fever and cough\n,\n")
    items = inference.list_inputs([str(tmp_path / "notes.csv")], "text", text_column="body")
    assert [(i.id, i.text) for i in items] == [("7", "fever and cough"), ("notes.csv:3", "")]
    with pytest.raises(Exception, match="no column 'text'"):
        inference.list_inputs([str(tmp_path / "notes.csv")], "text")
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(Exception, match="x.png: not an audio file"):
        inference.list_inputs([str(tmp_path / "x.png")], "audio")
