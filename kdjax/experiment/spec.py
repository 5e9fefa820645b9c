"""An experiment file's contents, checked when read, and the runs it plans (one per row and seed)."""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from typing import Any

import ml_collections

from kdjax.errors import InputError

FIGURES = ("none", "bars", "line", "embeddings")
GATE_OPS = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, "<": lambda a, b: a < b}
MODES = ("train", "cost")  # kdjax.main modes a row may run: train a model, or measure what one costs
PATH_REF = re.compile(r"\{path:([A-Za-z0-9_]+)\}")
ROW_REF = re.compile(r"\{row:([^}]+)\}")


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    config: str  # config file and variant, e.g. configs/dsg_kd.py:paper
    overrides: dict[str, Any]  # dotted config key -> value, on top of the config
    x: float | None = None  # the row's position on a line figure's x axis (a sweep's value)
    seeds: tuple[int, ...] | None = None  # this row's own seeds (e.g. one fixed teacher for every student seed)
    mode: str = "train"  # kdjax.main --mode: `cost` measures the config's model on this host (seeds: repeats)
    table: bool = True  # False: a stage later rows start from (e.g. a teacher's pre-training), not a table row
    # (report path, op, value in the table's unit): the rows that start from this one ({row:NAME}) run only if its
    # report meets every condition (a design's gate, e.g. a teacher good enough that it cannot confound the result)
    gate: tuple[tuple[str, str, float], ...] = ()


@dataclasses.dataclass(frozen=True)
class Run:
    row: Row  # its overrides with {path:...} and {row:...} filled in
    seed: int
    workdir: str
    index: int  # 1-based, in running order
    after: tuple[tuple[str, int], ...] = ()  # (row, seed) runs that must finish first (named by {row:NAME})

    @property
    def name(self) -> str:
        return f"{self.row.name} / seed {self.seed}"

    def overrides(self, extra: list[str]) -> list[str]:
        """kdjax.main's arguments after --config and --workdir: the row's values, the seed, then the command line's."""
        return [*(f"--config.{k}={_flag_value(v)}" for k, v in self.row.overrides.items()),
                f"--config.seed={self.seed}", *extra]

    def mode_flags(self) -> list[str]:
        return [] if self.row.mode == "train" else [f"--mode={self.row.mode}"]

    def command(self, extra: list[str], python: str = sys.executable) -> list[str]:
        return [python, "-m", "kdjax.main", f"--config={self.row.config}", f"--workdir={self.workdir}",
                *self.mode_flags(), *self.overrides(extra)]



@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    source: str  # the paper's table or figure
    rows: tuple[Row, ...]
    seeds: tuple[int, ...]
    metrics: dict[str, str]  # column -> report path under report["metrics"], e.g. "test.auroc" (table order)
    scale: float  # report value x scale = the table's unit (100: percent, as the papers print)
    paper: dict[str, dict[str, float]]  # row -> column -> the paper's number (in the table's unit; given as pairs)
    compare: tuple[tuple[str, str, str], ...]  # (row a, row b, column): paired test over seeds
    figure: dict[str, Any]
    paths: dict[str, str] = dataclasses.field(default_factory=dict)  # user paths the rows name as {path:NAME}
    expect: str = ""  # the design: the deciding comparison and the direction the paper claims, written beforehand

    def seeds_of(self, row: Row) -> tuple[int, ...]:
        return row.seeds if row.seeds is not None else self.seeds

    def runs(self, root: str) -> list[Run]:
        """One run per row and seed, rows in order. In an override value, `{path:NAME}` is the experiment's path NAME
        (`paths`, set by the user) and `{row:NAME}` the workdir of row NAME's run of the same seed (of its only seed
        when it has one): a later stage that starts from an earlier one (Multi2Cap's fine-tuning from its
        pre-training), or a teacher every student seed distils from."""
        by_name = {r.name: r for r in self.rows}

        def workdir(name: str, seed: int) -> str:
            return os.path.join(root, "runs", slug(name), f"seed{seed}")

        def ref_seed(name: str, seed: int) -> int:
            theirs = self.seeds_of(by_name[name])
            return theirs[0] if len(theirs) == 1 else seed

        out = []
        for row in self.rows:
            refs = [m.group(1) for v in row.overrides.values() if isinstance(v, str) for m in ROW_REF.finditer(v)]
            for seed in self.seeds_of(row):
                def fill(v: Any, seed: int = seed) -> Any:
                    if not isinstance(v, str):
                        return v
                    v = PATH_REF.sub(lambda m: self.paths[m.group(1)], v)
                    return ROW_REF.sub(lambda m: workdir(m.group(1), ref_seed(m.group(1), seed)), v)

                filled = dataclasses.replace(row, overrides={k: fill(v) for k, v in row.overrides.items()})
                after = tuple(dict.fromkeys((n, ref_seed(n, seed)) for n in refs))
                out.append(Run(filled, seed, workdir(row.name, seed), len(out) + 1, after))
        return out


