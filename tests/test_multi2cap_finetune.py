"""Multi2Cap's two stages (thesis Tables 3.3-3.7): a fine-tuning run starts from a pre-trained workdir's trained
parameters, bit for bit, on a dataset without images (lambda = 0, no teacher), with a fresh optimiser."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from flax import nnx

from configs import multi2cap as m2c_config
from kdjax.data import real_sounds
from kdjax.errors import InputError
from kdjax.models import lora
from kdjax.models.state import flatten
from kdjax.systems import registry
from kdjax.train.restore import workdir_config
from kdjax.systems.multi2cap import models as m2c_models, task as m2c_task
from tests import runs


def _manifest_without_images(path) -> str:
    """The embedded set's clips and captions with no picture: an image-less dataset like Clotho or AudioCaps."""
    with open(path, "w") as f:
        for split, rows in real_sounds.caption_rows().items():
            for r in rows:
                f.write(json.dumps({"audio": r["audio"], "captions": r["captions"], "split": split}) + "\n")
    return str(path)


def _finetune_overrides(pre: str, manifest: str) -> list[str]:
    return [f"--config.init_from={pre}", "--config.cfd.weight=0", "--config.teacher.kind=none",
            "--config.data.source=manifest", f"--config.data.manifest_file={manifest}"]


@runs.SHARES_M2C_TINY
@pytest.mark.slow
def test_finetune_starts_from_the_pretrained_parameters_on_a_dataset_without_images(m2c_tiny_run, tmp_path):
    pre = m2c_tiny_run
    manifest = _manifest_without_images(tmp_path / "clips.jsonl")
    # step 0 of the fine-tuning stage: its trained parameters are the pre-trained model's, bit for bit (read back
    # through the captioning path, which builds the pre-training model itself), the frozen bases too
    cfg = m2c_config.get_config("tiny")
    cfg.init_from, cfg.cfd.weight, cfg.teacher.kind = pre, 0.0, "none"
    cfg.data.source, cfg.data.manifest_file = "manifest", manifest
    task = m2c_task.build(cfg, str(tmp_path / "inproc"))
    assert task.teacher is None and "image" not in task.batch_spec
    trained, _ = m2c_task.load_trained(workdir_config(pre), pre)  # audio-only: without its CFD heads
    ours, theirs = flatten(nnx.state(task.model, nnx.Param)), flatten(nnx.state(trained, nnx.Param))
    assert set(ours) == set(theirs)
    for name, value in ours.items():
        assert np.array_equal(np.asarray(value), np.asarray(theirs[name])), name
    info = task.info["init_from"]
    assert info["checkpoint"].startswith(pre)
    assert info["unused"] == ["cfd_audio.bias", "cfd_audio.kernel", "cfd_image.bias", "cfd_image.kernel"]
    trainable = flatten(nnx.state(task.model, nnx.All(nnx.Param, nnx.Not(lora.frozen_filter(m2c_models.frozen(cfg))))))
    assert info["arrays"] == len(trainable) > 0

    # the CLI run trains on the image-less data and records where it started
    wd = str(tmp_path / "ft")
    runs.run("configs/multi2cap.py:tiny", wd, *_finetune_overrides(pre, manifest), "--config.train.steps=2",
             "--config.eval.final=False")
    report = json.load(open(os.path.join(wd, "report.json")))
    assert report["info"]["init_from"]["checkpoint"].startswith(pre)
    assert [r["step"] for r in runs.train_rows(wd)] == [1, 2]

    # a pre-training stage with other bases cannot start this one: refused before JAX starts, naming the setting
    p = runs.run("configs/multi2cap.py:tiny", str(tmp_path / "other"), *_finetune_overrides(pre, manifest),
                 "--config.audio.depth=1", check=False)
    assert p.returncode == 1
    assert f"init_from: {pre} was trained with other settings: audio.depth: 2 -> 1" in p.stderr, p.stderr[-2000:]


def test_finetune_variants_follow_table_3_7_and_need_the_pretrained_workdir():
    for variant in ("base_finetune", "small_finetune"):
        c = m2c_config.get_config(variant)
        assert (c.cfd.weight, c.teacher.kind, c.optim.lr, c.train.batch_size, c.train.epochs) == (
            0.0, "none", 1e-4, 384, 30)
        assert c.optim.warmup_ratio * c.train.epochs == pytest.approx(2)  # 2 warm-up epochs of 30
        assert c.data.clip_seconds == 30.0 and c.audio.chunk_mode == "concat"
        with pytest.raises(InputError) as err:
            registry.resolve(c)
        assert "init_from: must be set" in str(err.value)
    assert m2c_config.get_config("base").init_from == ""
