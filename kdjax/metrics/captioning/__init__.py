"""Captioning metrics: `evaluate(predictions, references, metrics=..., tokenization="ptb"|"loae")`.

See suite.py for the suite and one module per metric for its definition and reference equations.
"""

from kdjax.metrics.captioning.suite import (COLUMNS, METRICS, CaptionEvaluation, MetricConfig, evaluate,
                                            write_json)
from kdjax.metrics.captioning.task_eval import CaptionTaskEvaluator

__all__ = ["CaptionTaskEvaluator", "COLUMNS", "METRICS", "CaptionEvaluation", "MetricConfig", "evaluate", "write_json"]
