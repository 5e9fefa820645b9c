"""Hugging Face `evaluate` modules for the captioning suite, one per metric family, loadable by path:

    import evaluate, kdjax.metrics.hf_evaluate as hfe
    coco = evaluate.load(hfe.path("caption_coco"))      # BLEU-1..4, ROUGE-L, METEOR, CIDEr-D
    coco.compute(predictions=["a dog barks"], references=[["a dog is barking", "dog barking"]])

"caption_spice" gives SPICE, SPIDEr, SPIDEr-FL; "caption_fense" gives Sentence-BERT, FENSE and the
fluency error rate. Each computes through `kdjax.metrics.captioning.evaluate`; keyword arguments of
`compute` are `tokenization` and the fields of `MetricConfig` (jar paths, models).
"""

import os

FAMILIES = ("caption_coco", "caption_spice", "caption_fense")


def path(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"unknown metric family {family!r}; known: {FAMILIES}")
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), family)
