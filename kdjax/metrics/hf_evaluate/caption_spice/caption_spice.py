"""SPICE, SPIDEr and SPIDEr-FL (x100); needs the SPICE jar with Stanford CoreNLP 3.6.0 (and FENSE's
error detector for SPIDEr-FL), otherwise they are returned under "unavailable" with the files needed."""

from kdjax.metrics.hf_evaluate import base


class CaptionSpice(base.CaptionMetric):
    METRICS = ("spice", "spider", "spider_fl")
    DESCRIPTION = __doc__
