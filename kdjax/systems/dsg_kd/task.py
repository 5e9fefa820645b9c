"""DSG-KD's Task: the loss (kdjax.losses.dsg_kd.total_loss on the student's outputs and the teacher's targets),
evaluation, the report, the batch description and the abstract task for ahead-of-time compiles."""

from __future__ import annotations

import io
import logging
import os
from typing import Any, Callable

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from kdjax import paths, teachers
from kdjax.data import knowledge, synthetic_notes
from kdjax.errors import InputError
from kdjax.losses.dsg_kd import layer_weights
from kdjax.metrics.classification import binary_metrics
from kdjax.metrics.mwps import load_terms, mwps
from kdjax.models.bert import LOGICAL_AXES, BertModel, SequenceClassifier
from kdjax.systems import inference
from kdjax.systems.dsg_kd import teacher as teacher_lib
from kdjax.systems.dsg_kd.loss import UNLABELLED, make_loss
from kdjax.systems.dsg_kd.data import (encode_fn, load_splits, load_unlabelled, student_tokenizer,
                                       teacher_tokenizer, uses_unlabelled)
from kdjax.losses.layers import layer_map
from kdjax.systems.dsg_kd.models import (STUDENT_AXES, Student, bert_init, build_student, build_teacher,
                                         word_embeddings)
from kdjax.train import task as task_lib
from kdjax.train.batch import BatchSpec, Field, abstract_batch
from kdjax.train.task import Task


def predict_fn(model: Student, batch) -> dict[str, jax.Array]:
    out = model.student(batch["s_input_ids"], batch["s_attention_mask"], batch["s_token_type_ids"])
    return {"prob": jax.nn.softmax(out["logits"], -1), "label": batch["label"]}


def evaluate(preds: dict[str, np.ndarray], split: str) -> dict[str, float]:
    probs, labels = preds["prob"], preds["label"]
    if probs.shape[-1] == 2:
        return binary_metrics(labels, probs[:, 1])
    return {"accuracy": float(np.mean(probs.argmax(-1) == labels))}


def prediction_rows(labels: list[str], notes: dict[str, list]) -> Callable[[dict[str, np.ndarray], str], list[dict]]:
    """predictions/<split>.jsonl for notes: the predicted label's name and probability, every label's probability
    and the true label, per note in the split's order (id: where it was read, or its position)."""

    def rows(preds: dict[str, np.ndarray], split: str) -> list[dict]:
        out = []
        for i, (note, row, label) in enumerate(zip(notes[split], inference.label_rows(preds["prob"], labels),
                                                   preds["label"])):
            out.append({"id": note.source or f"{split}-{i}", "input": note.text, **row,
                        "references": [labels[int(label)]],
                        "scores": {"correct": float(row["prediction"]["label"] == labels[int(label)])}})
        return out

    return rows


def predictor(cfg: ml_collections.ConfigDict, workdir: str) -> inference.Predictor:
    """--mode=predict: labels of notes (.txt files, or the text column of JSONL/CSV manifests) by the student
    classifier trained in `workdir`, read as in training (cleaned when data.preprocess, at most
    data.student_max_length tokens: a longer note's row says "truncated")."""
    from kdjax.systems.dsg_kd.models import trained_classifier

    d = cfg.data
    model, tok = trained_classifier(workdir)
    gdef, state = nnx.split(model)
    step = jax.jit(lambda s, ids, att, types: jax.nn.softmax(nnx.merge(gdef, s)(ids, att, types)["logits"], -1))
    length, batch_size, labels = int(d.student_max_length), int(cfg.eval.batch_size), list(d.labels)

    def load(item: inference.Item) -> dict:
        if item.text is not None:
            text = item.text
        else:
            with paths.open(item.path) as f:
                text = f.read()
        if not text.strip():
            raise InputError("an empty note")
        clean = knowledge.preprocess_note if d.preprocess else (lambda t: t)
        # as training encodes a note (encode_fn): its first words only, which bounds the work per note
        enc = tok(clean(knowledge.clip_words(text, max(length, int(d.teacher_max_length)))), max_length=length,
                  truncation=True, padding="max_length", return_token_type_ids=True)
        truncated = len(tok(clean(text))["input_ids"]) > length
        return {"ids": enc["input_ids"], "att": enc["attention_mask"], "types": enc["token_type_ids"],
                "truncated": truncated}

    def predict(examples: list[dict]) -> list[dict]:
        pad = examples + [examples[0]] * (batch_size - len(examples))
        arrays = [jnp.asarray(np.array([e[k] for e in pad], np.int32)) for k in ("ids", "att", "types")]
        rows = inference.label_rows(np.asarray(step(state, *arrays)), labels)[:len(examples)]
        return [{**r, "truncated": e["truncated"]} for r, e in zip(rows, examples)]

    return inference.Predictor("text", batch_size, load, lambda e: length, predict, text_column=d.text_column)


