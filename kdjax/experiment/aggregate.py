"""An experiment's table and figure from its runs' reports: mean +- std per cell over seeds, the paper's numbers
beside, paired significance tests between named rows; written as Markdown, JSON and CSV, and a PNG."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from typing import Any

import numpy as np

from kdjax import paths
from kdjax.errors import InputError
from kdjax.experiment.spec import Experiment, slug
from kdjax.experiment.runner import finished

OUTPUTS = ("table.md", "table.json", "table.csv", "figure.png")


def report_value(report: dict, path: str, where: str) -> float:
    """report["metrics"][split][name] for path "split.name" (names may hold dots: only the first one splits); a
    path whose first part is not an evaluated split is a key path into the report itself (e.g.
    "mwps.correct_test_notes", DSG-KD's medical-word score)."""
    split, _, name = path.partition(".")
    try:
        if split in report.get("metrics", {}):
            return float(report["metrics"][split][name])
        node: Any = report
        for part in path.split("."):
            node = node[part]
        return float(node)
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{where}: no metric {path!r} in its report (it has "
                         f"{', '.join(f'{s}.{m}' for s, ms in report.get('metrics', {}).items() for m in ms)})"
                         ) from None


def _paired(a: dict[int, float], b: dict[int, float]) -> dict[str, Any]:
    """Paired t-test over the seeds both rows finished (each seed's pair shares data order and initialisation)."""
    seeds = sorted(set(a) & set(b))
    out: dict[str, Any] = {"seeds": seeds, "n": len(seeds)}
    if not seeds:
        return {**out, "note": "no seed finished in both rows"}
    d = np.array([a[s] - b[s] for s in seeds])
    out["mean_difference"] = float(d.mean())
    if len(seeds) < 2:
        return {**out, "note": "one paired seed: no test"}
    if np.allclose(d, d[0]):
        return {**out, "note": "every seed differs by the same amount: the t-test is undefined"}
    from scipy import stats

    t, p = stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds])
    return {**out, "t": float(t), "p": float(p), "test": "paired t-test over seeds"}


def summarise(exp: Experiment, root: str) -> dict[str, Any]:
    rows, missing = [], []
    values: dict[str, dict[str, dict[int, float]]] = {}
    for run in exp.runs(root):
        if not run.row.table:  # a stage other rows start from: it has the table's metrics or not
            continue
        if not finished(run):
            missing.append(run.name)
            continue
        path = paths.join(run.workdir, "report.json")
        report = json.loads(paths.read_text(path))
        for col, metric in exp.metrics.items():
            values.setdefault(run.row.name, {}).setdefault(col, {})[run.seed] = \
                report_value(report, metric, path) * exp.scale
    for row in (r for r in exp.rows if r.table):
        cells = {}
        for col in exp.metrics:
            v = values.get(row.name, {}).get(col, {})
            arr = np.array(list(v.values()), float)
            cells[col] = {"mean": float(arr.mean()) if len(arr) else None,
                          "std": float(arr.std(ddof=1)) if len(arr) > 1 else (0.0 if len(arr) else None),
                          "n": int(len(arr)), "values": {str(s): x for s, x in sorted(v.items())},
                          "paper": exp.paper.get(row.name, {}).get(col)}
        rows.append({"name": row.name, "x": row.x, "cells": cells})
    tests = [{"a": a, "b": b, "metric": col,
              **_paired(values.get(a, {}).get(col, {}), values.get(b, {}).get(col, {}))} for a, b, col in exp.compare]
    return {"experiment": exp.name, "source": exp.source, "expect": exp.expect, "seeds": list(exp.seeds),
            "scale": exp.scale,
            "columns": list(exp.metrics), "metrics": dict(exp.metrics), "rows": rows, "tests": tests,
            "missing_runs": missing}


