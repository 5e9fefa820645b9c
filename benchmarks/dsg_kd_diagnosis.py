"""Why L_hidn does not help in issue 24's DSG-KD experiment: the measurements of benchmarks/EXPERIMENTS.md's diagnosis,
from a finished `dsg_kd_table2_3.py:mini*` experiment directory.

For a distilling run (its config, its teacher cache) it measures:
- probe: does the teacher know what the student lacks? A logistic regression on each mapped teacher layer's cached
  targets (a note's span-pooled states averaged over its domain words), 5-fold cross-validated AUROC on the
  students' training notes.
- targets: per mapped teacher layer, the mean square of the word targets and their across-word variance (the MSE a
  constant prediction of their mean would leave).
- gradients at step 0 (64 notes, no dropout): the norms of CE's and alpha * L_hidn's gradients on the encoder shared
  by both, their cosine, and Adam's view: on each coordinate CE has a gradient on, the share of its normalised step
  CE keeps once L_hidn shares the coordinate, |g_ce| / sqrt(g_ce^2 + g_hidn^2) (1 without L_hidn).
- collapse: for each student row's best checkpoint (seed 0), how much its last-layer states vary across dev notes
  (std of the mean token state and of the CLS state, rms over dimensions) and its logit margin's spread.
- with --unlabelled (v5's data.unlabelled): the probe fitted on the training notes' targets and on those plus the
  unlabelled notes', scored on the test notes (`probe_unlabelled`).
- with --students (only this): the same probe on the trained students' own views (span-pooled states of the mapped
  layers, the last layer's CLS) for the student alone and DSG-KD (and v6's rows where they ran), seeds 0-2
  (`probe_students`).

Prints one JSON line.

    python benchmarks/dsg_kd_diagnosis.py --experiment=experiments/dsg_mini_v1 [--seed=0] [--unlabelled]
    python benchmarks/dsg_kd_diagnosis.py --experiment=experiments/dsg_mini_v5 --students
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # kdjax/, configs/: run as a script

from configs.experiments.dsg_kd_table2_3 import AFTER_STAGE_1, ALONE_40  # noqa: E402
from kdjax.experiment import spec  # noqa: E402
from kdjax.systems import dsg_kd  # noqa: E402
from kdjax.systems.dsg_kd import teacher as teacher_lib  # noqa: E402
from kdjax.systems.dsg_kd.balance import encoder_gradient  # noqa: E402
from kdjax.train.restore import restore_trained, workdir_config  # noqa: E402

FULL, ALONE = "L_pred + L_hidn + L_attn", "L_pred"
STAGED = (ALONE_40, AFTER_STAGE_1)  # v6's rows, probed where they ran


def _task(run: str, scratch: str):
    cfg = workdir_config(run)
    cfg.teacher.cache.dir = os.path.join(run, "teacher_cache")  # the run's own cache: nothing recomputed
    return cfg, dsg_kd.build(cfg, scratch)


def _stack(data, n: int) -> dict[str, np.ndarray]:
    rows = [data[i] for i in range(min(n, len(data)))]
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def probe(batch: dict[str, np.ndarray]) -> list[float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict

    valid = (batch[teacher_lib.COUNTS] > 0).astype(np.float32)[:, :, None]
    out = []
    for i in range(batch[teacher_lib.HIDDEN].shape[1]):
        x = (batch[teacher_lib.HIDDEN][:, i] * valid).sum(1) / np.maximum(valid.sum(1), 1)
        p = cross_val_predict(LogisticRegression(max_iter=2000), x, batch["label"], cv=5, method="predict_proba")
        out.append(round(100 * float(roc_auc_score(batch["label"], p[:, 1])), 2))
    return out


def targets(batch: dict[str, np.ndarray]) -> list[dict[str, float]]:
    valid = batch[teacher_lib.COUNTS] > 0
    out = []
    for i in range(batch[teacher_lib.HIDDEN].shape[1]):
        x = batch[teacher_lib.HIDDEN][:, i][valid]
        out.append({"mean_square": round(float(np.mean(x ** 2)), 4), "variance": round(float(x.var(0).mean()), 4)})
    return out


def _hidden_plan(cfg, task) -> teacher_lib.Plan:
    """What L_hidn compares (L_attn off), as the run's config and layer map say."""
    return teacher_lib.Plan(num_words=int(cfg.data.max_words),
                            layer_map=tuple(tuple(x) for x in task.info["layer_map"]), alpha=float(cfg.kd.alpha) or 1.0,
                            beta=0.0, keys=cfg.kd.attn_keys, average_heads=False, teacher_width=0, teacher_heads=0,
                            teacher_length=0, form=cfg.kd.loss_form)


