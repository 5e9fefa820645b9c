"""BLEU-1..4, ROUGE-L, METEOR and CIDEr-D (x100), equal to pycocoevalcap 1.2's."""

from kdjax.metrics.hf_evaluate import base


class CaptionCoco(base.CaptionMetric):
    METRICS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "meteor", "cider_d")
    DESCRIPTION = __doc__
