"""DSG-KD's config checks (run before any device work; see kdjax.systems.checks)."""

from __future__ import annotations

import json
import os

import ml_collections

from kdjax.losses.dsg_kd import LOSS_FORMS
from kdjax.systems.checks import Checks
from kdjax.systems.dsg_kd.balance import BALANCES
from kdjax.train import resume_config

CLASSIFIER_HEADS = ("bert", "roberta", "dsg_kd", "first_token")
# What decides the student's parameters and their meaning, which a stage shares with the workdir it starts from (a
# random-init student's architecture too: `student.init`); shapes are checked again when the parameters are read
INIT_SAME = ("system", "student.hf_dir", "student.tokenizer", "student.num_layers")
BINARY_METRICS = ("accuracy", "auroc", "auprc", "recall", "precision", "f1", "average")


def _check_side(c: Checks, name: str) -> None:
    c.path(f"{name}.hf_dir", "dir", contains=("config.json",))
    spec = c.get(f"{name}.tokenizer") or ""
    if spec.startswith("wordpiece:"):
        size = spec.split(":", 1)[1]
        if not size.isdigit() or int(size) < 10:
            c.problem(f"{name}.tokenizer", f"{spec!r}: 'wordpiece:N' needs a vocabulary size N >= 10")
    elif spec:
        c.path(f"{name}.tokenizer", "dir")
    elif not c.get(f"{name}.hf_dir") and f"{name}.hf_dir" not in tuple(c.get("require", ()) or ()):
        c.problem(f"{name}.tokenizer", f"set a tokenizer directory, 'wordpiece:N', or {name}.hf_dir")
    keep = c.number(f"{name}.num_layers", integer=True, ge=0, default=0)
    if keep and not c.get(f"{name}.hf_dir"):
        c.problem(f"{name}.num_layers", f"keeps the first layers of {name}.hf_dir; a random-init {name} sets "
                  f"{name}.init.num_hidden_layers instead")
    if not c.get(f"{name}.hf_dir"):
        for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                    "max_position_embeddings"):
            c.number(f"{name}.init.{key}", integer=True, gt=0)
        h, n = c.get(f"{name}.init.hidden_size", 0), c.get(f"{name}.init.num_attention_heads", 0)
        if isinstance(h, int) and isinstance(n, int) and n > 0 and h % n:
            c.problem(f"{name}.init.num_attention_heads", f"{n} heads do not divide hidden_size {h}")


def _positive(c: Checks, key: str) -> bool:
    v = c.get(key, 0)
    return isinstance(v, (int, float)) and v > 0


