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

    CAPTION        predictor(cfg, workdir) -> inference.Predictor: captions       --mode=caption
    PREDICT        predictor(cfg, workdir) -> inference.Predictor: labels         --mode=predict
    TEACHER_CACHE  make_teacher_cache(cfg, workdir) -> cache directory         --mode=teacher_cache
    COST           cost_model(cfg) -> (captioner, tokenizer), as deployed          --mode=cost
    EXPORT         export(workdir, out[, merge_lora]) -> [written paths]: the trained model    --mode=export
                   for PyTorch (merge_lora: a system with a LoRA-adapted decoder writes it merged too)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

CAPTION = "caption"
PREDICT = "predict"
TEACHER_CACHE = "teacher_cache"
COST = "cost"
EXPORT = "export"
CAPABILITIES = (CAPTION, PREDICT, TEACHER_CACHE, COST, EXPORT)
INFERENCE = (CAPTION, PREDICT)  # batch inference from a trained workdir (kdjax.systems.inference)

# the function each capability promises (caption and predict: the same one)
_METHODS = {CAPTION: "predictor", PREDICT: "predictor", TEACHER_CACHE: "make_teacher_cache", COST: "cost_model",
            EXPORT: "export"}


@dataclasses.dataclass(frozen=True)
class System:
    """A system: its name, the four functions of the contract, and the capabilities it declares with their
    functions. A system module defines `SYSTEM = System(...)` from its own functions."""

    name: str
    validate: Callable[[Any, Any], None]
    """(cfg, kdjax.systems.checks.Checks): record every problem of the config (the shared checks have run)."""
    batch_spec: Callable[..., Any]
    """(cfg, **dims) -> BatchSpec: the training batch's fields; `dims` are sizes that only the built models or
    data know (a teacher's width), which abstract_task takes from the architectures."""
    build: Callable[[Any, str], Any]
    """(cfg, workdir) -> Task (kdjax.train.task.Task) with real weights and data."""
    abstract_task: Callable[[Any], tuple[Any, dict]]
    """cfg -> (Task with abstract modules, abstract global batch): nothing read or allocated."""
    capabilities: frozenset[str] = frozenset()
    inputs: str = "audio"
    """What --mode=caption/predict reads: "audio" files or "text" notes (kdjax.systems.inference.list_inputs)."""
    predictor: Callable[[Any, str], Any] | None = None
    """(the workdir's config, workdir) -> kdjax.systems.inference.Predictor of its trained model; reads the workdir,
    writes nothing."""
    make_teacher_cache: Callable[[Any, str], str] | None = None
    cost_model: Callable[[Any], tuple[Any, Any]] | None = None
    """cfg -> (the inference captioner the config builds, its tokenizer): what kdjax.metrics.cost measures."""
    export: Callable[[str, str], list[str]] | None = None
    """(workdir, out directory) -> the paths written: the workdir's trained model in the form PyTorch users load
    (transformers / PEFT directories, state dicts), from the workdir's own config.json, on one host."""

    def __post_init__(self):
        object.__setattr__(self, "capabilities", frozenset(self.capabilities))
        if self.inputs not in ("audio", "text"):
            raise TypeError(f"system {self.name!r}: inputs must be 'audio' or 'text', got {self.inputs!r}")
        unknown = set(self.capabilities) - set(CAPABILITIES)
        if unknown:
            raise TypeError(f"system {self.name!r}: unknown capabilities {sorted(unknown)} (known: {CAPABILITIES})")
        for cap, method in _METHODS.items():
            given = getattr(self, method) is not None
            if cap in self.capabilities and not given:
                raise TypeError(f"system {self.name!r} declares {cap!r} but has no {method}()")
            serves = [c for c, m in _METHODS.items() if m == method]
            if given and not set(serves) & self.capabilities:
                raise TypeError(f"system {self.name!r} has {method}() but does not declare {' or '.join(serves)!r}")

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities
