"""The audio stack end to end: CED-tiny learns the embedded real sounds; augmented runs resume exactly;
users' manifests with bad clips fail naming the file or skip and report them; a trained tagger labels clips
(--mode=predict) and becomes another system's audio encoder."""

import json
import math
import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from kdjax.data import real_sounds
from tests import runs

CONFIG = "configs/audio_tagging.py:real_sounds"
QUICK = ("--config.model.depth=2", "--config.train.batch_size=4", "--config.data.clip_seconds=0.5", "--config.optim.decay=constant",
         "--config.optim.warmup_ratio=0", "--config.train.log_every=1", "--config.eval.every=0")


@pytest.mark.slow
def test_ced_tiny_learns_real_sounds(tmp_path):
    """200 steps from random init. Held out: the validation and test clips (48; no checkpoint selection,
    so validation is as unseen as test). Five classes: chance 0.2, majority class 0.29."""
    wd = str(tmp_path / "learn")
    runs.run(CONFIG, wd, timeout=1200, optimize=True)
    with open(os.path.join(wd, "report.json")) as f:
        report = json.load(f)
    m, n = report["metrics"], report["info"]["num_examples"]
    assert report["params"] == "final"
    held_out = (m["dev"]["accuracy"] * n["validation"] + m["test"]["accuracy"] * n["test"]) / (
        n["validation"] + n["test"])
    majority = report["info"]["majority_class_accuracy"]["test"]
    assert held_out >= 0.45 and held_out >= majority + 0.15, m
    assert (m["dev"]["balanced_accuracy"] + m["test"]["balanced_accuracy"]) / 2 >= 0.4, m
    losses = [r["loss"] for r in runs.train_rows(wd)]
    assert np.mean(losses[-3:]) < np.log(5) - 0.25, losses  # log 5: the loss of a uniform guess


# its tests run in one xdist worker, which makes the run once
SHARES_SIX_STEPS = pytest.mark.xdist_group("ced_six_steps")


@pytest.fixture(scope="module")
def six_steps(tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("six") / "a")
    runs.run(CONFIG, wd, *QUICK, "--config.train.steps=6", "--config.train.checkpoint_every=3")
    return wd


@SHARES_SIX_STEPS
def test_augmented_run_resumes_exactly(six_steps, tmp_path):
    """A 6-step run, and a copy of its workdir cut back to the step-3 checkpoint and resumed: same
    parameters, same losses. Augmentation and crop draws come from (seed, stream position), which the
    checkpointed grain iterator state restores."""
    a, b = six_steps, str(tmp_path / "b")
    shutil.copytree(a, b)
    shutil.rmtree(os.path.join(b, "checkpoints", "6"))
    os.remove(os.path.join(b, "report.json"))
    runs.run(CONFIG, b, *QUICK, "--config.train.steps=6", "--config.train.checkpoint_every=3")
    pa, pb = runs.final_params(a), runs.final_params(b)
    assert int(pa["__step__"]) == int(pb["__step__"]) == 6
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)
    assert [r["loss"] for r in runs.train_rows(a)] == [r["loss"] for r in runs.train_rows(b)]
    with open(os.path.join(b, "metrics.jsonl")) as f:
        assert [r["step"] for r in map(json.loads, f) if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]


@SHARES_SIX_STEPS
@pytest.mark.slow
def test_same_losses_on_8_devices(six_steps, tmp_path):
    """CED's logical axes on a data x fsdp x tensor = 2 x 2 x 2 mesh: the same run, the same numbers
    (BatchNorm statistics are global over the sharded batch)."""
    wd = str(tmp_path / "mesh")
    runs.run(CONFIG, wd, *QUICK, "--config.train.steps=6", "--config.train.checkpoint_every=3",
             "--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=2", "--config.eval.final=False",
             devices=8)
    one, eight = runs.train_rows(six_steps), runs.train_rows(wd)
    np.testing.assert_allclose([r["loss"] for r in eight], [r["loss"] for r in one], rtol=2e-4)
    pa, pb = runs.final_params(six_steps), runs.final_params(wd)
    for k in ("init_bn.scale", "blocks.1.attn.q_proj.kernel", "outputlayer.layers.1.kernel"):
        np.testing.assert_allclose(pb[k], pa[k], atol=2e-4, err_msg=k)


def _manifest(tmp_path, bad: bool) -> str:
    rows = real_sounds.manifest()
    lines = []
    for split, n in (("train", 8), ("validation", 4), ("test", 4)):
        for r in [r for r in rows if r["split"] == split][:n]:
            lines.append({"audio": r["audio"], "label": r["label"], "split": split})
    if bad:
        wave = np.zeros(8000, np.float32)
        sf.write(tmp_path / "short.wav", wave + 0.1, 16000)
        data = (tmp_path / "short.wav").read_bytes()
        (tmp_path / "truncated.wav").write_bytes(data[:len(data) // 2])
        lines += [{"audio": "truncated.wav", "label": "bird", "split": "train"},
                  {"audio": "missing.flac", "label": "alert", "split": "test"}]
    file = tmp_path / "clips.jsonl"
    file.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return str(file)


def test_manifest_with_bad_clips_errors_or_skips(tmp_path):
    file = _manifest(tmp_path, bad=True)
    common = (*QUICK, "--config.data.source=manifest", f"--config.data.manifest_file={file}",
              "--config.train.steps=2", "--config.augment.enabled=False")
    p = runs.run(CONFIG, str(tmp_path / "err"), *common, check=False)
    assert p.returncode != 0
    assert "truncated.wav: truncated WAV file" in p.stderr.strip().splitlines()[-1]
    wd = str(tmp_path / "skip")
    runs.run(CONFIG, wd, *common, "--config.data.on_bad_input=skip")
    with open(os.path.join(wd, "report.json")) as f:
        info = json.load(f)["info"]
    assert info["bad_audio_skipped"] == 2
    assert info["num_examples"] == {"train": 8, "validation": 4, "test": 4}
    assert any("missing.flac: audio file not found" in b for b in info["bad_audio"])


def test_finetune_keeps_released_encoder_and_adds_a_fresh_head(tmp_path):
    import torch
    from flax import nnx

    from configs.audio_tagging import get_config
    from kdjax.models import state as state_lib
    from kdjax.systems.audio_tagging import build_model
    from tests.torch_ced import TorchCED

    torch.manual_seed(0)
    ref = TorchCED("ced_tiny")
    torch.save(ref.state_dict(), tmp_path / "ced_tiny.pt")
    cfg = get_config("finetune")
    cfg.model.checkpoint = str(tmp_path / "ced_tiny.pt")
    model = build_model(cfg, num_classes=5)
    assert model.cfg.embed_dim == 192 and model.outputlayer.layers[1].kernel.shape == (192, 5)
    flat = state_lib.flatten(nnx.state(model))
    np.testing.assert_array_equal(flat["blocks.11.mlp.fc2.kernel"], ref.blocks[11].mlp.fc2.weight.detach().numpy().T)
    np.testing.assert_array_equal(flat["init_bn.mean"], ref.init_bn[1].running_mean.numpy())


def test_synthetic_tagger_is_another_systems_audio_encoder(tmp_path):
    """The multi-label `synthetic` variant (clips tagged with their events' (kind, pitch) pairs) trains a few steps
    and reports mAP; its workdir is then Multi2Cap's `audio.checkpoint`: ced_encoder gives the tagger's CED (trained
    BatchNorm statistics included) without its head, the same hidden states, and Multi2Cap's checks accept it."""
    import jax.numpy as jnp

    from configs.audio_tagging import get_config as audio_tagging_config
    from configs.multi2cap import get_config as multi2cap_config
    from kdjax.data.synthetic_sounds import TAGS, SyntheticSounds
    from kdjax.systems import audio_tagging, registry
    from kdjax.systems.checks import ConfigError
    from kdjax.train.restore import restore_trained, workdir_config

    wave, tags = SyntheticSounds(3, seed=5).tagged(2)
    events = SyntheticSounds(3, seed=5)[2]["events"]
    assert sorted(TAGS[i] for i in np.flatnonzero(tags)) == sorted(f"{e['kind']} {e['pitch']}" for e in events)
    # `synthetic_counts`: the same clip also tagged with each kind's repetitions; its config is accepted
    counted = audio_tagging_config("synthetic_counts")
    registry.validate(counted)
    _, more = SyntheticSounds(3, seed=5).tagged(2, tuple(counted.data.labels))
    assert len(more) == 30 and np.array_equal(more[:10], tags)
    assert sorted(counted.data.labels[i] for i in np.flatnonzero(more[10:]) + 10) == sorted(
        f"{e['kind']} x{e['count']}" for e in events)
    wd = str(tmp_path / "tagger")
    runs.run("configs/audio_tagging.py:synthetic", wd, "--config.model.depth=2", "--config.train.batch_size=4",
             "--config.data.clip_seconds=1.0", "--config.train.steps=3", "--config.train.log_every=1",
             "--config.data.synthetic.num_train=12", "--config.data.synthetic.num_validation=8",
             "--config.data.synthetic.num_test=8")
    with open(os.path.join(wd, "report.json")) as f:
        m = json.load(f)["metrics"]
    assert set(m["test"]) == {"mAP", "auroc", "accuracy"} and 0 < m["test"]["mAP"] <= 1
    rows = [json.loads(l) for l in open(os.path.join(wd, "predictions", "test.jsonl"), encoding="utf-8")]
    npz = np.load(os.path.join(wd, "predictions", "test.npz"))
    assert [r["id"] for r in rows] == [f"synthetic-test-{i}" for i in range(8)]
    assert [r["references"] for r in rows] == [[TAGS[j] for j in np.flatnonzero(t)] for t in npz["label"]]
    assert [r["prediction"]["labels"] for r in rows] == [[TAGS[j] for j in np.flatnonzero(p > 0.5)]
                                                         for p in npz["prob"]]
    cfg = workdir_config(wd)
    tagger = restore_trained(cfg, audio_tagging.build_model(cfg, len(TAGS)), None, wd)
    encoder = audio_tagging.ced_encoder(wd, arch="ced_tiny", depth=2, chunk_mode="concat")
    assert encoder.outputlayer is None and encoder.cfg.chunk_mode == "concat"
    assert float(jnp.abs(tagger.init_bn.mean.value).max()) > 0  # trained statistics, carried over
    x = np.random.default_rng(0).normal(size=(2, 16000)).astype(np.float32) * 0.1
    ones = np.ones(x.shape, bool)
    np.testing.assert_array_equal(encoder(x, ones)["last_hidden_state"], tagger(x, ones)["last_hidden_state"])
    with pytest.raises(Exception, match="has 2 blocks, 4 asked for"):
        audio_tagging.ced_encoder(wd, arch="ced_tiny", depth=4)
    m2c = multi2cap_config("tiny")
    m2c.audio.checkpoint = wd
    registry.validate(m2c)  # no problem
    m2c.audio.checkpoint = str(tmp_path)  # a directory that is neither
    with pytest.raises(ConfigError, match="audio.checkpoint: .* without config.json"):
        registry.validate(m2c)


def _clips(n: int) -> list[str]:
    return [r["audio"] for r in real_sounds.manifest(split="test")][:n]


@SHARES_SIX_STEPS
def test_predict_reads_files_directories_and_manifests_and_skips_what_it_cannot_read(six_steps, tmp_path):
    """--mode=predict (kdjax.systems.inference) on the six-step tagger: files, directories, manifests; unreadable
    inputs named, skipped, counted; a long clip heard whole; the workdir only read; bad paths refused first."""
    tagger = six_steps
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


@SHARES_SIX_STEPS
def test_every_input_unreadable_exits_nonzero(six_steps, tmp_path):
    tagger = six_steps
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF")
    p = runs.run_mode("predict", tagger, f"--input={bad}", check=False)
    assert p.returncode == 1 and "0 of 1 inputs predicted, 1 skipped" in p.stderr and p.stdout.strip() == ""
