"""DSG-KD (thesis ch. 2): a frozen domain-specific BERT teacher distils span-pooled hidden states and
attention maps of domain words into a general BERT student that classifies clinical notes.

    L_total = CE(S(x^S), y) + alpha * MSE(H^S, H^T) + beta * MSE(A^S, A^T)          (eq. 2.3-2.9)

Composition only: models from kdjax.models.bert, losses from kdjax.losses, notes and knowledge masks
from kdjax.data, metrics from kdjax.metrics, the loop from kdjax.train.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from kdjax import assets
from kdjax.convert import from_pretrained
from kdjax.data import knowledge, notes as notes_lib, synthetic_notes, tokenizers
from kdjax.errors import InputError
from kdjax.losses.classification import cross_entropy
from kdjax.losses.distill import attention_loss, hidden_loss, span_mean, uniform_layer_map, word_onehot
from kdjax.metrics.classification import binary_metrics
from kdjax.metrics.mwps import load_terms, mwps
from kdjax.models.bert import LOGICAL_AXES, BertConfig, BertModel, SequenceClassifier
from kdjax.systems import contract
from kdjax.systems.checks import Checks
from kdjax.train import task as task_lib
from kdjax.train.batch import BatchSpec, Field, abstract_batch
from kdjax.train.task import Task


# the student's BERT, plus the projection onto the teacher's width
STUDENT_AXES = [*LOGICAL_AXES, (r"hidden_proj\.kernel$", ("embed", None))]


class Student(nnx.Module):
    """The trainable part: the student classifier and, when widths differ, the projection of student
    hidden states onto the teacher's width (the thesis assumes equal widths)."""

    def __init__(self, student: SequenceClassifier, teacher_width: int, rngs: nnx.Rngs):
        self.student = student
        d = student.cfg.hidden_size
        self.hidden_proj = nnx.Linear(d, teacher_width, rngs=rngs) if teacher_width != d else None

    def project(self, x: jax.Array) -> jax.Array:
        return x if self.hidden_proj is None else self.hidden_proj(x)


# ------------------------------------------------------------------------------------------- data
def load_splits(cfg: ml_collections.ConfigDict) -> tuple[dict[str, list[synthetic_notes.Note]], list[str]]:
    """train/dev/test notes and the bad rows skipped (empty unless on_bad_input='skip')."""
    d = cfg.data
    if d.source == "synthetic":
        s = d.synthetic
        return {"train": synthetic_notes.generate_notes(s.num_train, s.seed),
                "dev": synthetic_notes.generate_notes(s.num_dev, s.seed + 1),
                "test": synthetic_notes.generate_notes(s.num_test, s.seed + 2)}, []
    if d.source != "files":
        raise InputError(f"data.source must be 'synthetic' or 'files', got {d.source!r}")
    bad = notes_lib.BadRows()
    read = functools.partial(notes_lib.load_notes, text_column=d.text_column, label_column=d.label_column,
                             labels=tuple(d.labels), on_bad=d.on_bad_input, bad=bad)
    if d.train_file and not d.split_ratios:
        missing = [k for k in ("train_file", "dev_file", "test_file") if not d[k]]
        if missing:
            raise InputError(f"data: set {missing} or data.split_ratios with a single data.train_file")
        splits = {s: read(d[f"{s}_file"])[0] for s in ("train", "dev", "test")}
    elif d.train_file:
        notes, _ = read(d.train_file)
        tr, dv, te = notes_lib.split_notes(notes, tuple(d.split_ratios), cfg.seed)
        splits = {"train": tr, "dev": dv, "test": te}
    else:
        raise InputError("data.source='files' needs data.train_file (a .csv or .jsonl of notes)")
    for name, rows in splits.items():
        if not rows:
            raise InputError(f"data: the {name} split is empty")
    if bad.rows:
        logging.warning("skipped %d bad rows, e.g. %s", len(bad.rows), bad.rows[0])
    return splits, bad.rows


def _tokenizer(side: ml_collections.ConfigDict, name: str, train_texts: list[str], workdir: str):
    spec = side.tokenizer or side.hf_dir
    if not spec:
        raise InputError(f"{name}.tokenizer: set a tokenizer directory, 'wordpiece:N', or {name}.hf_dir")
    if spec.startswith("wordpiece:"):
        return tokenizers.train_wordpiece(train_texts, int(spec.split(":")[1]),
                                          os.path.join(workdir, "tokenizers", name))
    return tokenizers.load(assets.resolve(spec))