def cached_teacher(cfg: ml_collections.ConfigDict) -> bool:
    t = cfg.teacher
    return bool(t.cache.enabled) and (float(cfg.kd.alpha) > 0 or float(cfg.kd.beta) > 0)


def batch_spec(cfg: ml_collections.ConfigDict, p: teacher_lib.Plan | None = None) -> BatchSpec:
    """A note as the student's tokenizer sees it (ids, attention and type masks, and the domain-word index of
    every token: 0 = none, k = the k-th domain word) and its label; for the teacher, the same token fields when
    it runs in the step, or its cached targets (span-pooled hidden states and attention rows); with data.unlabelled,
    the same fields of a paired unlabelled note (`u_`). `p` (what the losses compare) defaults to the configs' own
    architectures."""
    if p is None:
        p = _abstract_models(cfg)[2]
    spec = {"label": Field((), np.int32)}
    sides = [("s", int(cfg.data.student_max_length))]
    if not cached_teacher(cfg):
        sides.append(("t", int(cfg.data.teacher_max_length)))
    for side, length in sides:
        for key in ("input_ids", "attention_mask", "token_type_ids", "word_ids"):
            spec[f"{side}_{key}"] = Field((length,), np.int32)
    if cached_teacher(cfg):
        spec.update(p.fields())
    if uses_unlabelled(cfg):  # the paired unlabelled note: every field but the label
        spec.update({UNLABELLED + k: f for k, f in spec.items() if k != "label"})
    return spec


def _abstract_models(cfg: ml_collections.ConfigDict) -> tuple[Student, BertModel, teacher_lib.Plan]:
    """Abstract student and teacher of the configs' `init` architectures (vocabularies `aot.vocab_size`) and the
    plan of what the losses compare."""
    vocab_size = int(cfg.aot.vocab_size)

    def student() -> Student:
        head = dict(num_labels=int(cfg.data.num_labels), classifier_head=cfg.student.classifier_head)
        base = SequenceClassifier(bert_init(cfg.student, vocab_size, "student", **head), rngs=nnx.Rngs(0))
        return Student(base, int(cfg.teacher.init.hidden_size), nnx.Rngs(0))

    teacher = nnx.eval_shape(lambda: BertModel(bert_init(cfg.teacher, vocab_size, "teacher"), rngs=nnx.Rngs(0)))
    model = nnx.eval_shape(student)
    lmap = layer_map(cfg.kd.layer_map, model.student.cfg.num_hidden_layers, teacher.cfg.num_hidden_layers)
    return model, teacher, teacher_lib.plan(cfg, lmap, model.student.cfg, teacher.cfg)


def abstract_task(cfg: ml_collections.ConfigDict) -> tuple[Task, dict]:
    """The training Task with abstract teacher and student (nnx.eval_shape over the configs' `init`
    architectures, BERT-base for the paper; nothing is read or allocated) and the global batch's shapes:
    what `Trainer(..., abstract=True)` compiles for a target topology. Both vocabularies are `aot.vocab_size`
    (a tokenizer's size is known only once it is read). With a cached teacher the step holds no teacher."""
    model, teacher, p = _abstract_models(cfg)
    b = int(cfg.train.batch_size)
    online = None if cached_teacher(cfg) else teacher
    task = task_lib.abstract(model, make_loss(p), b, logical_axes=STUDENT_AXES, teacher=online,
                             teacher_logical_axes=LOGICAL_AXES)
    return task, abstract_batch(batch_spec(cfg, p), b)


