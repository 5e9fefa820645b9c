"""Invariants a model config must hold before any model is built from it.

transformers refuses these configs when it builds the PyTorch model (e.g. "The hidden size (16) is not a multiple of
the number of attention heads (3)"); kdjax checks them in each config's `__post_init__`, so a bad config.json or
override is refused when it is read, naming the field, instead of failing at the first step with a reshape error.
"""

from __future__ import annotations

from kdjax.errors import InputError


class ConfigError(InputError):
    """A model config no model can be built from; `kdjax.convert.from_pretrained` prefixes the config.json."""


def _int(cfg, name: str, least: int) -> int:
    v = getattr(cfg, name)
    if isinstance(v, bool) or not isinstance(v, int) or v < least:
        kind = "a positive integer" if least == 1 else f"an integer >= {least}"
        raise ConfigError(f"{type(cfg).__name__}.{name} must be {kind}, got {v!r}")
    return v


def positive(cfg, *names: str) -> None:
    for name in names:
        _int(cfg, name, 1)


def non_negative(cfg, *names: str) -> None:
    for name in names:
        _int(cfg, name, 0)


def multiple(cfg, whole: str, part: str) -> None:
    """`whole` must split evenly into `part` pieces (e.g. hidden_size into num_attention_heads)."""
    a, b = _int(cfg, whole, 1), _int(cfg, part, 1)
    if a % b:
        raise ConfigError(f"{type(cfg).__name__}: {whole} ({a}) is not a multiple of {part} ({b})")


def fraction(cfg, *names: str) -> None:
    """Probabilities such as dropout rates: numbers in [0, 1)."""
    for name in names:
        v = getattr(cfg, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1):
            raise ConfigError(f"{type(cfg).__name__}.{name} must be a number in [0, 1), got {v!r}")
