"""The contract every system keeps, and the capabilities a system may declare.

A system composes shared models, losses, data and the trainer. `kdjax.main`, `kdjax.aot` and the
experiment runner see it only through this contract, and reach it through `kdjax.systems.registry`:

    validate(cfg, checks)      every problem of the config, each naming its key, before JAX touches a device,
                               a checkpoint or a dataset (`kdjax.systems.checks`)
    batch_spec(cfg, **dims)    the training batch, once: field names, per-example shapes and dtypes
    build(cfg, workdir)        the Task the trainer runs (real weights and data)
    abstract_task(cfg)         the same Task with abstract modules and the abstract global batch, for
                               ahead-of-time compiles (`kdjax.aot`): nothing read or allocated

and whatever of these it declares in `capabilities`:

    CAPTION        caption_files(cfg, workdir, files) -> [(file, caption)]     --mode=caption
    TEACHER_CACHE  make_teacher_cache(cfg, workdir) -> cache directory         --mode=teacher_cache
"""

from __future__ import annotations

from typing import Any, ClassVar

import ml_collections

from kdjax.systems.checks import Checks
from kdjax.train.batch import BatchSpec

CAPTION = "caption"
TEACHER_CACHE = "teacher_cache"
CAPABILITIES = (CAPTION, TEACHER_CACHE)

# the methods each capability promises
_METHODS = {CAPTION: "caption_files", TEACHER_CACHE: "make_teacher_cache"}


class System:
    """Base class of a system. Subclasses set `name` and `capabilities` and implement the four methods."""

    name: ClassVar[str] = ""
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        unknown = set(cls.capabilities) - set(CAPABILITIES)
        if unknown:
            raise TypeError(f"{cls.__name__}: unknown capabilities {sorted(unknown)} (known: {CAPABILITIES})")
        for cap in cls.capabilities:
            if not callable(getattr(cls, _METHODS[cap], None)):
                raise TypeError(f"{cls.__name__} declares {cap!r} but has no {_METHODS[cap]}()")

    def validate(self, cfg: ml_collections.ConfigDict, checks: Checks) -> None:
        """Record every problem of `cfg` in `checks` (the shared checks of `checks.common` have run)."""
        raise NotImplementedError

    def batch_spec(self, cfg: ml_collections.ConfigDict, **dims: Any) -> BatchSpec:
        """The training batch's fields. `dims` are sizes that only the built models or data know (a teacher's
        width); abstract_task passes the architectures' own."""
        raise NotImplementedError

    def build(self, cfg: ml_collections.ConfigDict, workdir: str):
        """The Task to train (kdjax.train.task.Task)."""
        raise NotImplementedError

    def abstract_task(self, cfg: ml_collections.ConfigDict):
        """(Task with abstract modules, abstract global batch)."""
        raise NotImplementedError

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities
