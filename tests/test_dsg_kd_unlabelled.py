"""`data.unlabelled` (issue 24's fifth DSG-KD design, a kdjax variant): every training note is paired with an unlabelled
one, which the KD terms read and CE does not; the cached teacher gives the online teacher's losses on both; notes
files without labels; the settings that cannot work are refused by name."""

import json

import numpy as np
import pytest
from flax import nnx

from configs import dsg_kd as dsg_config
from kdjax.data import knowledge, synthetic_notes
from kdjax.data import notes as notes_lib
from kdjax.errors import InputError
from kdjax.systems import registry
from kdjax.systems.dsg_kd.data import encode_fn, trained_tokenizer
from kdjax.systems.dsg_kd.loss import UNLABELLED, student_loss
from kdjax.systems.dsg_kd.teacher import plan
from kdjax.train.trainer import Trainer
from tests import overrides


def _config(**over):
    cfg = overrides.apply(dsg_config.get_config("tiny"), {"data.unlabelled.num_synthetic": 12, **over})
    registry.validate(cfg)
    return cfg


def _first(cfg, wd):
    task = registry.get("dsg_kd").build(cfg, str(wd))
    return task, next(Trainer(cfg, task, str(wd)).train_iterator())


def test_unlabelled_notes_reach_the_kd_terms_and_not_ce(tmp_path):
    cfg = _config()
    task, batch = _first(cfg, tmp_path / "online")
    assert task.info["unlabelled_notes"] == 12
    n = batch["label"].shape[0]
    assert all(batch[UNLABELLED + k].shape == v.shape for k, v in batch.items() if not k.startswith(UNLABELLED)
               and k != "label") and "u_label" not in batch
    p = plan(cfg, [tuple(x) for x in task.info["layer_map"]], task.model.student.cfg, task.teacher.cfg)
    loss = lambda b: student_loss(task.model, task.teacher, b, p, deterministic=True)  # noqa: E731

    # the paired notes are notes of the unlabelled set (seed data.unlabelled.seed), encoded as the training notes are
    wd = str(tmp_path / "online")
    encode = encode_fn(trained_tokenizer(cfg.student, "student", wd), trained_tokenizer(cfg.teacher, "teacher", wd),
                       knowledge.resolve_finder(cfg.data.domain_words), cfg)
    pool = [encode(n)["s_input_ids"].tolist() for n in synthetic_notes.generate_notes(12, cfg.data.unlabelled.seed)]
    drawn = np.asarray(batch[UNLABELLED + "s_input_ids"]).tolist()
    assert all(row in pool for row in drawn) and len({tuple(r) for r in drawn}) > 1
    assert not any(row in pool for row in np.asarray(batch["s_input_ids"]).tolist())

    labelled = {k: v for k, v in batch.items() if not k.startswith(UNLABELLED)}
    _, alone = loss(labelled)
    total, terms = loss(batch)
    # CE reads only the labelled notes: the same with and without the unlabelled half
    assert float(terms["ce"]) == pytest.approx(float(alone["ce"]), rel=1e-6)
    # the KD terms read both: an unlabelled half that repeats the labelled notes leaves each mean as it was, others
    # move it (means over the words of all 2n notes)
    twice = {**labelled, **{UNLABELLED + k: v for k, v in labelled.items() if k != "label"}}
    _, same = loss(twice)
    for k in ("ce", "hidn", "attn"):
        assert float(same[k]) == pytest.approx(float(alone[k]), rel=1e-5), k
    assert abs(float(terms["hidn"]) - float(alone["hidn"])) > 1e-4 * float(alone["hidn"])
    assert float(total) == pytest.approx(float(terms["ce"] + p.alpha * terms["hidn"] + p.beta * terms["attn"]),
                                         rel=1e-5)
    assert int(terms["domain_words"]) > int(alone["domain_words"])
    # the trainer's loss is this loss (with dropout): finite, on the 2n notes
    tl, _ = task.loss_fn(task.model, task.teacher, batch, nnx.Rngs(dropout=0))
    assert np.isfinite(float(tl)) and n == cfg.train.batch_size

    # a cached teacher (its targets once per note, the unlabelled notes' in a cache of their own) gives the same losses
    cached, cbatch = _first(_config(**{"teacher.cache.enabled": True}), tmp_path / "cached")
    assert cached.teacher is None and cached.info["teacher"]["unlabelled_cache"]["examples"] == 12
    assert np.array_equal(cbatch[UNLABELLED + "s_input_ids"], batch[UNLABELLED + "s_input_ids"])  # the same draws
    _, cterms = student_loss(cached.model, None, cbatch, p, deterministic=True)
    for k in ("ce", "hidn", "attn"):
        assert float(cterms[k]) == pytest.approx(float(terms[k]), rel=1e-5, abs=1e-7), k


def test_a_notes_file_without_labels(tmp_path):
    csv = tmp_path / "u.csv"
    csv.write_text("id,text\n1,pt c/o chest pain\n2,\n3,fever and cough\n")
    with pytest.raises(InputError, match=r"u.csv:3: empty text"):
        notes_lib.load_notes(str(csv), label_column=None)
    notes, bad = notes_lib.load_notes(str(csv), label_column=None, on_bad="skip")
    assert [(n.text, n.label) for n in notes] == [("pt c/o chest pain", -1), ("fever and cough", -1)]
    assert bad.rows == [f"{csv}:3: empty text"]
    jl = tmp_path / "u.jsonl"
    jl.write_text(json.dumps({"text": "dyspnea", "label": "urgent?"}) + "\n")  # a label there is not read
    assert [n.label for n in notes_lib.load_notes(str(jl), label_column=None)[0]] == [-1]

    cfg = _config(**{"data.unlabelled.num_synthetic": 0, "data.unlabelled.file": str(csv),
                     "data.on_bad_input": "skip"})
    task = registry.get("dsg_kd").build(cfg, str(tmp_path / "wd"))
    assert task.info["unlabelled_notes"] == 2 and task.info["bad_rows"] == [f"{csv}:3: empty text"]


def test_settings_that_cannot_work_are_refused_by_name(tmp_path):
    with pytest.raises(InputError, match=r"data.unlabelled: .*kd.alpha or kd.beta"):
        _config(**{"kd.alpha": 0.0, "kd.beta": 0.0})
    (tmp_path / "u.csv").write_text("text\nx\n")
    with pytest.raises(InputError, match=r"data.unlabelled.num_synthetic: set data.unlabelled.file or"):
        _config(**{"data.unlabelled.file": str(tmp_path / "u.csv")})
    with pytest.raises(InputError, match=r"data.unlabelled.file"):
        _config(**{"data.unlabelled.num_synthetic": 0, "data.unlabelled.file": str(tmp_path / "missing.csv")})


def test_a_workdir_from_before_the_option_resumes():
    """A DSG-KD workdir written before data.unlabelled existed computed without unlabelled notes: it resumes, and
    resuming it with them is a change named by its key."""
    from kdjax.train import resume_config

    new = json.loads(dsg_config.get_config("tiny").to_json())
    old = json.loads(json.dumps(new))
    del old["data"]["unlabelled"]
    assert resume_config.differences(old, new) == []
    more = json.loads(json.dumps(new))
    more["data"]["unlabelled"]["num_synthetic"] = 2000
    assert resume_config.differences(old, more) == ["data.unlabelled.num_synthetic: 0 -> 2000"]
