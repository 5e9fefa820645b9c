"""Config checks that run before any device work: each problem names its config key, and all of them are
reported together (one message, not one TPU hour per typo).

`Checks` collects problems while a system's `validate` walks its config; `ConfigError` carries them to the
entry point. Nothing here imports JAX or touches a device, a checkpoint or a dataset beyond asking whether a
path exists.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable, Sequence

from kdjax.errors import InputError

_MISSING = object()  # get(): a key that must exist
_ABSENT = object()  # number(): a key that may be left out


class ConfigError(InputError):
    """A config that cannot run; `problems` lists one line per config key."""

    def __init__(self, problems: Sequence[str], source: str = "the config"):
        self.problems = list(problems)
        n = len(self.problems)
        super().__init__(f"{source} has {n} problem{'s' if n != 1 else ''}:\n  " + "\n  ".join(self.problems))


class Checks:
    """Problems found in `cfg`, each 'key: what is wrong (what to do)'. `paths=False` skips the checks that
    paths exist (an abstract compile reads no file)."""

    def __init__(self, cfg: Any, *, paths: bool = True):
        self.cfg, self.paths = cfg, paths
        self.problems: list[str] = []
        # values the config asked to be changed rather than refused (e.g. eval.unavailable_metrics='drop'),
        # each with a note that goes to the log and the report
        self.adjustments: dict[str, Any] = {}
        self.notes: list[str] = []

    # ------------------------------------------------------------------------------------------ access
    def get(self, key: str, default: Any = _MISSING) -> Any:
        """The value at dotted `key`; a missing key is a problem unless a default is given."""
        node = self.cfg
        for part in key.split("."):
            try:
                node = node[part]
            except (KeyError, TypeError, AttributeError):
                if default is _MISSING:
                    self.problem(key, "missing from the config")
                return default if default is not _MISSING else None
        return node

    def problem(self, key: str, message: str) -> None:
        line = f"{key}: {message}"
        if line not in self.problems:
            self.problems.append(line)

    def adjust(self, key: str, value: Any, note: str) -> None:
        self.adjustments[key] = value
        self.notes.append(note)

    def raise_if_any(self, source: str = "the config") -> None:
        if self.problems:
            raise ConfigError(self.problems, source)

    # ------------------------------------------------------------------------------------------ values
    def one_of(self, key: str, choices: Iterable[str]) -> Any:
        choices = tuple(choices)
        v = self.get(key)
        if v is not None and v not in choices:
            self.problem(key, f"{v!r} is not one of {', '.join(map(repr, choices))}")
        return v

    def subset_of(self, key: str, choices: Iterable[str]) -> tuple:
        choices = tuple(choices)
        v = self.get(key)
        values = tuple(v) if isinstance(v, (list, tuple)) else ()
        if v is not None and not isinstance(v, (list, tuple)):
            self.problem(key, f"must be a list, got {v!r}")
        unknown = [x for x in values if x not in choices]
        if unknown:
            self.problem(key, f"unknown {', '.join(map(repr, unknown))} (known: {', '.join(choices)})")
        return values

    def number(self, key: str, *, integer: bool = False, ge: float | None = None, gt: float | None = None,
               lt: float | None = None, le: float | None = None, default: Any = _MISSING) -> Any:
        v = self.get(key, _ABSENT if default is not _MISSING else _MISSING)
        if v is _ABSENT:
            return default
        if v is None:
            return v
        kind = "a whole number" if integer else "a number"
        ok_type = isinstance(v, int) if integer else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok_type or (isinstance(v, float) and not math.isfinite(v)):
            self.problem(key, f"must be {kind}, got {v!r}")
            return v
        bounds = []
        if ge is not None and not v >= ge:
            bounds.append(f">= {ge:g}")
        if gt is not None and not v > gt:
            bounds.append(f"> {gt:g}")
        if lt is not None and not v < lt:
            bounds.append(f"< {lt:g}")
        if le is not None and not v <= le:
            bounds.append(f"<= {le:g}")
        if bounds:
            self.problem(key, f"must be {' and '.join(bounds)}, got {v!r}")
        return v

    def regex(self, key: str, value: Any = _MISSING) -> None:
        """`key`'s value (or `value`, one item of a list at `key`) must be a regular expression."""
        v = self.get(key) if value is _MISSING else value
        try:
            re.compile(v)
        except (re.error, TypeError) as e:
            self.problem(key, f"not a regular expression: {v!r} ({e})")

    # ------------------------------------------------------------------------------------------- paths
    def required(self, key: str, why: str = "") -> bool:
        """A key that must be set (non-empty); False (and one problem per key) when it is not."""
        v = self.get(key)
        if not v:
            if not any(p.startswith(f"{key}: must be set") for p in self.problems):
                self.problem(key, "must be set" + (f" ({why})" if why else "") + f": --config.{key}=...")
            return False
        return True

    def path(self, key: str, kind: str = "any", *, required: bool = False, why: str = "",
             contains: Sequence[str] = ()) -> str | None:
        """A path-valued key: when set (or `required`), it must exist (`kind` 'file' or 'dir'), as a plain path
        or a `pkg:<package>/<path>` asset, and hold `contains` (names inside a directory). Returns the
        resolved path, or None."""
        v = self.get(key)
        if not self.paths:
            return None
        if required and not self.required(key, why):
            return None
        if not v:
            return None
        if not isinstance(v, str):
            self.problem(key, f"must be a path, got {v!r}")
            return None
        from kdjax import assets

        try:
            path = assets.resolve(v)
        except FileNotFoundError as e:
            self.problem(key, str(e))
            return None
        from kdjax import paths

        if kind == "file" and not paths.isfile(path):
            self.problem(key, f"{v} is not a file")
        elif kind == "dir" and not paths.isdir(path):
            self.problem(key, f"{v} is not a directory")
        else:
            for name in contains:
                if not paths.exists(paths.join(path, name)):
                    self.problem(key, f"{v} has no {name}" + (f" ({why})" if why else ""))
                    break
            else:
                return path
        return None


