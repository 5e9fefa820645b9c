"""Config overrides by dotted key, as the command line's `--config.a.b=v` sets them, for tests that build configs in
process."""

from typing import Any

import ml_collections


def set_key(cfg: ml_collections.ConfigDict, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = cfg
    for part in parents:
        node = node[part]
    with cfg.unlocked():
        node[leaf] = value


def apply(cfg: ml_collections.ConfigDict, over: dict[str, Any]) -> ml_collections.ConfigDict:
    for key, value in over.items():
        set_key(cfg, key, value)
    return cfg