def _pooled(targets: dict[str, np.ndarray]) -> np.ndarray:
    """(notes, layers, width): each note's span-pooled teacher states averaged over its domain words."""
    valid = (targets[teacher_lib.COUNTS] > 0).astype(np.float32)[:, None, :, None]
    return (targets[teacher_lib.HIDDEN] * valid).sum(2) / np.maximum(valid.sum(2), 1)


def _labelled_and_unlabelled(run: str, scratch: str):
    """(cfg, task with the teacher in process, {"train", "unlabelled", "test": rows}) of a v5 run (data.unlabelled),
    every note encoded as the run encodes it; the unlabelled notes keep their generator's labels, which only the
    probes read. None without generated unlabelled notes."""
    from kdjax.data import knowledge, synthetic_notes
    from kdjax.systems.dsg_kd.data import encode_fn, teacher_tokenizer, trained_tokenizer

    cfg = workdir_config(run)
    u = cfg.data.unlabelled
    if cfg.data.source != "synthetic" or not int(u.num_synthetic):
        return None
    cfg.teacher.cache.enabled = False  # the test and unlabelled notes' targets are computed here
    task = dsg_kd.build(cfg, scratch)
    tok_t = teacher_tokenizer(cfg, [], run) if cfg.teacher.workdir else trained_tokenizer(cfg.teacher, "teacher", run)
    encode = encode_fn(trained_tokenizer(cfg.student, "student", run), tok_t,
                       knowledge.resolve_finder(cfg.data.domain_words), cfg)
    rows = {"train": [task.train_data[i] for i in range(len(task.train_data))],
            "unlabelled": [encode(n) for n in synthetic_notes.generate_notes(int(u.num_synthetic), int(u.seed))],
            "test": [task.eval_data["test"][i] for i in range(len(task.eval_data["test"]))]}
    return cfg, task, rows


def _views(rows: list[dict], fields: tuple[str, ...], fn) -> np.ndarray:
    """fn(batch of `fields`) -> (notes, views, width), over `rows` in batches of 64."""
    out = [fn({k: np.stack([r[k] for r in rows[i:i + 64]]) for k in fields}) for i in range(0, len(rows), 64)]
    return np.concatenate(out)


