"""Sentence-BERT similarity, FENSE and the fluency error rate (x100), on kdjax's JAX BERT."""

from kdjax.metrics.hf_evaluate import base


class CaptionFense(base.CaptionMetric):
    METRICS = ("sbert", "fense", "fer")
    DESCRIPTION = __doc__