def _encode_fn(tok_s, tok_t, finder, cfg):
    d = cfg.data

    def encode(note: synthetic_notes.Note) -> dict[str, np.ndarray]:
        text = knowledge.preprocess_note(note.text) if d.preprocess else note.text
        spans = finder(text)
        s = knowledge.encode(tok_s, text, spans, d.student_max_length, d.max_words)
        t = knowledge.encode(tok_t, text, spans, d.teacher_max_length, d.max_words)
        out = {f"s_{k}": v for k, v in s.items()}
        out.update({f"t_{k}": v for k, v in t.items()})
        out["label"] = np.int32(note.label)
        return out

    return encode


# ----------------------------------------------------------------------------------------- models
def _bert_init(side: ml_collections.ConfigDict, vocab_size: int, **extra) -> BertConfig:
    kw = dict(side.init)
    kw["vocab_size"] = vocab_size
    kw.update(extra)
    return BertConfig(**kw)


def build_teacher(cfg: ml_collections.ConfigDict, vocab_size: int) -> BertModel:
    t = cfg.teacher
    if t.hf_dir:
        model = from_pretrained(assets.resolve(t.hf_dir), task="encoder")
    else:
        model = BertModel(_bert_init(t, vocab_size), rngs=nnx.Rngs(cfg.seed + 1))
    return model


def build_student(cfg: ml_collections.ConfigDict, vocab_size: int) -> SequenceClassifier:
    s = cfg.student
    head = dict(num_labels=int(cfg.data.num_labels), classifier_head=s.classifier_head)
    if s.hf_dir:
        return from_pretrained(assets.resolve(s.hf_dir), task="sequence_classification", seed=cfg.seed,
                               **head)
    return SequenceClassifier(_bert_init(s, vocab_size, **head), rngs=nnx.Rngs(cfg.seed))


