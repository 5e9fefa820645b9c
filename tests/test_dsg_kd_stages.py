"""DSG-KD in two stages (issue 24's sixth design, a kdjax variant in TinyBERT's order): `kd.ce_weight=0` distils the
intermediate layers alone; `student.init_from` starts a later run from that student's encoder with a fresh head."""

import dataclasses
import json

import numpy as np
import pytest
from flax import nnx

from configs import dsg_kd as dsg_config
from kdjax.errors import InputError
from kdjax.losses.layers import layer_map
from kdjax.models.state import flatten
from kdjax.systems import registry
from kdjax.systems.dsg_kd.loss import student_loss
from kdjax.systems.dsg_kd.teacher import plan
from kdjax.train import resume_config
from kdjax.train.restore import read_params
from kdjax.train.trainer import Trainer
from tests import overrides, runs

STAGE_1 = ("--config.kd.ce_weight=0", "--config.train.early_stopping.metric=", "--config.train.steps=3",
           "--config.eval.every=3")


def _config(**over):
    cfg = overrides.apply(dsg_config.get_config("tiny"), over)
    registry.validate(cfg)
    return cfg


def test_ce_weight_scales_ce_alone(tmp_path):
    cfg = _config()
    task = registry.get("dsg_kd").build(cfg, str(tmp_path))
    batch = next(Trainer(cfg, task, str(tmp_path)).train_iterator())
    student, teacher = task.model.student.cfg, task.teacher.cfg
    p = plan(cfg, layer_map(cfg.kd.layer_map, student.num_hidden_layers, teacher.num_hidden_layers), student, teacher)
    full, terms = student_loss(task.model, task.teacher, batch, p, deterministic=True)
    kd_only, terms_0 = student_loss(task.model, task.teacher, batch, dataclasses.replace(p, ce_weight=0.0),
                                    deterministic=True)
    assert float(terms["ce"]) > 0.1 and float(terms_0["ce"]) == pytest.approx(float(terms["ce"]))  # still logged
    np.testing.assert_allclose(float(full) - float(kd_only), float(terms["ce"]), rtol=1e-5)
    np.testing.assert_allclose(float(kd_only), p.alpha * float(terms["hidn"]) + p.beta * float(terms["attn"]),
                               rtol=1e-5)


def test_a_stage_starts_from_the_pre_distilled_encoder_with_a_fresh_head(tmp_path):
    first, wd = tmp_path / "stage1", tmp_path / "stage2"
    runs.run("configs/dsg_kd.py:tiny", str(first), *STAGE_1)
    assert not (first / "best").exists()  # nothing selected by an untrained head: the final parameters are kept
    rows = runs.train_rows(str(first))
    assert rows[-1]["hidn"] < rows[0]["hidn"]  # the KD terms alone train the encoder
    trained, where = read_params(str(first))
    assert where.endswith("checkpoints/3")

    task = registry.get("dsg_kd").build(_config(**{"student.init_from": str(first)}), str(wd))
    fresh = registry.get("dsg_kd").build(_config(), str(tmp_path / "fresh"))
    mine, new = (flatten(nnx.state(t.model, nnx.Param)) for t in (task, fresh))
    encoder = [k for k in mine if not k.startswith("student.classifier.")]
    head = [k for k in mine if k.startswith("student.classifier.")]
    assert encoder and head and task.info["init_from"] == {"workdir": str(first), "checkpoint": where}
    assert all(np.array_equal(np.asarray(mine[k]), np.asarray(trained[k])) for k in encoder)
    assert not np.array_equal(np.asarray(mine["student.encoder.embeddings.word_embeddings.embedding"]),
                              np.asarray(new["student.encoder.embeddings.word_embeddings.embedding"]))
    assert all(np.array_equal(np.asarray(mine[k]), np.asarray(new[k])) for k in head)  # as a fresh run's
    # the embeddings' rows are the first stage's WordPiece vocabulary, copied rather than trained again
    assert (wd / "tokenizers" / "student" / "tokenizer.json").read_text() == \
        (first / "tokenizers" / "student" / "tokenizer.json").read_text()


def test_settings_that_cannot_work_are_refused_by_name(tmp_path):
    with pytest.raises(InputError, match=r"kd.ce_weight: 0 trains no classifier"):
        _config(**{"kd.ce_weight": 0.0})
    with pytest.raises(InputError, match=r"kd.ce_weight: 0 with kd.alpha and kd.beta 0"):
        _config(**{"kd.ce_weight": 0.0, "kd.alpha": 0.0, "kd.beta": 0.0, "train.early_stopping.metric": ""})
    with pytest.raises(InputError, match=r"kd.ce_weight: 0: kd.balance='initial_gradients'"):
        _config(**{"kd.ce_weight": 0.0, "kd.balance": "initial_gradients", "train.early_stopping.metric": ""})
    with pytest.raises(InputError, match=r"student.init_from"):
        _config(**{"student.init_from": str(tmp_path / "missing")})
    other = tmp_path / "other"
    other.mkdir()
    stored = json.loads(dsg_config.get_config("tiny").to_json())
    stored["student"]["tokenizer"] = "wordpiece:300"
    (other / "config.json").write_text(json.dumps(stored))
    with pytest.raises(InputError, match=r"another student: student.tokenizer: \"wordpiece:300\" -> \"wordpiece:400\""):
        _config(**{"student.init_from": str(other)})


def test_a_workdir_from_before_the_options_resumes():
    new = json.loads(dsg_config.get_config("tiny").to_json())
    old = json.loads(json.dumps(new))
    del old["kd"]["ce_weight"], old["student"]["init_from"]
    assert resume_config.differences(old, new) == []
    new["kd"]["ce_weight"] = 0.0
    assert resume_config.differences(old, new) == ["kd.ce_weight: 1.0 -> 0.0"]