def build(cfg: ml_collections.ConfigDict, workdir: str) -> Task:
    splits, bad_rows = load_splits(cfg)
    # Everything downstream (vocabularies, masks, MWPS, baselines, plots) sees the notes as the model does.
    clean = knowledge.preprocess_note if cfg.data.preprocess else (lambda t: t)
    texts = {k: [clean(n.text) for n in v] for k, v in splits.items()}
    train_texts = texts["train"]
    tok_t = teacher_tokenizer(cfg, train_texts, workdir)
    tok_s = student_tokenizer(cfg, train_texts, workdir)
    finder = knowledge.resolve_finder(cfg.data.domain_words)
    teacher = build_teacher(cfg, len(tok_t))
    base = build_student(cfg, len(tok_s))
    for name, m, tok in (("teacher", teacher.cfg, tok_t), ("student", base.cfg, tok_s)):
        if len(tok) > m.vocab_size:
            raise InputError(f"{name}: tokenizer has {len(tok)} tokens but the model only {m.vocab_size}")
    model = Student(base, teacher.cfg.hidden_size, nnx.Rngs(cfg.seed + 2))
    init_info = init_student(cfg, model)
    lmap = layer_map(cfg.kd.layer_map, base.cfg.num_hidden_layers, teacher.cfg.num_hidden_layers)
    p = teacher_lib.plan(cfg, lmap, base.cfg, teacher.cfg)
    encode = encode_fn(tok_s, tok_t, finder, cfg)
    data = {k: grain.MapDataset.source(v).map(encode) for k, v in splits.items()}
    unlabelled, u_bad = load_unlabelled(cfg) if uses_unlabelled(cfg) else ([], [])
    u_data = grain.MapDataset.source(unlabelled).map(encode) if unlabelled else None
    if cached_teacher(cfg):  # the teacher's targets once per note; the step runs only the student
        cdir = cfg.teacher.cache.dir or os.path.join(workdir, "teacher_cache")
        cache, stats = teacher_lib.write_cache(cfg, teacher, data["train"], p, cdir, train_texts)
        data["train"] = data["train"].map_with_index(
            teacher_lib.cached_example(cache, p, bool(cfg.teacher.cache.get("other_note", False))))
        step_teacher, teacher_info = None, teachers.describe(teachers.CACHED, cache, stats)
        if u_data is not None:  # a cache of their own beside the training notes'
            u_cache, u_stats = teacher_lib.write_cache(cfg, teacher, u_data, p, cdir.rstrip("/") + "_unlabelled",
                                                       [clean(n.text) for n in unlabelled])
            u_data = u_data.map_with_index(teacher_lib.cached_example(u_cache, p))
            teacher_info["unlabelled_cache"] = teachers.describe(teachers.CACHED, u_cache, u_stats)
    else:
        step_teacher, teacher_info = teacher, teachers.describe(teachers.ONLINE)
    transform = _pair_with(u_data) if u_data is not None else None
    balanced = {}
    if cfg.kd.get("balance", "none") == "initial_gradients" and p.distils:
        from kdjax.systems.dsg_kd.balance import balance
        from kdjax.train.trainer import training_order

        b = int(cfg.train.batch_size)  # the run's first global batch, its parameters before the first step
        first = next(iter(training_order(data["train"], int(cfg.seed), transform)[:b].batch(b)))
        p, balanced = balance(model, step_teacher, first, p)
        logging.info("kd.balance: alpha %.4g -> %.4g, beta %.4g -> %.4g (encoder gradient norms %s)",
                     balanced["alpha_paper"], p.alpha, balanced["beta_paper"], p.beta,
                     {k: round(v, 6) for k, v in balanced.items() if k.endswith("norm")})
    report = _report(cfg, splits, texts, teacher, tok_t, tok_s, finder)
    info = {"num_examples": {k: len(v) for k, v in splits.items()}, "unlabelled_notes": len(unlabelled),
            "bad_rows_skipped": len(bad_rows) + len(u_bad), "bad_rows": (bad_rows + u_bad)[:100], "layer_map": lmap,
            "teacher_vocab": len(tok_t),
            "student_vocab": len(tok_s), "hidden_projection": model.hidden_proj is not None,
            "teacher": teacher_info, "init_from": init_info,
            "kd": {"alpha": p.alpha, "beta": p.beta, "loss_form": p.form, **balanced,
                   "weights": dict(zip(("hidn", "attn"), layer_weights(p.form, p.alpha, p.beta, p.layer_map)))}}
    return Task(model=model, loss_fn=make_loss(p), predict_fn=predict_fn, train_data=data["train"],
                eval_data={"dev": data["dev"], "test": data["test"]}, evaluate=evaluate,
                prediction_rows=prediction_rows(list(cfg.data.labels), splits),
                logical_axes=STUDENT_AXES, teacher=step_teacher, teacher_logical_axes=LOGICAL_AXES, report=report,
                info=info, batch_spec=batch_spec(cfg, p), train_transform=transform)


