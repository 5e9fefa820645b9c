"""Which caption metrics this install can compute, asked before a run starts (no scorer is run).

The suite reports a metric it cannot compute as unavailable at evaluation time; a training run that keeps its
best checkpoint by that metric would only find out at the first dev evaluation, an epoch in. This module
answers the same question up front, from the same jar and model look-ups the scorers use.
"""

from __future__ import annotations

import os
from typing import Sequence

from kdjax.metrics.captioning import java
from kdjax.metrics.captioning.suite import DEFAULT_SBERT, METRICS, MetricConfig

_SPICE_BASED = ("spice", "spider", "spider_fl")
_ECHECKER_BASED = ("fer", "fense", "spider_fl")


def _tool(jar: java.Jar, explicit: str | None) -> str | None:
    """Why `jar` (and Java) cannot run, or None."""
    try:
        java.java_executable()
        java.locate(jar, explicit)
    except java.ToolUnavailable as e:
        return str(e)
    return None


def tokenization_unavailable(tokenization: str, config: MetricConfig | None = None) -> str | None:
    """Why `tokenization` cannot run here ('ptb' needs Java and CoreNLP's PTB tokenizer), or None."""
    if tokenization != "ptb":
        return None
    return _tool(java.CORENLP_PTB, (config or MetricConfig()).ptb_jar)


def unavailable(metrics: Sequence[str], config: MetricConfig | None = None) -> dict[str, str]:
    """metric -> why it cannot be computed on this install (what to install or set); computable metrics are
    absent. Unknown names raise ValueError."""
    cfg = config or MetricConfig()
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; known: {list(METRICS)}")
    out: dict[str, str] = {}
    want = set(metrics)
    if "meteor" in want:
        why = _tool(java.METEOR, cfg.meteor_jar)
        if why:
            out["meteor"] = why
    if want & set(_SPICE_BASED):
        why = _tool(java.SPICE, cfg.spice_jar)
        if why:
            for m in _SPICE_BASED:
                if m in want:
                    out[m] = why
    if want & set(_ECHECKER_BASED):
        why = None
        if not (cfg.echecker and cfg.echecker_model_dir):
            why = ("FENSE's error detector is not given: set eval.metric_config.echecker (the released "
                   "echecker_clotho_audiocaps_base.ckpt; $KDJAX_ECHECKER) and echecker_model_dir (a Hugging Face "
                   "directory of its model_type; $KDJAX_ECHECKER_MODEL_DIR)")
        else:
            for path in (cfg.echecker, cfg.echecker_model_dir):
                if not os.path.exists(os.path.expanduser(path)):
                    why = f"FENSE's error detector: {path} does not exist"
        if why:
            for m in _ECHECKER_BASED:
                if m in want:
                    out.setdefault(m, why)
    if want & {"sbert", "fense"}:
        from kdjax import assets

        spec = cfg.sbert_model or DEFAULT_SBERT
        if not assets.available(spec):
            try:
                assets.resolve(spec)
            except FileNotFoundError as e:
                why = f"no Sentence-BERT model: {e}"
            for m in ("sbert", "fense"):
                if m in want:
                    out.setdefault(m, why)
    return {m: out[m] for m in METRICS if m in out}