def _fmt(x: float | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if 1e-4 <= abs(x) < 0.1:  # small quantities (seconds of latency, a small std) keep 3 significant digits
        digits = max(digits, 2 - math.floor(math.log10(abs(x))))
    elif 0 < abs(x) < 1e-4:  # float rounding around zero (a BLEU of 1e-11) reads as such, not as 14 decimals
        return f"{x:.3g}"
    return f"{x:.{digits}f}"


def markdown(s: dict[str, Any]) -> str:
    head = ["row"] + [f"{c} (kdjax)" for c in s["columns"]] + [f"{c} (paper)" for c in s["columns"]]
    lines = [f"# {s['experiment']}", "", f"{s['source']}. Mean ± std over seeds {s['seeds']} (n = finished runs)."]
    if s.get("expect"):
        lines += ["", f"Design (written before any run): {s['expect']}"]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in s["rows"]:
        ours = [f"{_fmt(c['mean'])} ± {_fmt(c['std'])} (n={c['n']})" if c["n"] else "-" for c in r["cells"].values()]
        paper = [_fmt(c["paper"]) for c in r["cells"].values()]
        lines.append("| " + " | ".join([r["name"], *ours, *paper]) + " |")
    if s["tests"]:
        lines += ["", "| comparison | metric | mean difference | n | t | p |", "|---|---|---|---|---|---|"]
        for t in s["tests"]:
            note = f" ({t['note']})" if "note" in t else ""
            lines.append(f"| {t['a']} vs {t['b']} | {t['metric']} | {_fmt(t.get('mean_difference'), 3)} | {t['n']} | "
                         f"{_fmt(t.get('t'), 3)} | {_fmt(t.get('p'), 4)}{note} |")
    if s["missing_runs"]:
        lines += ["", f"Not finished (left out): {', '.join(s['missing_runs'])}."]
    return "\n".join(lines) + "\n"


def embeddings_figure(exp: Experiment, root: str, path: str) -> str | None:
    """DSG-KD Fig. 2.3: the teacher's word embeddings (red), the distilled student's (green) and the student trained
    alone (grey), in one PCA, from the first seed both rows finished (each run's embeddings.npz)."""
    from kdjax.metrics.embedding_plot import plot_embeddings

    f = exp.figure
    for seed in exp.seeds:
        files = {k: paths.join(root, "runs", slug(f[k]), f"seed{seed}", "embeddings.npz")
                 for k in ("alone", "distilled")}
        if all(paths.isfile(p) for p in files.values()):
            alone, kd = (np.load(io.BytesIO(paths.read_bytes(files[k]))) for k in ("alone", "distilled"))
            groups = {"teacher": (kd["teacher_x"], kd["teacher_domain"]),
                      f"student ({f['distilled']})": (kd["student_x"], kd["student_domain"]),
                      f"student alone ({f['alone']})": (alone["student_x"], alone["student_domain"])}
            plot_embeddings(groups, path, title=f.get("title", exp.name) + f" (seed {seed})")
            return path
    return None


def figure(exp: Experiment, s: dict[str, Any], path: str, root: str = "") -> str | None:
    kind = exp.figure.get("kind", "none")
    if kind == "none":
        return None
    if kind == "embeddings":
        return embeddings_figure(exp, root, path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    col = exp.figure["metric"]
    rows = [r for r in s["rows"] if r["cells"][col]["n"]]
    mean = [r["cells"][col]["mean"] for r in rows]
    std = [r["cells"][col]["std"] for r in rows]
    paper = [r["cells"][col]["paper"] for r in rows]
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(rows) + 2), 3.4))
    if kind == "bars":
        xs = np.arange(len(rows))
        ax.bar(xs, mean, yerr=std, capsize=4, color="C0", label="kdjax (mean ± std over seeds)")
        ax.set_xticks(xs, [r["name"] for r in rows], rotation=20, ha="right")
    else:
        xs = np.array([r["x"] for r in rows], float)
        order = np.argsort(xs)
        xs, mean, std, paper = xs[order], np.array(mean)[order], np.array(std)[order], [paper[i] for i in order]
        ax.errorbar(xs, mean, yerr=std, marker="o", capsize=4, color="C0", label="kdjax (mean ± std over seeds)")
        ax.set_xlabel(exp.figure.get("x_label", "x"))
    known = [(x, p) for x, p in zip(xs, paper) if p is not None]
    if known:
        ax.plot(*zip(*known), "D", color="C3", mfc="none", label="paper")
    ax.set_ylabel(col)
    ax.set_title(exp.figure.get("title", s["experiment"]), fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")  # long row names, rotated, reach past the axes' left edge
    plt.close(fig)
    return path


def write(exp: Experiment, root: str) -> dict[str, Any]:
    """Aggregate the finished runs under `root` into table.md/.json/.csv and figure.png; returns the summary."""
    if not paths.isdir(root):  # e.g. --aggregate_only with a mistyped --workdir: say so, not a write error
        raise InputError(f"{root}: no such experiment directory (nothing has run there)")
    s = summarise(exp, root)
    paths.write_text(paths.join(root, "table.json"), json.dumps(s, indent=2))
    paths.write_text(paths.join(root, "table.md"), markdown(s))
    f = io.StringIO(newline="")
    w = csv.writer(f)
    w.writerow(["row", "metric", "mean", "std", "n", "paper", *[f"seed{x}" for x in s["seeds"]]])
    for r in s["rows"]:
        for col, c in r["cells"].items():
            w.writerow([r["name"], col, c["mean"], c["std"], c["n"], c["paper"],
                        *[c["values"].get(str(x)) for x in s["seeds"]]])
    paths.write_text(paths.join(root, "table.csv"), f.getvalue())
    with paths.local_dir(root) as local:  # matplotlib writes local files
        drawn = figure(exp, s, os.path.join(local, "figure.png"), root)
    s["figure"] = drawn and paths.join(root, "figure.png")
    return s
