"""gs:// paths (issue 25 part 4) through a GCS server on localhost (tests/gcs_emulator.py), and local paths with
spaces: workdirs (config, logs, lock, checkpoints, predictions, report), resuming, teacher caches, manifests with
audio beside them, inference inputs and outputs, and exports. kdjax's own reads and writes go through
kdjax.paths (epath and gcsfs), orbax's through tensorstore: both reach the same emulated bucket."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from kdjax import paths
from tests import gcs_emulator, runs

BUCKET = f"gs://{gcs_emulator.BUCKET}"


@pytest.fixture(scope="module")
def gcs():
    with gcs_emulator.running() as url:
        yield url


def test_path_helpers_on_a_bucket_and_on_a_local_path_with_spaces(gcs, tmp_path):
    for root in (f"{BUCKET}/helpers dir", str(tmp_path / "local dir")):
        f = paths.join(root, "a", "b.txt")
        paths.makedirs(paths.parent(f))
        paths.write_text(f, "one\n")
        paths.append_text(f, "two\n")
        assert paths.read_text(f) == "one\ntwo\n" and paths.isfile(f) and not paths.isdir(f)
        assert paths.isdir(paths.join(root, "a")) and not paths.isfile(paths.join(root, "a"))
        with pytest.raises(FileExistsError):
            paths.create_exclusive(f, "x")
        assert paths.read_text(f) == "one\ntwo\n"
        paths.create_exclusive(paths.join(root, "lock"), "me")
        assert paths.walk_files(root) == ["a/b.txt", "lock"]
        with paths.local_dir(paths.join(root, "out")) as d:
            os.makedirs(os.path.join(d, "sub"))
            with open(os.path.join(d, "sub", "x.bin"), "wb") as fh:
                fh.write(b"\0\1")
        assert paths.read_bytes(paths.join(root, "out", "sub", "x.bin")) == b"\0\1"
        with paths.local_copy(paths.join(root, "out")) as d:
            assert open(os.path.join(d, "sub", "x.bin"), "rb").read() == b"\0\1"
        paths.move(paths.join(root, "out"), paths.join(root, "moved"))
        assert not paths.exists(paths.join(root, "out"))
        assert paths.getsize(paths.join(root, "moved", "sub", "x.bin")) == 2
        assert paths.listdir(root) == ["a", "lock", "moved"]
    moved = f"{BUCKET}/helpers dir/moved"
    mirror = paths.local_mirror(moved)  # copied once per machine, reused while the files stay the same
    assert open(os.path.join(mirror, "sub", "x.bin"), "rb").read() == b"\0\1"
    os.utime(os.path.join(mirror, "sub", "x.bin"), (1, 1))  # a reuse does not copy again
    assert paths.local_mirror(moved) == mirror and os.stat(os.path.join(mirror, "sub", "x.bin")).st_mtime == 1
    paths.write_bytes(paths.join(moved, "sub", "x.bin"), b"\0\1\2")  # changed there: copied again
    assert open(os.path.join(paths.local_mirror(moved), "sub", "x.bin"), "rb").read() == b"\0\1\2"
    with pytest.raises(RuntimeError):  # a block that fails uploads nothing
        with paths.local_dir(f"{BUCKET}/never") as d:
            open(os.path.join(d, "x"), "w").write("x")
            raise RuntimeError("stop")
    assert not paths.exists(f"{BUCKET}/never")


def test_teacher_cache_manifest_and_audio_in_a_bucket(gcs, tmp_path):
    from kdjax.audio.io import AudioError, duration, load_audio
    from kdjax.data import captions
    from kdjax.teachers import cache

    fields = {"embedding": cache.field(np.float32, (3,)), "caption": cache.field(cache.STR)}
    rows = [{"id": f"c{i}", "embedding": np.full(3, i, np.float32), "caption": f"clip {i}"} for i in range(5)]
    for where in (f"{BUCKET}/caches/one", str(tmp_path / "cache dir")):
        cache.write_shard(where, rows[:3], fields, teacher="t")
        cache.write_shard(where, rows[3:], fields, teacher="t")
        got = cache.OutputCache(where)
        assert len(got) == 5 and cache.done_ids(where) == {r["id"] for r in rows}
        np.testing.assert_array_equal(got.get("c4")["embedding"], np.full(3, 4, np.float32))
        assert got.get("c1")["caption"] == "clip 1"
    assert sorted(paths.listdir(f"{BUCKET}/caches/one")) == sorted(os.listdir(tmp_path / "cache dir"))

    wave = np.sin(np.arange(16000) / 5.0).astype(np.float32) * 0.5
    buf = io.BytesIO()
    sf.write(buf, wave, 16000, format="WAV", subtype="FLOAT")
    paths.write_bytes(f"{BUCKET}/data/audio/a b.wav", buf.getvalue())
    paths.write_text(f"{BUCKET}/data/clips.jsonl", json.dumps(
        {"id": "x", "audio": "audio/a b.wav", "split": "train", "caption": "a tone"}) + "\n")
    train = captions.read_manifest(f"{BUCKET}/data/clips.jsonl")["train"]
    assert train[0]["audio"] == f"{BUCKET}/data/audio/a b.wav"
    np.testing.assert_allclose(load_audio(train[0]["audio"], 16000), wave, atol=1e-6)
    assert duration(train[0]["audio"]) == pytest.approx(1.0)
    with pytest.raises(AudioError, match=f"{BUCKET}/data/audio/none.wav: audio file not found"):
        load_audio(f"{BUCKET}/data/audio/none.wav", 16000)

    # a config naming files in a bucket is checked there: present ones pass, a missing one is named
    from configs.audio_tagging import get_config
    from kdjax.systems import registry

    cfg = get_config("real_sounds")
    cfg.data.source, cfg.data.manifest_file = "manifest", f"{BUCKET}/data/clips.jsonl"
    registry.validate(cfg)
    cfg.data.manifest_file = f"{BUCKET}/data/none.jsonl"
    with pytest.raises(Exception, match=f"data.manifest_file: path not found: {BUCKET}/data/none.jsonl"):
        registry.validate(cfg)


def _kdjax(env: dict, *args: str) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "kdjax.main", *args], env=env, cwd=runs.REPO, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, f"{args}:\n{p.stdout[-2000:]}\n{p.stderr[-5000:]}"
    return p


def test_a_run_in_a_bucket_resumes_exactly_exports_and_predicts(gcs, tmp_path):
    import torch
    import transformers

    from kdjax.systems.dsg_kd.models import trained_classifier

    env = {**runs.env(), **gcs_emulator.variables(gcs)}
    work, config = f"{BUCKET}/runs/dsg kd", os.path.join(runs.REPO, "configs/dsg_kd.py:tiny")
    args = (f"--config={config}", f"--workdir={work}", "--config.train.steps=4",
            "--config.train.checkpoint_every=2", "--config.eval.every=0")
    _kdjax(env, *args)

    def train_rows():
        return [r for r in map(json.loads, paths.read_text(paths.join(work, "metrics.jsonl")).splitlines())
                if r["split"] == "train"]

    # as if killed after step 2's checkpoint: the rerun resumes from the bucket and computes steps 3-4 again
    uninterrupted = train_rows()
    assert {"2", "4"} <= set(paths.listdir(paths.join(work, "checkpoints")))
    paths.path(paths.join(work, "checkpoints", "4")).rmtree()
    assert "resumed from step 2" in _kdjax(env, *args).stderr
    runs.assert_same_losses(train_rows(), uninterrupted, ("loss", "ce", "hidn", "attn"), rtol=1e-6)
    for name in ("config.json", "report.json", "predictions/test.jsonl", "tokenizers/student/tokenizer.json"):
        assert paths.isfile(paths.join(work, name)), name
    assert json.loads(paths.read_text(paths.join(work, "report.json")))["step"] == 4
    assert not paths.exists(paths.join(work, ".kdjax.lock"))  # released

    # export from the bucket into the bucket; loaded in transformers, the logits of the model the workdir holds
    out = f"{BUCKET}/exports/dsg kd"
    listed = _kdjax(env, "--mode=export", f"--workdir={work}", f"--out={out}").stdout.splitlines()
    assert f"{out}/model.safetensors" in listed and paths.isfile(f"{out}/model.safetensors")
    notes = ["the patient was admitted with chest pain", "no acute distress, discharged home"]
    with paths.local_copy(work) as wd, paths.local_copy(out) as exported:
        ours, tok = trained_classifier(wd)
        enc = tok(notes, padding=True, return_tensors="np")
        model = transformers.AutoModelForSequenceClassification.from_pretrained(exported, trust_remote_code=True)
        with torch.no_grad():
            theirs = model.eval()(**{k: torch.tensor(v) for k, v in enc.items()}).logits.numpy()
        mine = ours(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids", np.zeros_like(
            enc["input_ids"])))["logits"]
        np.testing.assert_allclose(theirs, np.asarray(mine), atol=1e-5)

        # predictions from a bucket's workdir, inputs and output equal those of the same files on local disk
        paths.write_text(f"{BUCKET}/notes/in.csv", "id,text\n" + "".join(f"n{i},{t}\n" for i, t in enumerate(notes)))
        _kdjax(env, "--mode=predict", f"--workdir={work}", f"--input={BUCKET}/notes/in.csv",
               f"--out={BUCKET}/notes/out.jsonl")
        (tmp_path / "in.csv").write_text(paths.read_text(f"{BUCKET}/notes/in.csv"))
        _kdjax(env, "--mode=predict", f"--workdir={wd}", f"--input={tmp_path / 'in.csv'}",
               f"--out={tmp_path / 'out.jsonl'}")
    remote = [json.loads(x) for x in paths.read_text(f"{BUCKET}/notes/out.jsonl").splitlines()]
    mine = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in remote] == ["n0", "n1"]
    for a, b in zip(remote, mine):
        assert {k: v for k, v in a.items() if k != "input"} == {k: v for k, v in b.items() if k != "input"}


def test_a_dataset_built_into_a_bucket_from_files_in_a_bucket_reads_as_the_local_one(gcs, tmp_path):
    """kdjax.data.tfds_builders: the release files in a bucket, the array_record dataset written to a bucket, its
    splits read from there: the rows of the same build on local disk."""
    from kdjax.data import tfds_builders as tb
    from tests.test_tfds_builders import clotho_release

    root = clotho_release(tmp_path / "clotho", (("development", 2), ("validation", 1), ("evaluation", 1)))
    paths.upload_tree(str(root), f"{BUCKET}/release/clotho")
    remote = tb.build("clotho", f"{BUCKET}/tfds", f"{BUCKET}/release/clotho")
    local = tb.build("clotho", str(tmp_path / "tfds"), str(root))
    assert remote.startswith(f"{BUCKET}/tfds/") and paths.isfile(paths.join(remote, "dataset_info.json"))
    for split in ("train", "test"):
        a, b = tb.open_split(remote, split), tb.open_split(local, split)
        assert len(a) == len(b) > 0
        for x, y in zip(map(tb.decode_row, a), map(tb.decode_row, b)):
            assert x["id"] == y["id"] and x["captions"] == y["captions"]
            np.testing.assert_array_equal(x["wave"], y["wave"])
