"""A resumed run computes what its workdir started: a config that differs from the workdir's config.json is
refused, naming each differing key, unless the user says `--allow_config_change`.

The mesh is exempt: resuming a run on another topology (8 devices, then 16) reshards the same state and computes
the same steps, and is a supported way to resume.
"""

from __future__ import annotations

import json
from typing import Any

import ml_collections

from kdjax import paths
from kdjax.errors import InputError

EXEMPT = ("mesh",)  # top-level sections that say how, not what, a run computes
# Keys added after workdirs were written, with the value that computes what such a workdir computed: a stored config
# without the key reads as holding it (a run from before the key resumes; one that changes it is refused).
ADDED = {"audio.train_base": False, "kd.word.weight": 0.0, "kd.word.top_k": 32, "data.unlabelled.file": "",
         "data.unlabelled.num_synthetic": 0, "data.unlabelled.seed": 1000, "kd.sampled_head": 0,
         "kd.ce_weight": 1.0, "student.init_from": ""}


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def differences(stored: dict, current: dict) -> list[str]:
    """'key: old -> new' for each leaf that differs (a key only one side has counts), exempt sections left out."""
    a, b = _flat(stored), _flat(current)
    a.update({k: v for k, v in ADDED.items() if k not in a and k in b})
    out = []
    for key in sorted(set(a) | set(b)):
        if key.split(".")[0] in EXEMPT or a.get(key, "<absent>") == b.get(key, "<absent>"):
            continue
        out.append(f"{key}: {json.dumps(a.get(key, '<absent>'))} -> {json.dumps(b.get(key, '<absent>'))}")
    return out


def differences_in(stored: dict, cfg: ml_collections.ConfigDict, keys: list[str] | tuple[str, ...]) -> list[str]:
    """`differences` restricted to dotted `keys` (a section names every key under it): what a later stage must share
    with the workdir it starts from (`stored`, that workdir's config.json)."""

    def pick(d, key: str):
        for part in key.split("."):
            d = d.get(part, "<absent>") if isinstance(d, dict) else "<absent>"
        return ADDED.get(key, d) if d == "<absent>" else d

    ours = json.loads(cfg.to_json_best_effort())
    return differences({k: pick(stored, k) for k in keys}, {k: pick(ours, k) for k in keys})


def resuming(workdir: str) -> bool:
    ckpt = paths.join(workdir, "checkpoints")
    return paths.isdir(ckpt) and any(d.isdigit() for d in paths.listdir(ckpt))


def check(workdir: str, cfg: ml_collections.ConfigDict, allow: bool) -> list[str]:
    """The differences from the workdir's config when resuming (logged by the caller when allowed); InputError
    naming them when not allowed. Nothing to compare on a fresh workdir."""
    path = paths.join(workdir, "config.json")
    if not resuming(workdir) or not paths.isfile(path):
        return []
    try:
        with paths.open(path, encoding="utf-8") as f:
            stored = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: unreadable ({e}); it records the config this workdir's checkpoints were trained "
                         f"with") from None
    diff = differences(stored, json.loads(cfg.to_json_best_effort()))
    if diff and not allow:
        raise InputError(f"{workdir}: resuming with a config that differs from the one its checkpoints were "
                         f"trained with ({path}):\n  " + "\n  ".join(diff) + "\nRerun with the same config, use "
                         "another --workdir, or pass --allow_config_change to resume with the new values")
    return diff
