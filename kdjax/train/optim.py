"""AdamW with parameter groups, warmup schedules and gradient clipping.

Config (`config.optim`):
    lr, b1, b2, eps, weight_decay, clip_norm (0 = off)
    warmup_steps or warmup_ratio, decay ('constant' | 'linear' | 'cosine' | 'exponential'), end_lr
    groups: {name: {'pattern': regex over parameter paths, 'lr': float}}; first match wins, the rest
            use `lr`. E.g. DSG-KD: encoder 1e-5, classifier 1e-2.
Weight decay applies to matrices only (not biases and norm scales), as HF's Trainer does.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import ml_collections
import optax

from kdjax.models.state import map_with_path

DEFAULT_GROUP = "default"


def schedule(peak: float, total_steps: int, cfg: ml_collections.ConfigDict) -> optax.Schedule:
    warmup = int(cfg.get("warmup_steps", 0) or round(cfg.get("warmup_ratio", 0.0) * total_steps))
    warmup = min(warmup, max(total_steps - 1, 0))
    decay_steps = max(total_steps - warmup, 1)
    end = cfg.get("end_lr", 0.0)
    kind = cfg.get("decay", "constant")
    if kind == "constant":
        after = optax.constant_schedule(peak)
    elif kind == "linear":
        after = optax.linear_schedule(peak, end, decay_steps)
    elif kind == "cosine":
        after = optax.cosine_decay_schedule(peak, decay_steps, alpha=end / peak if peak else 0.0)
    elif kind == "exponential":
        # Reaches end_lr exactly at the last step (EffAAC decays 5e-4 -> 5e-7 this way).
        rate = (end / peak) if peak and end else 1e-3
        after = optax.exponential_decay(peak, decay_steps, rate)
    else:
        raise ValueError(f"optim.decay: unknown schedule {kind!r}")
    if warmup == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), after], [warmup])


def group_labels(params: Any, groups: dict[str, Any]) -> Any:
    compiled = [(name, re.compile(g["pattern"])) for name, g in groups.items()]

    def label(path: str, _):
        for name, pat in compiled:
            if pat.search(path):
                return name
        return DEFAULT_GROUP

    return map_with_path(label, params)


def build(cfg: ml_collections.ConfigDict, params: Any, total_steps: int
          ) -> tuple[optax.GradientTransformation, dict[str, optax.Schedule]]:
    """The optimiser and each group's schedule (for logging learning rates)."""
    groups = {k: dict(v) for k, v in (cfg.get("groups") or {}).items()}
    labels = group_labels(params, groups)
    used = set(jax.tree_util.tree_leaves(labels))
    lrs = {DEFAULT_GROUP: cfg.lr, **{k: v["lr"] for k, v in groups.items()}}
    unused = set(groups) - used
    if unused:
        raise ValueError(f"optim.groups {sorted(unused)} match no parameter; check their patterns")
    decay_mask = jax.tree.map(lambda p: p.ndim >= 2, params)
    schedules = {name: schedule(lrs[name], total_steps, cfg) for name in sorted(used)}
    transforms = {
        name: optax.adamw(schedules[name], b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999),
                          eps=cfg.get("eps", 1e-8), weight_decay=cfg.get("weight_decay", 0.0),
                          mask=decay_mask)
        for name in schedules
    }
    chain = []
    if cfg.get("clip_norm", 0.0):
        chain.append(optax.clip_by_global_norm(cfg.clip_norm))
    chain.append(optax.multi_transform(transforms, labels))
    return optax.chain(*chain), schedules
