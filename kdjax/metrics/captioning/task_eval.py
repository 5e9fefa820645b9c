"""The trainer's evaluation of captioning systems: decode generated tokens, run the suite.

A captioning system's `Task.evaluate` is a `CaptionTaskEvaluator`: the predictions of a split hold the
generated token ids (`tokens`) and the example `index` (position in the split), which selects the
references. Scores go to the trainer as fractions (it prints them x100 like every metric); what could
not be computed and why, the tokenisation and the models used land in `info` (and so in report.json).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from kdjax.metrics.captioning.suite import METRICS, CaptionEvaluation, MetricConfig, evaluate


class CaptionTaskEvaluator:
    def __init__(self, references: Mapping[str, Sequence[Sequence[str]]],
                 decode: Callable[[np.ndarray], list[str]], *, metrics: Sequence[str] = METRICS,
                 tokenization: str = "ptb", config: MetricConfig | None = None, info: dict | None = None,
                 tokens_key: str = "tokens"):
        self.references, self.decode = references, decode
        self.metrics, self.tokenization, self.config = tuple(metrics), tokenization, config
        self.info = info if info is not None else {}
        self.tokens_key = tokens_key
        self.last: dict[str, CaptionEvaluation] = {}
        self.last_predictions: dict[str, list[str]] = {}

    def __call__(self, predictions: dict[str, np.ndarray], split: str) -> dict[str, float]:
        if split not in self.references:
            raise KeyError(f"no references for split {split!r} (have {sorted(self.references)})")
        refs_all = self.references[split]
        tokens = predictions[self.tokens_key]
        index = np.asarray(predictions["index"]) if "index" in predictions else np.arange(len(tokens))
        if len(index) != len(refs_all) or len(set(index.tolist())) != len(refs_all):
            raise ValueError(f"split {split!r}: predictions cover {len(set(index.tolist()))} of "
                             f"{len(refs_all)} items")
        texts = self.decode(tokens)
        refs = [list(refs_all[int(i)]) for i in index]
        result = evaluate(texts, refs, metrics=self.metrics, tokenization=self.tokenization, config=self.config,
                          per_item=True)
        self.last[split], self.last_predictions[split] = result, texts
        self.info[f"caption_metrics/{split}"] = {
            "tokenization": result.tokenization, "unavailable": result.unavailable, "models": result.models,
            "notes": result.notes}
        return {k: v / 100.0 for k, v in result.scores.items()}

    def rows(self, predictions: dict[str, np.ndarray], split: str) -> list[dict]:
        """The last evaluation of `split` (these predictions) per example, in the split's order: "index",
        "prediction" (the caption), "references" and "scores" (each metric's per-item score, x100)."""
        result, texts = self.last[split], self.last_predictions[split]
        index = np.asarray(predictions["index"]) if "index" in predictions else np.arange(len(texts))
        per = result.per_item or {}
        out = [{"index": int(i), "prediction": texts[k], "references": list(self.references[split][int(i)]),
                "scores": {m: round(float(v[k]), 4) for m, v in per.items()}} for k, i in enumerate(index)]
        return sorted(out, key=lambda r: r["index"])