def common(c: Checks) -> None:
    """What every system's config shares: seed, mesh, the training loop, the optimiser, evaluation and the
    paths listed in `require`."""
    c.number("seed", integer=True)
    mesh = c.get("mesh")
    if mesh is not None:
        sizes = dict(mesh)
        for axis in ("data", "fsdp", "tensor"):
            if axis not in sizes:
                c.problem(f"mesh.{axis}", "missing from the config")
        for axis, v in sizes.items():
            if isinstance(v, bool) or not isinstance(v, int) or (v < 1 and v != -1):
                c.problem(f"mesh.{axis}", f"must be a positive whole number or -1 (the remaining devices), got {v!r}")
        if sum(v == -1 for v in sizes.values()) > 1:
            c.problem("mesh", f"at most one axis may be -1, got {sizes}")
    c.number("train.batch_size", integer=True, gt=0)
    steps = c.number("train.steps", integer=True, ge=0, default=0)
    epochs = c.number("train.epochs", ge=0, default=0)
    if steps == 0 and epochs == 0 and isinstance(steps, int) and isinstance(epochs, (int, float)):
        c.problem("train.steps", "train.steps and train.epochs are both 0: nothing would be trained")
    c.number("train.log_every", integer=True, gt=0, default=50)
    c.number("train.checkpoint_every", integer=True, ge=0, default=0)
    c.number("train.keep_checkpoints", integer=True, gt=0, default=2)
    c.number("train.stop_check_every", integer=True, gt=0, default=10)
    c.number("train.max_bad_steps", integer=True, gt=0, default=5)
    if c.get("train.early_stopping", None) is not None:
        c.one_of("train.early_stopping.mode", ("max", "min"))
        c.number("train.early_stopping.patience", integer=True, ge=0, default=0)
    c.number("optim.lr", ge=0)  # 0 is allowed: a run that only evaluates, or checks its bookkeeping
    c.number("optim.warmup_ratio", ge=0, lt=1, default=0.0)
    c.number("optim.warmup_steps", integer=True, ge=0, default=0)
    c.number("optim.weight_decay", ge=0, default=0.0)
    c.number("optim.clip_norm", ge=0, default=0.0)
    c.number("optim.end_lr", ge=0, default=0.0)
    c.number("optim.b1", ge=0, lt=1, default=0.9)
    c.number("optim.b2", ge=0, lt=1, default=0.999)
    c.one_of("optim.decay", ("constant", "linear", "cosine", "exponential"))
    for name, group in dict(c.get("optim.groups", {}) or {}).items():
        key = f"optim.groups.{name}"
        if "pattern" not in group or "lr" not in group:
            c.problem(key, "needs 'pattern' (a regex over parameter paths) and 'lr'")
            continue
        c.regex(f"{key}.pattern")
        c.number(f"{key}.lr", ge=0)
    c.number("eval.batch_size", integer=True, ge=0, default=0)
    c.number("eval.every", integer=True, ge=0, default=0)
    c.number("eval.every_epochs", integer=True, ge=0, default=0)
    if c.paths:  # `require` lists checkpoint and data paths, which an abstract compile does not read
        for key in c.get("require", ()) or ():
            c.required(key)


def augment(c: Checks) -> None:
    """augment.ops, when augment.enabled: fields of kdjax.audio.augment.AugmentConfig."""
    if not c.get("augment.enabled", False):
        return
    from kdjax.audio.augment import AugmentConfig

    try:
        AugmentConfig.from_config(c.get("augment.ops"))
    except (TypeError, ValueError, KeyError) as e:
        c.problem("augment.ops", str(e))
