"""Score caption files with the captioning suite and print the thesis's table columns.

    python -m kdjax.evaluate --predictions preds.jsonl --references refs.jsonl [--out scores.json]
        [--tokenization ptb|loae] [--metrics bleu_4,cider_d,...] [--per_item]
        [--sbert_model DIR] [--echecker CKPT --echecker_model_dir DIR] [--spice_jar JAR]
    python -m kdjax.evaluate --predictions WORKDIR/predictions/test.jsonl   # a kdjax run's own file

predictions.jsonl: one {"id": ..., "caption": "..."} per line ("prediction" or "text" also accepted).
references.jsonl: {"id": ..., "captions": ["...", ...]} per line ("references" also accepted), or one
{"id": ..., "caption": "..."} line per reference. Without --references, each prediction row's own
"references" are used (the rows kdjax's evaluations write). Items are joined on "id"; every prediction needs
references and every reference id a prediction. The JSON written holds the scores (x100), the
tokenisation, unavailable metrics with the files they need, and per-item scores with --per-item.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import OrderedDict

from kdjax import platforms

platforms.default_to_cpu_without_accelerators()  # before the metrics import jax

from kdjax.data import jsonl  # noqa: E402
from kdjax.metrics import captioning  # noqa: E402


def _text(path: str, n: int, row: dict, keys: tuple[str, ...]):
    for k in keys:
        if k in row:
            return row[k]
    raise ValueError(f"{path}:{n}: none of the keys {list(keys)} (id {row['id']!r})")


def read_items(pred_path: str, ref_path: str | None) -> tuple[list, list[str], list[list[str]]]:
    """(ids, predictions, references) joined on id, in the predictions file's order; references from the
    prediction rows themselves when `ref_path` is None."""
    preds: OrderedDict = OrderedDict()
    for n, row in jsonl.read_rows(pred_path, ("id",)):
        text = _text(pred_path, n, row, ("caption", "prediction", "text"))
        if not isinstance(text, str):
            raise ValueError(f"{pred_path}:{n}: the prediction must be a string, got {type(text).__name__}")
        key = json.dumps(row["id"])
        if key in preds:
            raise ValueError(f"{pred_path}:{n}: duplicate id {row['id']!r}")
        preds[key] = text
    refs: dict[str, list[str]] = {}
    if ref_path is None:
        ref_path = pred_path
        no_refs = [f"{pred_path}:{n}" for n, row in jsonl.read_rows(pred_path, ("id",)) if "references" not in row]
        if no_refs:
            raise ValueError(f"{no_refs[0]}: no \"references\" in the prediction row; give --references")
    for n, row in jsonl.read_rows(ref_path, ("id",)):
        text = _text(ref_path, n, row, ("captions", "references", "caption"))
        texts = [text] if isinstance(text, str) else text
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"{ref_path}:{n}: references must be a string or a non-empty list of strings")
        if not all(t.strip() for t in texts):  # an empty reference scores every prediction against nothing
            raise ValueError(f"{ref_path}:{n}: an empty reference caption (id {row['id']!r})")
        refs.setdefault(json.dumps(row["id"]), []).extend(texts)
    no_refs = [k for k in preds if k not in refs]
    no_pred = [k for k in refs if k not in preds]
    if no_refs:
        raise ValueError(f"{len(no_refs)} predictions have no references in {ref_path}: ids {', '.join(no_refs[:10])}")
    if no_pred:
        raise ValueError(f"{len(no_pred)} reference ids have no prediction in {pred_path}: ids {', '.join(no_pred[:10])}")
    return [json.loads(k) for k in preds], list(preds.values()), [refs[k] for k in preds]


def main(argv: list[str] | None = None) -> captioning.CaptionEvaluation:
    ap = argparse.ArgumentParser(prog="python -m kdjax.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--predictions", required=True, help="predicted captions (JSONL, one {\"id\", \"caption\"} per "
                    "line), e.g. a kdjax workdir's predictions/test.jsonl")
    ap.add_argument("--references", default=None,
                    help="reference captions (JSONL); default: the \"references\" of each prediction row")
    ap.add_argument("--out", default=None, help="JSON output (default: <predictions>.scores.json)")
    ap.add_argument("--tokenization", default="ptb", choices=("ptb", "loae"),
                    help="ptb: COCO's PTB tokenizer (Java; the papers' numbers); loae: lower-case, no punctuation "
                         "(no Java)")
    ap.add_argument("--metrics", default=",".join(captioning.METRICS),
                    help="comma-separated, of " + ", ".join(captioning.METRICS) + " (what cannot be computed here "
                         "is reported unavailable, with what it needs)")
    ap.add_argument("--per_item", "--per-item", action="store_true", help="also write each item's scores")
    helps = {"sbert_model": "Sentence-BERT directory for SB and FENSE (default: all-MiniLM-L6-v2 if present)",
             "echecker": "FENSE's error-detector checkpoint (echecker_clotho_audiocaps_base.ckpt)",
             "echecker_model_dir": "the Hugging Face directory of the error detector's model_type",
             "spice_jar": "spice-1.0.jar (its lib/ beside it)", "meteor_jar": "meteor-1.5.jar",
             "ptb_jar": "stanford-corenlp-3.4.1.jar (the PTB tokenizer)"}
    for field, text in helps.items():  # the dashed spellings of earlier releases are kept as aliases
        ap.add_argument("--" + field, "--" + field.replace("_", "-"), dest=field, default=None, help=text)
    args = ap.parse_args(argv)
    ids, preds, refs = read_items(args.predictions, args.references)
    cfg = captioning.MetricConfig(**{f: getattr(args, f) for f in ("sbert_model", "echecker", "echecker_model_dir",
                                                                   "spice_jar", "meteor_jar", "ptb_jar")})
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    result = captioning.evaluate(preds, refs, metrics=metrics, tokenization=args.tokenization,
                                 per_item=args.per_item, config=cfg)
    out = args.out or os.path.splitext(args.predictions)[0] + ".scores.json"
    captioning.write_json(result, out, **({"ids": ids} if args.per_item else {}))
    print(result.table())
    print(f"written: {out}")
    return result


def cli() -> None:
    """The `kdjax-evaluate` command: errors as one line, exit status 2."""
    from kdjax.metrics.captioning.java import ToolUnavailable

    try:
        main()
    except ToolUnavailable as e:
        sys.exit(f"kdjax.evaluate: {str(e).rstrip('.')}. Install the Java scorers with "
                 "`pip install 'kdjax[captioning]'` and a Java runtime, or use --tokenization=loae (and metrics other "
                 "than meteor and spice).")
    except (ValueError, FileNotFoundError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    cli()