def init_student(cfg: ml_collections.ConfigDict, model: Student) -> dict[str, str] | None:
    """`student.init_from`: the student's encoder and hidden projection from a trained DSG-KD workdir (its kept best
    model, else its newest intact checkpoint), its classifier head left as initialised here: a stage that starts
    from a pre-distillation stage (`kd.ce_weight=0`). A workdir of another architecture is refused by parameter."""
    src = cfg.student.get("init_from", "")
    if not src:
        return None
    from kdjax.train.restore import init_params, read_params

    params, where = read_params(src)
    init_params(model, nnx.Param, params, where, keep=("student.classifier.*",))
    return {"workdir": src, "checkpoint": where}


def _pair_with(unlabelled: grain.MapDataset) -> Callable[[dict, np.random.Generator], dict]:
    """The trainer's per-example transform with data.unlabelled: each training note paired with an unlabelled one
    drawn at random (seeded by the run, so a resumed run draws the same), under `u_` names."""

    def pair(ex: dict, rng: np.random.Generator) -> dict:
        u = unlabelled[int(rng.integers(len(unlabelled)))]
        return {**ex, **{UNLABELLED + k: v for k, v in u.items() if k != "label"}}

    return pair


EMBEDDINGS = "embeddings.npz"  # the report's word embeddings: teacher_x, teacher_domain, student_x, student_domain


def _report(cfg, splits, texts, teacher, tok_t, tok_s, finder):
    """The report's extras: MWPS of the test notes, the PCA plot of word embeddings, bag-of-words baselines."""
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

            path = paths.join(wd, "embeddings_pca.png")
            with paths.local_dir(wd) as local:  # matplotlib writes local files (the workdir may be a bucket)
                drawn = plot_embeddings(groups, os.path.join(local, "embeddings_pca.png"))
            out["embedding_plot"] = {"path": path, **drawn}
            # the points themselves, so that Fig. 2.3 can draw several runs in one PCA (kdjax.experiment)
            buf = io.BytesIO()
            np.savez(buf, **{f"{k}_{i}": v for k, (x, dom) in zip(("teacher", "student"), groups.values())
                             for i, v in (("x", x), ("domain", dom))})
            paths.write_bytes(paths.join(wd, EMBEDDINGS), buf.getvalue())
        if cfg.report.baselines:
            from kdjax.baselines.bow import run_baselines
            from kdjax.train.logging import format_table

            out["baselines"] = run_baselines(texts["train"], [n.label for n in splits["train"]],
                                             texts["test"], [n.label for n in test], cfg.seed)
            scored = {k: v for k, v in out["baselines"].items() if "unavailable" not in v}
            print("\nBag-of-words baselines (test, x100):")
            print(format_table(scored, scale=100.0))
            for k, v in out["baselines"].items():
                if "unavailable" in v:
                    print(f"{k}: unavailable ({v['unavailable']})")
        return out

    return report