def _probe_scores(x: dict[str, np.ndarray], y: dict[str, np.ndarray], view: int) -> dict[str, float]:
    """Test AUROC of a logistic regression on one view, fitted on the training notes and on those plus the
    unlabelled notes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    def score(xf: np.ndarray, yf: np.ndarray) -> float:
        reader = LogisticRegression(max_iter=2000).fit(xf[:, view], yf)
        return round(100 * float(roc_auc_score(y["test"], reader.predict_proba(x["test"][:, view])[:, 1])), 2)

    return {"train": score(x["train"], y["train"]),
            "train_and_unlabelled": score(np.concatenate([x["train"], x["unlabelled"]]),
                                          np.concatenate([y["train"], y["unlabelled"]]))}


def _labels(rows: dict[str, list[dict]]) -> dict[str, np.ndarray]:
    return {k: np.array([int(r["label"]) for r in v]) for k, v in rows.items()}


def probe_unlabelled(run: str, scratch: str) -> dict:
    """DSG-KD v5's measurement (data.unlabelled): the probe above fitted on the training notes' targets, and on those
    plus the unlabelled notes' (their generator's labels, read here only), each scored on the test notes' targets:
    whether the unlabelled notes carry more of the teacher's knowledge than the training notes do. The teacher runs in
    process (the test notes have no cache)."""
    import jax
    from flax import nnx

    got = _labelled_and_unlabelled(run, scratch)
    if got is None:
        return {"skipped": "needs generated labelled and unlabelled notes (their labels are the generator's)"}
    cfg, task, rows = got
    p = _hidden_plan(cfg, task)
    gdef, state = nnx.split(task.teacher)
    run_teacher = jax.jit(lambda s, b: teacher_lib.targets(nnx.merge(gdef, s), b, p))

    def pooled(batch: dict[str, np.ndarray]) -> np.ndarray:
        t = jax.tree.map(np.asarray, run_teacher(state, batch))
        return _pooled({teacher_lib.COUNTS: t["counts"], teacher_lib.HIDDEN: t["hidden"]})

    x = {k: _views(v, teacher_lib.TOKEN_FIELDS, pooled) for k, v in rows.items()}
    y = _labels(rows)
    result = {"train_notes": len(y["train"]), "unlabelled_notes": len(y["unlabelled"]), "test_notes": len(y["test"]),
              "layers": [{"teacher_layer": t, **_probe_scores(x, y, i)} for i, t in enumerate(p.hidden_layers)]}
    return result


def probe_students(experiment: str, rows_: tuple[str, ...], seeds: tuple[int, ...], scratch: str) -> dict:
    """Where the teacher's knowledge stops on its way to the student's decision (v5): for each row's trained student
    (best checkpoint), the probe of `probe_unlabelled` on the student's own views, fitted on the training notes and
    on those plus the unlabelled ones, scored on the test notes: its span-pooled states of each mapped layer (what
    L_hidn pulls toward the teacher's targets) and its last layer's CLS state (what its classifier reads), beside
    the test AUROC of its own classifier. A view that reads well with 2200 notes' labels but not with 200 holds the
    knowledge in a form the 200 labelled notes cannot teach the classifier to read."""
    import jax
    from flax import nnx
    from sklearn.metrics import roc_auc_score

    from kdjax.losses.dsg_kd import teacher_hidden_targets

    # the notes of any run that read the unlabelled ones (v5's full row, or v6's after pre-distillation where v5's
    # rows were not run in this directory)
    kd_runs = [r for r in (os.path.join(experiment, "runs", spec.slug(row), "seed0") for row in (FULL, AFTER_STAGE_1))
               if os.path.isdir(r)]
    if not kd_runs:
        return {"skipped": f"{experiment}: neither {FULL!r} nor {AFTER_STAGE_1!r} has a seed 0 run"}
    got = _labelled_and_unlabelled(kd_runs[0], os.path.join(scratch, "notes"))
    if got is None:
        return {"skipped": "needs generated labelled and unlabelled notes (their labels are the generator's)"}
    notes = got[2]  # every student of the experiment reads the same notes through the same tokenizers
    layers = [s for s, _ in got[1].info["layer_map"]]  # the student alone's run has no KD terms to map
    y = _labels(notes)
    out: dict = {}
    for row in rows_:
        for seed in seeds:
            run = os.path.join(experiment, "runs", spec.slug(row), f"seed{seed}")
            if not os.path.isdir(run):
                continue
            cfg = workdir_config(run)
            cfg.teacher.cache.enabled = False  # the student is all this reads: no teacher targets to cache
            task = dsg_kd.build(cfg, os.path.join(scratch, spec.slug(row), str(seed)))
            model = restore_trained(cfg, task.model, None, run)
            gdef, state = nnx.split(model.student)
            num_words = int(cfg.data.max_words)

            @jax.jit
            def student_views(state, b):
                o = nnx.merge(gdef, state)(b["s_input_ids"], b["s_attention_mask"], b["s_token_type_ids"],
                                           output_hidden_states=True, deterministic=True)
                hidden, counts = teacher_hidden_targets(o["hidden_states"], b["s_word_ids"], num_words, layers)
                return hidden, counts, o["last_hidden_state"][:, 0], o["logits"][:, 1] - o["logits"][:, 0]

            fields = ("s_input_ids", "s_attention_mask", "s_token_type_ids", "s_word_ids")
            margins = {}

            def views(b: dict[str, np.ndarray], split: str = "") -> np.ndarray:
                hidden, counts, cls, margin = jax.tree.map(np.asarray, student_views(state, b))
                margins.setdefault(split, []).append(margin)
                pooled = _pooled({teacher_lib.COUNTS: counts, teacher_lib.HIDDEN: hidden})
                return np.concatenate([pooled, cls[:, None]], axis=1)

            x = {k: _views(v, fields, lambda b, k=k: views(b, k)) for k, v in notes.items()}
            names = [f"span-pooled layer {s}" for s in layers] + ["CLS, last layer"]
            own = round(100 * float(roc_auc_score(y["test"], np.concatenate(margins["test"]))), 2)
            out.setdefault(row, {})[f"seed{seed}"] = {
                "own_classifier_test_auroc": own,
                **{n: _probe_scores(x, y, i) for i, n in enumerate(names)}}
    return out


def gradients(cfg, task, batch: dict[str, np.ndarray]) -> dict[str, float]:
    p = _hidden_plan(cfg, task)
    c = encoder_gradient(task.model, None, batch, p, alpha=0.0, beta=0.0)
    h = encoder_gradient(task.model, None, batch, p, alpha=p.alpha, beta=0.0) - c
    nz = c != 0
    keep = np.abs(c[nz]) / np.sqrt(c[nz] ** 2 + h[nz] ** 2)
    return {"ce_norm": float(np.linalg.norm(c)), "alpha_hidn_norm": float(np.linalg.norm(h)),
            "ratio": float(np.linalg.norm(h) / np.linalg.norm(c)), "cosine": float(c @ h / np.linalg.norm(c) /
                                                                                     np.linalg.norm(h)),
            "adam_ce_share_median": float(np.median(keep)), "adam_ce_share_mean": float(np.mean(keep))}


def collapse(run: str, scratch: str) -> dict[str, float]:
    cfg, task = _task(run, scratch)
    model = restore_trained(cfg, task.model, None, run)
    b = _stack(task.eval_data["dev"], 10_000)
    out = model.student(b["s_input_ids"], b["s_attention_mask"], b["s_token_type_ids"])
    last = np.asarray(out["last_hidden_state"])
    mask = b["s_attention_mask"][..., None]
    mean_tok = (last * mask).sum(1) / mask.sum(1)
    margin = np.asarray(out["logits"][:, 1] - out["logits"][:, 0])
    rms_std = lambda x: float(np.sqrt(x.var(0).mean()))  # noqa: E731
    return {"mean_token_std": rms_std(mean_tok), "cls_std": rms_std(last[:, 0]), "margin_std": float(margin.std())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--experiment", required=True, help="a finished dsg_kd_table2_3.py:mini* experiment directory")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--unlabelled", action="store_true",
                    help="also v5's probe: training vs training + unlabelled notes")
    ap.add_argument("--students", action="store_true",
                    help="only the student probe (`probe_students`) of the student alone and DSG-KD, and v6's rows "
                         "where they ran, seeds 0-2")
    a = ap.parse_args()
    run = lambda row: os.path.join(a.experiment, "runs", spec.slug(row), f"seed{a.seed}")  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        if a.students:
            print(json.dumps({"benchmark": "dsg_kd_diagnosis", "experiment": os.path.abspath(a.experiment),
                              "probe_students": probe_students(a.experiment, (ALONE, FULL, *STAGED), (0, 1, 2),
                                                                tmp)}))
            return
        cfg, task = _task(run(FULL), os.path.join(tmp, "full"))
        train = _stack(task.train_data, 10_000)
        result = {"benchmark": "dsg_kd_diagnosis", "experiment": os.path.abspath(a.experiment), "seed": a.seed,
                  "layer_map": task.info["layer_map"], "probe_auroc": probe(train), "targets": targets(train),
                  "gradients_step0": gradients(cfg, task, {k: v[:64] for k, v in train.items()}),
                  "collapse": {}}
        for row in (ALONE, "L_pred + L_hidn", FULL):
            if os.path.isdir(run(row)):
                result["collapse"][row] = collapse(run(row), os.path.join(tmp, spec.slug(row)))
        if a.unlabelled:
            result["probe_unlabelled_test_auroc"] = probe_unlabelled(run(FULL), os.path.join(tmp, "online"))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
