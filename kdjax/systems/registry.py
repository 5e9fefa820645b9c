"""The systems kdjax knows, by the name a config gives in `system`, and the validation every entry point runs
before any device work.

Adding a system: a module in kdjax/systems/ that defines `SYSTEM = <a contract.System>`, and its name here.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import ml_collections

from kdjax.systems import checks as checks_lib
from kdjax.systems.contract import System

# name -> module; imported on first use, so `--help` and config errors do not wait for every model's imports
_MODULES = {
    "dsg_kd": "kdjax.systems.dsg_kd",
    "audio_tagging": "kdjax.systems.audio_tagging",
    "multi2cap": "kdjax.systems.multi2cap",
    "effaac": "kdjax.systems.effaac",
    "distill_lm": "kdjax.systems.distill_lm",
}


def names() -> tuple[str, ...]:
    return tuple(_MODULES)


def get(name: str) -> System:
    if name not in _MODULES:
        raise checks_lib.ConfigError([f"system: {name!r} is not one of {', '.join(_MODULES)}"])
    system = importlib.import_module(_MODULES[name]).SYSTEM
    assert system.name == name, (system.name, name)
    return system


def validate(cfg: ml_collections.ConfigDict, *, paths: bool = True) -> tuple[ml_collections.ConfigDict, list[str]]:
    """Check `cfg` for its system; raise ConfigError listing every problem. Returns the config to run (a copy
    where the config asked for adjustments, e.g. unavailable metrics dropped) and the notes saying what was
    adjusted (logged here; the trainer writes them into the report). `paths=False`: an abstract compile,
    which reads no file."""
    c = checks_lib.Checks(cfg, paths=paths)
    name = c.get("system")
    if name is None:
        c.raise_if_any()
    system = get(name)
    checks_lib.common(c)
    system.validate(cfg, c)
    c.raise_if_any()
    if not c.adjustments:
        return cfg, []
    out = ml_collections.ConfigDict(cfg.to_dict())
    for key, value in c.adjustments.items():
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node[p]
        node[leaf] = value
    for note in c.notes:
        logging.warning("config: %s", note)
    return out, list(c.notes)


def resolve(cfg: ml_collections.ConfigDict, **kw: Any) -> tuple[System, ml_collections.ConfigDict, list[str]]:
    """(system, validated config, adjustment notes)."""
    cfg, notes = validate(cfg, **kw)
    return get(cfg.system), cfg, notes
