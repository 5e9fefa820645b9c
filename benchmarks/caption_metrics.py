"""Captioning metric suite: kdjax against pycocoevalcap 1.2 on the same corpus, in the same run.

Corpus: 1,000 items x 5 references built from real caption text (kdjax.data.caption_corpus). Times:
- suite = PTB tokenisation + BLEU-1..4 + METEOR + ROUGE-L + CIDEr-D (what pycocoevalcap computes; no
  SPICE). "cold" starts every Java program afresh, as a one-shot evaluation does (pycocoevalcap's
  COCOEvalCap starts a new METEOR JVM per call); "warm" is a repeated evaluation in one process of new
  predictions against the same references, as during training (kdjax keeps its METEOR JVM;
  pycocoevalcap's Meteor object is reused too, which its COCOEvalCap API does not do).
- CIDEr-D alone, on the same PTB-tokenised text.
- Sentence-BERT (all-MiniLM-L6-v2) on the 6,000 sentences: kdjax's JAX BERT vs sentence-transformers.
Also checks that the scores are identical. Prints one JSON line.

    python benchmarks/caption_metrics.py [--items 1000] [--no-sbert]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


from benchmarks.common import timed  # noqa: E402
from kdjax.data import caption_corpus  # noqa: E402
from kdjax.metrics import captioning  # noqa: E402
from kdjax.metrics.captioning import bleu, cider, meteor, rouge  # noqa: E402

COCO = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "meteor", "cider_d")


def pycoco_suite(preds, refs, met=None):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": r} for r in rs] for i, rs in enumerate(refs)})
    res = tok.tokenize({i: [{"caption": p}] for i, p in enumerate(preds)})
    out = {}
    b, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out.update({f"bleu_{n + 1}": b[n] for n in range(4)})
    out["meteor"], _ = (met or Meteor()).compute_score(gts, res)
    out["rouge_l"], _ = Rouge().compute_score(gts, res)
    out["cider_d"], _ = Cider().compute_score(gts, res)
    return out, gts, res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--no-sbert", action="store_true")
    args = ap.parse_args()
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge

    preds, refs = caption_corpus.build(args.items, 5, seed=0)
    row: dict = {"benchmark": "caption_metrics", "items": args.items, "refs_per_item": 5}

    t = time.perf_counter()
    ours = captioning.evaluate(preds, refs, metrics=COCO, tokenization="ptb")
    row["kdjax_suite_s_cold"] = time.perf_counter() - t
    t = time.perf_counter()
    theirs, gts, res = pycoco_suite(preds, refs)
    row["pycocoevalcap_suite_s_cold"] = time.perf_counter() - t
    row["max_abs_diff_x1"] = max(abs(ours.scores[k] / 100 - theirs[k]) for k in COCO)

    # repeated evaluations, each of new predictions against the same references (as during training)
    others = iter([caption_corpus.build(args.items, 5, seed=s)[0] for s in range(1, 7)])
    met = Meteor()
    pycoco_suite(preds[:10], refs[:10], met)  # JVM loaded
    row["kdjax_suite_s_warm"] = timed(lambda: captioning.evaluate(next(others), refs, metrics=COCO), reps=3,
                                      warmup=0)
    row["pycocoevalcap_suite_s_warm"] = timed(lambda: pycoco_suite(next(others), refs, met), reps=3, warmup=0)

    c_tok = [res[i][0].split() for i in range(len(preds))]
    r_tok = [[s.split() for s in gts[i]] for i in range(len(preds))]
    row["kdjax_cider_s"] = timed(lambda: cider.score(c_tok, r_tok), reps=5)
    row["pycocoevalcap_cider_s"] = timed(lambda: Cider().compute_score(gts, res), reps=3)
    # what kdjax computes itself (BLEU-1..4, ROUGE-L, CIDEr-D) vs the same in pycocoevalcap
    c_str, r_str = [res[i][0] for i in range(len(preds))], [gts[i] for i in range(len(preds))]
    row["kdjax_ngram_metrics_s"] = timed(lambda: (bleu.score(c_tok, r_tok), rouge.score(c_str, r_str),
                                                  cider.score(c_tok, r_tok)), reps=5)
    row["pycocoevalcap_ngram_metrics_s"] = timed(lambda: (Bleu(4).compute_score(gts, res, verbose=0),
                                                          Rouge().compute_score(gts, res),
                                                          Cider().compute_score(gts, res)), reps=3)
    # the METEOR jar alone (same Java code for both; kdjax pipelines the requests)
    m = meteor.shared()
    row["kdjax_meteor_jar_s"] = timed(lambda: m.score(c_str, r_str), reps=3)

    if not args.no_sbert:
        from sentence_transformers import SentenceTransformer

        from kdjax import assets
        from kdjax.metrics.captioning import fense

        path = assets.resolve(captioning.suite.DEFAULT_SBERT)
        texts = list(preds) + [r for rs in refs for r in rs]
        emb = fense.SentenceEmbedder(path)
        row["kdjax_sbert_s"] = timed(lambda: emb.encode(texts), reps=1, warmup=1)
        st = SentenceTransformer(path, device="cpu")
        row["sentence_transformers_sbert_s"] = timed(lambda: st.encode(texts, batch_size=64), reps=1, warmup=1)
        row["sbert_speedup"] = row["sentence_transformers_sbert_s"] / row["kdjax_sbert_s"]

    row["suite_speedup_cold"] = row["pycocoevalcap_suite_s_cold"] / row["kdjax_suite_s_cold"]
    row["suite_speedup_warm"] = row["pycocoevalcap_suite_s_warm"] / row["kdjax_suite_s_warm"]
    # pycocoevalcap's COCOEvalCap starts a new METEOR JVM in every evaluate(): repeated evaluations
    # through its API cost the cold time each, kdjax's the warm time
    row["repeated_eval_speedup_vs_cocoevalcap_api"] = row["pycocoevalcap_suite_s_cold"] / row["kdjax_suite_s_warm"]
    row["cider_speedup"] = row["pycocoevalcap_cider_s"] / row["kdjax_cider_s"]
    row["ngram_metrics_speedup"] = row["pycocoevalcap_ngram_metrics_s"] / row["kdjax_ngram_metrics_s"]
    meteor._close_all()
    print(json.dumps({k: round(v, 4) if isinstance(v, float) and k != "max_abs_diff_x1" else v
                      for k, v in row.items()}))


if __name__ == "__main__":
    main()