def layer_map(spec: str, student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """'uniform' or explicit 's:t,s:t,...' over hidden_states indices (0 = embeddings)."""
    if spec == "uniform":
        return uniform_layer_map(student_layers, teacher_layers)
    pairs = [tuple(int(v) for v in p.split(":")) for p in spec.split(",") if p.strip()]
    for s, t in pairs:
        if not (0 <= s <= student_layers and 0 <= t <= teacher_layers):
            raise InputError(f"kd.layer_map pair {s}:{t} is outside 0..{student_layers} / 0..{teacher_layers}")
    return pairs


# ------------------------------------------------------------------------------------------- task
def make_loss(cfg: ml_collections.ConfigDict, lmap: list[tuple[int, int]]):
    kd = cfg.kd
    k = int(cfg.data.max_words)
    need_attn = kd.beta > 0

    def loss_fn(model: Student, teacher: BertModel, batch, rngs):
        s = model.student(batch["s_input_ids"], batch["s_attention_mask"], batch["s_token_type_ids"],
                          output_hidden_states=True, output_attentions=need_attn, deterministic=False,
                          rngs=rngs)
        ce = cross_entropy(s["logits"], batch["label"])
        metrics = {"ce": ce}
        loss = ce
        if kd.alpha > 0 or kd.beta > 0:
            t = teacher(batch["t_input_ids"], batch["t_attention_mask"], batch["t_token_type_ids"],
                        output_hidden_states=True, output_attentions=need_attn, deterministic=True)
            t = jax.lax.stop_gradient(t)
            if kd.alpha > 0:
                h = hidden_loss(s["hidden_states"], t["hidden_states"], batch["s_word_ids"],
                                batch["t_word_ids"], k, lmap, project=model.project)
                loss = loss + kd.alpha * h
                metrics["hidn"] = h
            if need_attn:
                a = attention_loss(s["attentions"], t["attentions"], batch["s_word_ids"], batch["t_word_ids"],
                                   k, lmap, keys=kd.attn_keys, heads=kd.attn_heads)
                loss = loss + kd.beta * a
                metrics["attn"] = a
        metrics["domain_words"] = jnp.sum(batch["s_word_ids"].max(-1) > 0)
        return loss, metrics

    return loss_fn


def predict_fn(model: Student, batch) -> dict[str, jax.Array]:
    out = model.student(batch["s_input_ids"], batch["s_attention_mask"], batch["s_token_type_ids"])
    return {"prob": jax.nn.softmax(out["logits"], -1), "label": batch["label"]}


def evaluate(preds: dict[str, np.ndarray], split: str) -> dict[str, float]:
    probs, labels = preds["prob"], preds["label"]
    if probs.shape[-1] == 2:
        return binary_metrics(labels, probs[:, 1])
    return {"accuracy": float(np.mean(probs.argmax(-1) == labels))}


def word_embeddings(model: BertModel, tok, texts: list[str], finder, max_length: int, project=None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Last-layer embedding of every whitespace word (mean of its subwords), and whether it is a
    domain word; words cut off by truncation are dropped."""
    embs, dom = [], []
    for text in texts:
        spans = knowledge.all_words(text)[:128]
        domain = set(finder(text))
        enc = knowledge.encode(tok, text, spans, max_length, 128)
        out = model(jnp.asarray(enc["input_ids"][None]), jnp.asarray(enc["attention_mask"][None]),
                    jnp.asarray(enc["token_type_ids"][None]))
        pooled, counts = span_mean(out["last_hidden_state"], word_onehot(jnp.asarray(enc["word_ids"][None]), 128))
        pooled = project(pooled) if project is not None else pooled
        keep = np.asarray(counts[0]) > 0
        embs.append(np.asarray(pooled[0])[keep])
        dom.append(np.array([sp in domain for sp in spans] + [False] * (128 - len(spans)))[keep])
    return np.concatenate(embs), np.concatenate(dom)


def batch_spec(cfg: ml_collections.ConfigDict) -> BatchSpec:
    """A note as each side's tokenizer sees it (ids, attention and type masks, and the domain-word index of
    every token: 0 = none, k = the k-th domain word), and its label."""
    spec = {"label": Field((), np.int32)}
    for side, length in (("s", int(cfg.data.student_max_length)), ("t", int(cfg.data.teacher_max_length))):
        for key in ("input_ids", "attention_mask", "token_type_ids", "word_ids"):
            spec[f"{side}_{key}"] = Field((length,), np.int32)
    return spec


def abstract_task(cfg: ml_collections.ConfigDict) -> tuple[Task, dict]:
    """The training Task with abstract teacher and student (nnx.eval_shape over the configs' `init`
    architectures, BERT-base for the paper; nothing is read or allocated) and the global batch's shapes:
    what `Trainer(..., abstract=True)` compiles for a target topology. Both vocabularies are `aot.vocab_size`
    (a tokenizer's size is known only once it is read)."""
    vocab_size = int(cfg.aot.vocab_size)

    def student() -> Student:
        head = dict(num_labels=int(cfg.data.num_labels), classifier_head=cfg.student.classifier_head)
        base = SequenceClassifier(_bert_init(cfg.student, vocab_size, **head), rngs=nnx.Rngs(0))
        return Student(base, int(cfg.teacher.init.hidden_size), nnx.Rngs(0))

    teacher = nnx.eval_shape(lambda: BertModel(_bert_init(cfg.teacher, vocab_size), rngs=nnx.Rngs(0)))
    model = nnx.eval_shape(student)
    lmap = layer_map(cfg.kd.layer_map, model.student.cfg.num_hidden_layers, teacher.cfg.num_hidden_layers)
    b = int(cfg.train.batch_size)
    task = task_lib.abstract(model, make_loss(cfg, lmap), b, logical_axes=STUDENT_AXES, teacher=teacher,
                             teacher_logical_axes=LOGICAL_AXES)
    return task, abstract_batch(batch_spec(cfg), b)


def build(cfg: ml_collections.ConfigDict, workdir: str) -> Task:
    splits, bad_rows = load_splits(cfg)
    # Everything downstream (vocabularies, masks, MWPS, baselines, plots) sees the notes as the model does.
    clean = knowledge.preprocess_note if cfg.data.preprocess else (lambda t: t)
    texts = {k: [clean(n.text) for n in v] for k, v in splits.items()}
    train_texts = texts["train"]
    tok_t = _tokenizer(cfg.teacher, "teacher", train_texts, workdir)
    tok_s = _tokenizer(cfg.student, "student", train_texts, workdir)
    finder = knowledge.resolve_finder(cfg.data.domain_words)
    teacher = build_teacher(cfg, len(tok_t))
    base = build_student(cfg, len(tok_s))
    for name, m, tok in (("teacher", teacher.cfg, tok_t), ("student", base.cfg, tok_s)):
        if len(tok) > m.vocab_size:
            raise InputError(f"{name}: tokenizer has {len(tok)} tokens but the model only {m.vocab_size}")
    model = Student(base, teacher.cfg.hidden_size, nnx.Rngs(cfg.seed + 2))
    lmap = layer_map(cfg.kd.layer_map, base.cfg.num_hidden_layers, teacher.cfg.num_hidden_layers)
    encode = _encode_fn(tok_s, tok_t, finder, cfg)
    data = {k: grain.MapDataset.source(v).map(encode) for k, v in splits.items()}
    terms = load_terms(cfg.report.medical_terms) if cfg.report.medical_terms else synthetic_notes.MEDICAL_TERMS

    def report(best: Student, results, preds, wd) -> dict[str, Any]:
        out: dict[str, Any] = {}
        test = splits["test"]
        if "test" in preds:
            ok = preds["test"]["prob"].argmax(-1) == preds["test"]["label"]
            out["mwps"] = {"correct_test_notes": mwps([t for t, c in zip(texts["test"], ok) if c], terms),
                           "all_test_notes": mwps(texts["test"], terms)}
        if cfg.report.plot:
            sample = texts["test"][: cfg.report.plot_notes]
            groups = {
                "teacher": word_embeddings(teacher, tok_t, sample, finder, cfg.data.teacher_max_length),
                "student (DSG-KD)": word_embeddings(best.student.encoder, tok_s, sample, finder,
                                                    cfg.data.student_max_length, best.project),
            }
            from kdjax.metrics.embedding_plot import plot_embeddings

            path = os.path.join(wd, "embeddings_pca.png")
            out["embedding_plot"] = {"path": path, **plot_embeddings(groups, path)}
        if cfg.report.baselines:
            from kdjax.baselines.bow import run_baselines

            out["baselines"] = run_baselines(train_texts, [n.label for n in splits["train"]],
                                             texts["test"], [n.label for n in test], cfg.seed)
            from kdjax.train.logging import format_table

            scored = {k: v for k, v in out["baselines"].items() if "unavailable" not in v}
            print("\nBag-of-words baselines (test, x100):")
            print(format_table(scored, scale=100.0))
            for k, v in out["baselines"].items():
                if "unavailable" in v:
                    print(f"{k}: unavailable ({v['unavailable']})")
        return out

    info = {"num_examples": {k: len(v) for k, v in splits.items()}, "bad_rows_skipped": len(bad_rows),
            "bad_rows": bad_rows[:100], "layer_map": lmap, "teacher_vocab": len(tok_t),
            "student_vocab": len(tok_s), "hidden_projection": model.hidden_proj is not None}
    return Task(model=model, loss_fn=make_loss(cfg, lmap), predict_fn=predict_fn, train_data=data["train"],
                eval_data={"dev": data["dev"], "test": data["test"]}, evaluate=evaluate,
                logical_axes=STUDENT_AXES, teacher=teacher, teacher_logical_axes=LOGICAL_AXES, report=report,
                info=info, batch_spec=batch_spec(cfg))


# ----------------------------------------------------------------------------------------- checks
CLASSIFIER_HEADS = ("bert", "roberta", "dsg_kd", "first_token")
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
    if not c.get(f"{name}.hf_dir"):
        for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                    "max_position_embeddings"):
            c.number(f"{name}.init.{key}", integer=True, gt=0)
        h, n = c.get(f"{name}.init.hidden_size", 0), c.get(f"{name}.init.num_attention_heads", 0)
        if isinstance(h, int) and isinstance(n, int) and n > 0 and h % n:
            c.problem(f"{name}.init.num_attention_heads", f"{n} heads do not divide hidden_size {h}")


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
    for key in ("max_words", "teacher_max_length", "student_max_length"):
        c.number(f"data.{key}", integer=True, gt=0)
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
    es = c.get("train.early_stopping.metric", "") or ""
    known = BINARY_METRICS if c.get("data.num_labels") == 2 else ("accuracy",)
    if es and es not in known:
        c.problem("train.early_stopping.metric", f"{es!r} is not a dev metric of this system ({', '.join(known)})")
    c.path("report.medical_terms", "file")
    c.number("aot.vocab_size", integer=True, gt=0)


class DsgKd(contract.System):
    name = "dsg_kd"
    capabilities = frozenset()

    def validate(self, cfg, checks):
        validate(cfg, checks)

    def batch_spec(self, cfg, **dims):
        return batch_spec(cfg)

    def build(self, cfg, workdir):
        return build(cfg, workdir)

    def abstract_task(self, cfg):
        return abstract_task(cfg)


SYSTEM = DsgKd()