def validate(cfg: ml_collections.ConfigDict, c: Checks) -> None:
    source = c.one_of("data.source", ("synthetic", "files"))
    if source == "files":
        ratios = tuple(c.get("data.split_ratios") or ())
        if ratios:
            if len(ratios) != 3 or not all(isinstance(r, (int, float)) and r > 0 for r in ratios) \
                    or abs(sum(ratios) - 1) > 1e-6:
                c.problem("data.split_ratios", f"three positive fractions (train, dev, test) that sum to 1, got "
                                               f"{ratios}")
            c.path("data.train_file", "file", required=True, why="data.source='files'")
        else:
            for key in ("train_file", "dev_file", "test_file"):
                c.path(f"data.{key}", "file", required=True, why="data.source='files' without data.split_ratios")
    else:
        for key in ("num_train", "num_dev", "num_test"):
            c.number(f"data.synthetic.{key}", integer=True, gt=0)
    c.one_of("data.on_bad_input", ("error", "skip"))
    c.path("data.unlabelled.file", "file")
    ufile = c.get("data.unlabelled.file", "")
    nsyn = c.number("data.unlabelled.num_synthetic", integer=True, ge=0, default=0)
    c.number("data.unlabelled.seed", integer=True, default=1000)
    if ufile and nsyn:
        c.problem("data.unlabelled.num_synthetic", "set data.unlabelled.file or data.unlabelled.num_synthetic, "
                  "not both")
    if (ufile or nsyn) and not (_positive(c, "kd.alpha") or _positive(c, "kd.beta")):
        c.problem("data.unlabelled", "unlabelled notes are read only by the KD terms: set kd.alpha or kd.beta > 0")
    n = c.number("data.num_labels", integer=True, ge=2)
    labels = tuple(c.get("data.labels") or ())
    if isinstance(n, int) and len(labels) != n:
        c.problem("data.num_labels", f"{n}, but data.labels has {len(labels)}: {labels}")
    spec = c.get("data.domain_words") or ""
    if spec.startswith("file:"):
        if c.paths and not os.path.isfile(spec[5:]):
            c.problem("data.domain_words", f"{spec}: no such file")
    elif spec != "latin" and ":" not in spec:
        c.problem("data.domain_words", f"{spec!r}: use 'latin', 'file:PATH' or 'module:function'")
    for key in ("max_words", "teacher_max_length", "student_max_length", "max_note_bytes"):
        c.number(f"data.{key}", integer=True, gt=0)
    if c.get("teacher.workdir"):
        c.path("teacher.workdir", "dir", contains=("config.json",), why="a trained DSG-KD workdir")
        if c.get("teacher.hf_dir"):
            c.problem("teacher.hf_dir", "set teacher.workdir or teacher.hf_dir, not both")
    else:
        _check_side(c, "teacher")
    _check_side(c, "student")
    c.one_of("student.classifier_head", CLASSIFIER_HEADS)
    c.number("kd.alpha", ge=0)
    c.number("kd.beta", ge=0)
    lm = c.get("kd.layer_map") or ""
    if lm != "uniform":
        pairs = [p.strip() for p in lm.split(",") if p.strip()]
        if not pairs or not all(len(p.split(":")) == 2 and all(v.strip().isdigit() for v in p.split(":"))
                                for p in pairs):
            c.problem("kd.layer_map", f"{lm!r}: 'uniform' or student:teacher index pairs, e.g. '0:0,2:6,4:12'")
    c.one_of("kd.attn_keys", ("word", "index"))
    c.one_of("kd.attn_heads", ("match", "mean", "auto"))
    c.one_of("kd.loss_form", LOSS_FORMS)
    c.one_of("kd.balance", BALANCES)
    if c.number("kd.ce_weight", ge=0, default=1.0) == 0:  # a pre-distillation stage: the KD terms alone
        if not (_positive(c, "kd.alpha") or _positive(c, "kd.beta")):
            c.problem("kd.ce_weight", "0 with kd.alpha and kd.beta 0 leaves nothing to train")
        if c.get("kd.balance") == "initial_gradients":
            c.problem("kd.ce_weight", "0: kd.balance='initial_gradients' measures the KD terms against CE; set "
                      "kd.balance='none'")
        if c.get("train.early_stopping.metric", ""):
            c.problem("kd.ce_weight", "0 trains no classifier, so dev metrics cannot select a checkpoint: set "
                      "train.early_stopping.metric=''")
    init = c.path("student.init_from", "dir", contains=("config.json",), why="a trained DSG-KD workdir")
    if init:
        with open(os.path.join(init, "config.json"), encoding="utf-8") as f:
            keys = INIT_SAME + (() if c.get("student.hf_dir") else ("student.init",))
            for diff in resume_config.differences_in(json.load(f), cfg, keys):
                c.problem("student.init_from", f"{init} was trained with another student: {diff}")
    if c.get("kd.balance") == "initial_gradients" and c.get("kd.loss_form") != "code":
        c.problem("kd.balance", "'initial_gradients' rescales the 'code' loss form's alpha and beta; set "
                  "kd.loss_form='code'")
    es = c.get("train.early_stopping.metric", "") or ""
    known = BINARY_METRICS if c.get("data.num_labels") == 2 else ("accuracy",)
    if es and es not in known:
        c.problem("train.early_stopping.metric", f"{es!r} is not a dev metric of this system ({', '.join(known)})")
    c.path("report.medical_terms", "file")
    if c.get("teacher.cache.enabled", False):
        c.number("teacher.cache.batch_size", integer=True, gt=0)
    elif c.get("teacher.cache.other_note", False):
        c.problem("teacher.cache.other_note", "the other-note control reads the teacher cache: set "
                  "teacher.cache.enabled=True")
    c.number("aot.vocab_size", integer=True, gt=0)
