"""`data.source='synthetic'`: generated clips whose captions and pictures name their events, as a caption dataset
for the captioning systems (a teacher trained on far more clips than a student sees)."""

import json

import numpy as np
import pytest

from configs import effaac as effaac_config
from kdjax.data import captions
from kdjax.errors import InputError
from kdjax.systems import registry
from tests import runs


def _data(**synthetic):
    d = effaac_config.get_config("tiny").data
    d.source = "synthetic"
    d.synthetic.update({"num_train": 40, "num_validation": 6, "num_test": 6, "seed": 0, **synthetic})
    return d


def test_splits_are_generated_on_access_disjoint_and_their_captions_need_no_audio():
    d = _data()
    src, items_of, skipped = captions.sources(d)
    assert skipped == [] and {k: len(v) for k, v in src.items()} == {"train": 40, "validation": 6, "test": 6}
    for split in src:
        assert items_of(split) == [{"id": src[split][i]["id"], "input": None, "captions": src[split][i]["captions"]}
                                   for i in range(len(src[split]))]
    ex = src["train"][7]
    assert ex["wave"].shape == (int(d.clip_seconds * d.sample_rate),) and ex["image"].dtype == np.uint8
    assert ex["id"] == "synthetic-train-7"
    again = captions.sources(_data())[0]["train"][7]
    assert np.array_equal(ex["wave"], again["wave"]) and ex["captions"] == again["captions"]
    waves = {split: [src[split][i]["wave"].tobytes() for i in range(6)] for split in src}
    assert not set(waves["train"]) & set(waves["test"]) and not set(waves["validation"]) & set(waves["test"])
    other = captions.sources(_data(seed=1))[0]["train"][7]
    assert not np.array_equal(ex["wave"], other["wave"])
    assert captions.train_images(d) is None  # every clip has its picture


def test_sizes_are_checked_when_the_config_is_read():
    cfg = effaac_config.get_config("tiny")
    cfg.data.source = "synthetic"
    cfg.data.synthetic.num_test = 0
    with pytest.raises(InputError, match="data.synthetic.num_test"):
        registry.validate(cfg)


def test_multi2cap_trains_on_synthetic_clips_and_their_pictures(tmp_path):
    wd = tmp_path / "m2c"
    runs.run("configs/multi2cap.py:tiny", str(wd), "--config.data.source=synthetic",
             "--config.data.synthetic.num_train=16", "--config.data.synthetic.num_validation=4",
             "--config.data.synthetic.num_test=4", "--config.train.steps=2")
    report = json.load(open(wd / "report.json"))
    assert report["info"]["num_examples"] == {"train": 16, "validation": 4, "test": 4}
    rows = [json.loads(line) for line in open(wd / "metrics.jsonl")]
    assert any(r.get("l_cfd", 0) > 0 for r in rows if r.get("split") == "train")  # the pictures reached the CFD term
    assert report["metrics"]["test"] and report["step"] == 2
