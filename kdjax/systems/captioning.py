"""What the captioning systems (Multi2Cap, EffAAC) share: the checks of their evaluation settings, the caption
fields of their batches, the evaluator and fixed-length evaluation examples (captioning files with a trained
model: kdjax.systems.inference).
"""

from __future__ import annotations

from typing import Any, Callable

import ml_collections
import numpy as np

from kdjax.systems.checks import Checks
from kdjax.train.batch import Field

UNAVAILABLE_POLICIES = ("error", "drop")


def clip_samples(d: ml_collections.ConfigDict) -> int:
    return int(round(d.clip_seconds * d.sample_rate))


def caption_fields(cfg: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Field]:
    """A training clip and one of its reference captions: the crop the model hears, its validity mask, and
    the caption's token ids (EOS-terminated, padded) with their mask."""
    n, t = clip_samples(cfg.data), int(cfg.data.max_caption_tokens)
    return {prefix + "wave": Field((n,), np.float32), prefix + "mask": Field((n,), np.bool_),
            prefix + "caption_ids": Field((t,), np.int32), prefix + "caption_mask": Field((t,), np.int32)}


def fixed_example(length: int) -> Callable[[dict], dict]:
    """Evaluation: the clip's start, zero-padded to `length`, with its mask and position in the split."""
    from kdjax.audio.io import crop_or_pad

    def fixed(ex: dict) -> dict:
        wave, mask = crop_or_pad(ex["wave"], length)
        return {"wave": wave, "mask": mask, "index": ex["index"]}

    return fixed


def generation(node: Any, tok) -> Any:
    """The decoding settings of a config's `generate` node for this tokenizer."""
    from kdjax.models.generate import config_from

    return config_from({"eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id, **dict(node)})


def evaluator(cfg: ml_collections.ConfigDict, items: dict[str, list[dict]], tok, info: dict):
    """The Task's `evaluate` and `prediction_rows`: captions decoded with `tok` and scored by the suite against
    the references of the dev (validation) and test splits; `items` per split, {"id", "input", "captions"} in the
    split's order (kdjax.data.captions.sources)."""
    from kdjax.data import tokenizers
    from kdjax.metrics.captioning import CaptionTaskEvaluator, MetricConfig

    mcfg = MetricConfig.from_config(cfg.eval.metric_config) if cfg.eval.get("metric_config") else None
    by_split = {"dev": items["validation"], "test": items["test"]}
    ev = CaptionTaskEvaluator({s: [r["captions"] for r in v] for s, v in by_split.items()},
                              tokenizers.text_decoder(tok), metrics=tuple(cfg.eval.metrics),
                              tokenization=cfg.eval.tokenization, config=mcfg, info=info)

    def rows(predictions: dict[str, np.ndarray], split: str) -> list[dict]:
        return [{"id": by_split[split][r["index"]]["id"], "input": by_split[split][r["index"]]["input"], **r}
                for r in ev.rows(predictions, split)]

    return ev, rows


# ----------------------------------------------------------------------------------------------- checks
def validate_data(c: Checks) -> None:
    """data.*: the source and its paths, clip length, caption length."""
    from kdjax.data.captions import SOURCES

    source = c.one_of("data.source", SOURCES)
    if source == "manifest":
        c.path("data.manifest_file", "file", required=True, why="data.source='manifest'")
    elif source == "tfds":
        c.path("data.tfds_dir", "dir", required=True, why="data.source='tfds'", contains=("dataset_info.json",))
    elif source == "synthetic":
        from kdjax.data.captions import SYNTHETIC_SPLITS

        for key in SYNTHETIC_SPLITS.values():
            c.number(f"data.synthetic.{key}", integer=True, gt=0)
        c.number("data.synthetic.seed", integer=True, ge=0)
    c.number("data.sample_rate", integer=True, gt=0)
    c.number("data.clip_seconds", gt=0)
    c.number("data.max_caption_tokens", integer=True, gt=1)
    c.one_of("data.on_bad_input", ("error", "skip"))


def validate_eval(c: Checks) -> None:
    """eval.metrics, eval.tokenization, eval.metric_config and the early-stopping metric, against what this
    install can compute. With eval.unavailable_metrics='drop' the metrics that cannot be computed are left out
    and checkpoint selection falls back to train.early_stopping.fallback (both recorded as adjustments)."""
    from kdjax.metrics.captioning import METRICS, MetricConfig, availability
    from kdjax.metrics.captioning.tokenize import MODES

    c.number("eval.generate.num_beams", integer=True, gt=0)
    c.number("eval.generate.max_new_tokens", integer=True, gt=0)
    metrics = c.subset_of("eval.metrics", METRICS)
    tokenization = c.one_of("eval.tokenization", MODES)
    policy = c.one_of("eval.unavailable_metrics", UNAVAILABLE_POLICIES)
    es = c.get("train.early_stopping.metric", "") or ""
    if es and es not in metrics:
        c.problem("train.early_stopping.metric", f"{es!r} is not among eval.metrics {list(metrics)}")
    try:
        mcfg = MetricConfig.from_config(c.get("eval.metric_config", {}) or {})
    except (KeyError, TypeError) as e:
        c.problem("eval.metric_config", str(e).strip("\"'"))
        return
    if not c.paths:  # an abstract compile evaluates nothing
        return
    why = availability.tokenization_unavailable(tokenization, mcfg) if tokenization in MODES else None
    if why:
        c.problem("eval.tokenization", f"'ptb' cannot run on this install: {why} (or set "
                                       "--config.eval.tokenization=loae)")
    missing = availability.unavailable([m for m in metrics if m in METRICS], mcfg)
    if not missing:
        return
    if policy != "drop":
        by_reason: dict[str, list[str]] = {}
        for m, reason in missing.items():
            by_reason.setdefault(reason, []).append(m)
        for reason, ms in by_reason.items():
            c.problem("eval.metrics", f"{', '.join(map(repr, ms))} cannot be computed on this install: {reason} "
                                      "(or leave them out, or set --config.eval.unavailable_metrics=drop)")
        if es in missing:
            c.problem("train.early_stopping.metric", f"{es!r} cannot be computed on this install (see eval.metrics)")
        return
    keep = tuple(m for m in metrics if m not in missing)
    c.adjust("eval.metrics", keep, f"eval.metrics: dropped {sorted(missing)} (cannot be computed on this install; "
                                   f"eval.unavailable_metrics='drop'); computing {list(keep)}")
    if es in missing:
        fallback = c.get("train.early_stopping.fallback", "") or ""
        if not fallback:
            c.problem("train.early_stopping.fallback",
                      f"the early-stopping metric {es!r} is dropped: name a computable metric to select checkpoints "
                      f"by, one of {list(keep)}")
        elif fallback not in keep:
            c.problem("train.early_stopping.fallback", f"{fallback!r} is not among the computable eval.metrics "
                                                       f"{list(keep)}")
        else:
            c.adjust("train.early_stopping.metric", fallback,
                     f"train.early_stopping.metric: {es!r} cannot be computed; checkpoints are selected by "
                     f"train.early_stopping.fallback={fallback!r}")
