"""The shared body of kdjax's `evaluate` modules (the per-family scripts only name their metrics)."""

from __future__ import annotations

import dataclasses

import datasets
import evaluate

from kdjax.metrics import captioning

_CITATION = "See kdjax.metrics.captioning: each metric module names its paper and equation."


class CaptionMetric(evaluate.Metric):
    METRICS: tuple[str, ...] = ()
    DESCRIPTION = ""

    def _info(self):
        return evaluate.MetricInfo(
            description=self.DESCRIPTION, citation=_CITATION,
            inputs_description="predictions: list of str; references: list of lists of str",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Sequence(datasets.Value("string"))}))

    def _compute(self, predictions, references, tokenization: str = "ptb", **settings):
        fields = {f.name for f in dataclasses.fields(captioning.MetricConfig)}
        unknown = set(settings) - fields
        if unknown:
            raise TypeError(f"unknown arguments {sorted(unknown)}; known: tokenization, {sorted(fields)}")
        result = captioning.evaluate(list(predictions), [list(r) for r in references], metrics=self.METRICS,
                                     tokenization=tokenization, config=captioning.MetricConfig(**settings))
        return {**result.scores, "unavailable": result.unavailable, "tokenization": result.tokenization}