def slug(name: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return s or "row"


def _flag_value(v: Any) -> str:
    """A config value as ml_collections' command-line override parses it back."""
    return v if isinstance(v, str) else repr(tuple(v) if isinstance(v, list) else v)


def _plain(x: Any) -> Any:
    if isinstance(x, ml_collections.ConfigDict):
        x = x.to_dict()
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def read(cfg: ml_collections.ConfigDict, where: str = "the experiment") -> Experiment:
    """The experiment a config describes; an InputError naming every problem (key by key) otherwise."""
    d = _plain(cfg)
    problems: list[str] = []

    def need(key: str, kind, default=None):
        v = d.get(key, default)
        if not isinstance(v, kind) or (kind is not bool and not v and default is None):
            problems.append(f"{key}: must be a non-empty {getattr(kind, '__name__', kind)}, got {v!r}")
        return v

    name, base = need("name", str), need("base", str)
    seeds = need("seeds", list)
    if isinstance(seeds, list) and not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        problems.append(f"seeds: integers, got {seeds!r}")
    if isinstance(seeds, list) and len(set(seeds)) != len(seeds):
        problems.append(f"seeds: repeated seed in {seeds!r}")
    rows = []
    for i, r in enumerate(need("rows", list) or []):
        if not isinstance(r, dict) or not isinstance(r.get("name"), str) or not r["name"]:
            problems.append(f"rows[{i}]: needs a name, got {r!r}")
            continue
        over = r.get("overrides", {}) or {}
        if not isinstance(over, dict):
            problems.append(f"rows[{i}] ({r['name']}): overrides must map config keys to values")
            over = {}
        x = r.get("x")
        if x is not None and not isinstance(x, (int, float)):
            problems.append(f"rows[{i}] ({r['name']}): x must be a number, got {x!r}")
        row_seeds = r.get("seeds")
        if row_seeds is not None and not (isinstance(row_seeds, list) and row_seeds
                                          and all(isinstance(v, int) and not isinstance(v, bool) for v in row_seeds)):
            problems.append(f"rows[{i}] ({r['name']}): seeds must be a non-empty list of integers, got {row_seeds!r}")
            row_seeds = None
        mode = r.get("mode", "train")
        if mode not in MODES:
            problems.append(f"rows[{i}] ({r['name']}): mode must be one of {', '.join(MODES)}, got {mode!r}")
        table = r.get("table", True)
        if not isinstance(table, bool):
            problems.append(f"rows[{i}] ({r['name']}): table must be True or False, got {table!r}")
        gate = []
        for g in r.get("gate", []) or []:
            if not (isinstance(g, list) and len(g) == 3 and isinstance(g[0], str) and "." in g[0] and g[1] in GATE_OPS
                    and isinstance(g[2], (int, float)) and not isinstance(g[2], bool)):
                problems.append(f"rows[{i}] ({r['name']}).gate: (report path, one of {' '.join(GATE_OPS)}, number) "
                                f"triples, got {g!r}")
            else:
                gate.append((g[0], g[1], float(g[2])))
        rows.append(Row(r["name"], r.get("config") or base or "", over, x,
                        tuple(row_seeds) if row_seeds is not None else None, mode, table is not False, tuple(gate)))
    names = [r.name for r in rows]
    paths = d.get("paths", {}) or {}
    if not isinstance(paths, dict):
        problems.append(f"paths: a mapping of names to paths, got {paths!r}")
        paths = {}
    unset: dict[str, list[str]] = {}
    for i, r in enumerate(rows):
        for key, v in r.overrides.items():
            if not isinstance(v, str):
                continue
            for m in PATH_REF.finditer(v):
                if m.group(1) not in paths:
                    problems.append(f"rows[{i}] ({r.name}).{key}: no path {m.group(1)!r} in paths")
                elif not paths[m.group(1)]:
                    unset.setdefault(m.group(1), []).append(r.name)
            for m in ROW_REF.finditer(v):
                if m.group(1) not in names[:i]:
                    problems.append(f"rows[{i}] ({r.name}).{key}: {{row:{m.group(1)}}} must name an earlier row")
                    continue
                theirs = rows[names.index(m.group(1))].seeds
                mine = r.seeds if r.seeds is not None else tuple(seeds or ())
                if theirs is not None and len(theirs) > 1 and not set(mine) <= set(theirs):
                    problems.append(f"rows[{i}] ({r.name}).{key}: {m.group(1)!r} has no run of seeds "
                                    f"{sorted(set(mine) - set(theirs))}")
    for path, users in unset.items():
        rows_using = ", ".join(dict.fromkeys(users))
        problems.append(f"paths.{path}: must be set, --config.paths.{path}=... (rows {rows_using})")
    for n in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"rows: the name {n!r} is used twice")
    slugs = [slug(n) for n in names]
    for n, s in zip(names, slugs):
        if slugs.count(s) > 1 and names.count(n) == 1:
            problems.append(f"rows: {n!r} shares its directory name {s!r} with another row")
    metrics = d.get("metrics")
    if isinstance(metrics, list) and all(isinstance(m, list) and len(m) == 2 for m in metrics):
        metrics = {str(c): p for c, p in metrics}  # (column, path) pairs keep the paper's column order
    if not isinstance(metrics, dict) or not metrics:
        problems.append(f"metrics: (column, report path) pairs such as ('AUROC', 'test.auroc'), got {metrics!r}")
        metrics = {}
    for col, path in metrics.items():
        if not isinstance(path, str) or "." not in path:
            problems.append(f"metrics.{col}: a report path such as 'test.auroc', got {path!r}")
    paper = d.get("paper", {}) or {}
    if isinstance(paper, list) and all(isinstance(p, list) and len(p) == 2 for p in paper):
        paper = {str(r): c for r, c in paper}  # (row, {column: number}) pairs: row names may hold dots
    if not isinstance(paper, dict):
        problems.append(f"paper: (row, {{column: number}}) pairs, got {paper!r}")
        paper = {}
    staged = {r.name for r in rows if not r.table}
    for row, cols in paper.items():
        if row not in names or row in staged:
            problems.append(f"paper.{row}: no table row of that name (rows: {', '.join(names)})")
        for col in cols or {}:
            if col not in metrics:
                problems.append(f"paper.{row}.{col}: no metric column of that name")
    compare = []
    for i, c in enumerate(d.get("compare", []) or []):
        if not (isinstance(c, list) and len(c) == 3 and c[0] in names and c[1] in names and c[2] in metrics
                and not {c[0], c[1]} & staged):
            problems.append(f"compare[{i}]: (row, row, metric column) of this experiment, got {c!r}")
        else:
            compare.append(tuple(c))
    figure = d.get("figure", {"kind": "none"}) or {"kind": "none"}
    kind = figure.get("kind", "none")
    if kind not in FIGURES:
        problems.append(f"figure.kind: one of {', '.join(FIGURES)}, got {kind!r}")
    elif kind == "embeddings":
        for key in ("alone", "distilled"):
            if figure.get(key) not in names:
                problems.append(f"figure.{key}: a row of this experiment, got {figure.get(key)!r}")
    elif kind != "none" and figure.get("metric") not in metrics:
        problems.append(f"figure.metric: a metric column, got {figure.get('metric')!r}")
    elif kind == "line" and any(r.x is None for r in rows):
        problems.append("figure.kind 'line': every row needs its x value")
    scale = d.get("scale", 1.0)
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or scale <= 0:
        problems.append(f"scale: a positive number, got {scale!r}")
    if problems:
        raise InputError(f"{where}: " + "; ".join(dict.fromkeys(problems)))
    return Experiment(name, str(d.get("source", "")), tuple(rows), tuple(seeds), dict(metrics), float(scale),
                      {k: dict(v or {}) for k, v in paper.items()}, tuple(compare), dict(figure),
                      {k: str(v) for k, v in paths.items()}, str(d.get("expect", "")))
