"""DSG-KD's `teacher.workdir`: the teacher is the encoder of a classifier an earlier DSG-KD run trained (a domain
teacher kdjax fine-tuned), with that run's tokenizer."""

import json

import numpy as np
import pytest
from flax import nnx

from configs import dsg_kd as dsg_config
from kdjax.errors import InputError
from kdjax.models.state import flatten
from kdjax.systems import registry
from kdjax.systems.dsg_kd.data import teacher_tokenizer
from kdjax.systems.dsg_kd.models import build_student, trained_encoder
from kdjax.train.restore import read_params
from tests import runs


def test_the_teacher_is_the_trained_encoder_bit_for_bit_and_its_cache_follows_it(tmp_path):
    src, dst = tmp_path / "teacher", tmp_path / "student"
    runs.run("configs/dsg_kd.py:tiny", str(src), "--config.train.steps=3", "--config.kd.alpha=0",
             "--config.kd.beta=0")
    params, where = read_params(str(src))
    teacher = trained_encoder(str(src))
    mine = flatten(nnx.state(teacher, nnx.Param))
    assert mine and all(np.array_equal(np.asarray(v), np.asarray(params["student.encoder." + k]))
                        for k, v in mine.items())
    fresh = flatten(nnx.state(build_student(dsg_config.get_config("tiny"), 400).encoder, nnx.Param))
    assert not np.array_equal(np.asarray(mine["embeddings.word_embeddings.embedding"]),  # trained, not the init
                              np.asarray(fresh["embeddings.word_embeddings.embedding"]))
    cfg = dsg_config.get_config("tiny")
    cfg.teacher.workdir = str(src)
    assert len(teacher_tokenizer(cfg, [], str(dst))) == teacher.cfg.vocab_size == 400  # the source's WordPiece

    # past one epoch (256 notes, batch 8): a later pass reads note i's cached targets by its index in the split
    runs.run("configs/dsg_kd.py:tiny", str(dst), "--config.train.steps=34", "--config.eval.every=34",
             f"--config.teacher.workdir={src}", "--config.teacher.cache.enabled=True")
    info = json.load(open(dst / "report.json"))["info"]
    assert info["teacher_vocab"] == 400 and info["teacher"]["kind"] == "cached"
    fingerprint = json.load(open(dst / "teacher_cache" / "meta-h000.json"))["fingerprint"]
    assert fingerprint["teacher"] == f"{src} @ {where}"  # a retrained teacher is another cache


def test_teacher_workdir_is_checked_when_the_config_is_read(tmp_path):
    cfg = dsg_config.get_config("tiny")
    cfg.teacher.workdir = str(tmp_path / "missing")
    cfg.teacher.hf_dir = str(tmp_path)
    with pytest.raises(InputError) as e:
        registry.validate(cfg)
    assert "teacher.workdir" in str(e.value) and "not both" in str(e.value)
    m2c = tmp_path / "m2c"
    m2c.mkdir()
    (m2c / "config.json").write_text(json.dumps({"system": "multi2cap"}))
    with pytest.raises(InputError, match="not a DSG-KD one"):
        trained_encoder(str(m2c))


def test_student_num_layers_needs_a_pretrained_student():
    cfg = dsg_config.get_config("tiny")
    cfg.student.num_layers = 1  # the tiny student is random-init: its depth is student.init.num_hidden_layers
    with pytest.raises(InputError, match="student.num_layers"):
        registry.validate(cfg)
