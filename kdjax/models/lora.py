"""LoRA (Hu et al. 2021, eq. 3: h = W0 x + (alpha / r) B A x) on any linear layer chosen by path pattern.

`apply(model, LoraConfig(...), rngs)` swaps each matching `nnx.Linear` for a `LoRALinear` that keeps the
base layer's kernel and bias Variables at the same paths (so parameter maps and checkpoints of the base
model still apply) and adds `lora_a` (in, r) and `lora_b` (r, out); inside a scanned stack
(kdjax.models.stack) the kernel is (L, in, out) and each layer gets its own factors, (L, in, r) and (L, r, out). A is drawn as PEFT does (Kaiming
uniform, a = sqrt(5)) and B starts at zero, so the wrapped model starts equal to the base.

Freezing is a split, not a new variable type: `frozen_filter(...)` selects the base parameters, which the
trainer keeps out of the optimiser and the checkpoint (kdjax.train.Task.frozen).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Iterable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from kdjax.models import stack
from kdjax.models.state import path_str

LORA_PARAMS = ("lora_a", "lora_b")


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    targets: tuple[str, ...] = (r"(^|\.)q_proj$", r"(^|\.)v_proj$")  # regexes on module paths
    rank: int = 8
    alpha: float = 32.0
    dropout: float = 0.1

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


class LoRALinear(nnx.Module):
    """A linear layer plus a low-rank update. Call with the dropout controls (see layers.linear)."""

    takes_dropout = True

    def __init__(self, base: nnx.Linear, cfg: LoraConfig, rngs: nnx.Rngs, keys: Sequence[jax.Array] | None = None):
        self.kernel = base.kernel
        self.bias = base.bias
        self.in_features, self.out_features = base.in_features, base.out_features
        self.dtype = base.dtype
        self.rank, self.scale, self.rate = cfg.rank, cfg.scale, cfg.dropout
        lead = tuple(base.kernel[...].shape[:-2])  # the layer axis of a scanned stack
        bound = 1.0 / math.sqrt(base.in_features)  # kaiming_uniform(a=sqrt(5)) on a (r, in) weight
        # one key per layer (`apply` hands a stack's layers the keys an unrolled model would draw)
        keys = list(keys) if keys is not None else [rngs.params() for _ in range(math.prod(lead))]
        self.lora_a = nnx.Param(jnp.stack([jax.random.uniform(k, (base.in_features, cfg.rank), jnp.float32,
                                                              -bound, bound) for k in keys]).reshape(
            *lead, base.in_features, cfg.rank))
        self.lora_b = nnx.Param(jnp.zeros((*lead, cfg.rank, base.out_features), jnp.float32))
        self.dropout = nnx.Dropout(cfg.dropout)
        self.merged = False

    def delta(self) -> jax.Array:
        """The low-rank update of the kernel, (in, out) (per layer in a stack)."""
        return jnp.matmul(self.lora_a[...], self.lora_b[...]) * self.scale

    def __call__(self, x: jax.Array, *, deterministic: bool | None = None, rngs: nnx.Rngs | None = None
                 ) -> jax.Array:
        dtype = self.dtype or x.dtype
        y = jnp.dot(x.astype(dtype), self.kernel[...].astype(dtype))
        if self.bias is not None:
            y = y + self.bias[...].astype(dtype)
        if self.merged:
            return y
        if self.rate and deterministic is None:
            raise ValueError("LoRA dropout needs `deterministic` (and rngs when training); this layer's caller "
                             "does not pass them (use kdjax.models.layers.linear), or set lora dropout to 0")
        h = self.dropout(x, deterministic=bool(deterministic) or not self.rate, rngs=rngs)
        low = jnp.dot(jnp.dot(h.astype(dtype), self.lora_a[...].astype(dtype)), self.lora_b[...].astype(dtype))
        return y + low * jnp.asarray(self.scale, dtype)


def _set_child(model: nnx.Module, path: tuple, value: Any) -> None:
    parent = model
    for p in path[:-1]:
        parent = parent[p] if isinstance(p, int) else getattr(parent, p)
    if isinstance(path[-1], int):
        parent[path[-1]] = value
    else:
        setattr(parent, path[-1], value)


def apply(model: nnx.Module, cfg: LoraConfig, rngs: nnx.Rngs) -> list[str]:
    """Wrap every nnx.Linear whose dotted path matches one of cfg.targets, in place; returns the paths.
    Raises if nothing matches (a typo in a pattern must not silently train nothing)."""
    pats = [re.compile(t) for t in cfg.targets]
    found = [(path, m) for path, m in nnx.iter_modules(model)
             if isinstance(m, nnx.Linear) and any(p.search(path_str(path)) for p in pats)]
    if not found:
        raise ValueError(f"LoRA targets {cfg.targets} match no linear layer of {type(model).__name__}")
    # Keys are drawn in the order of the unrolled model (layer 0's targets, then layer 1's, ...), also inside a
    # scanned stack, whose targets are one module per projection: both layouts get the same adapters.
    depths = stack.stacks(model)
    keys: dict[tuple, list] = {}
    for path, m in found:
        if path in keys:
            continue
        where = path_str(path)
        root = next((s for s in depths if where.startswith(s + ".")), None)
        if root is None:
            keys[path] = [rngs.params() for _ in range(math.prod(m.kernel[...].shape[:-2]))]
            continue
        members = [p for p, _ in found if path_str(p).startswith(root + ".")]
        drawn = [[rngs.params() for _ in members] for _ in range(depths[root])]
        for j, p in enumerate(members):
            keys[p] = [layer[j] for layer in drawn]
    for path, m in found:
        _set_child(model, path, LoRALinear(m, cfg, rngs, keys[path]))
    return [path_str(p) for p, _ in found]


def layers(model: nnx.Module) -> list[tuple[str, LoRALinear]]:
    return [(path_str(p), m) for p, m in nnx.iter_modules(model) if isinstance(m, LoRALinear)]


def merge(model: nnx.Module) -> None:
    """Fold every adapter into its kernel in place (inference without the extra matmuls)."""
    for _, m in layers(model):
        if not m.merged:
            m.kernel[...] = (m.kernel[...].astype(jnp.float32) + m.delta()).astype(m.kernel[...].dtype)
            m.merged = True


def unmerge(model: nnx.Module) -> None:
    """Undo `merge` (to keep training the adapters)."""
    for _, m in layers(model):
        if m.merged:
            m.kernel[...] = (m.kernel[...].astype(jnp.float32) - m.delta()).astype(m.kernel[...].dtype)
            m.merged = False


def merged_copy(model: nnx.Module, merge: bool = True) -> nnx.Module:
    """A copy with each LoRALinear replaced by a plain nnx.Linear holding W0 + (alpha/r) B A (`merge=False`: W0,
    the frozen base alone): the model as a base-architecture checkpoint (e.g. for kdjax.convert.save_pretrained)."""
    out = nnx.clone(model)
    for path, m in nnx.iter_modules(out):
        if isinstance(m, LoRALinear):
            kernel = m.kernel[...]
            if merge:
                merged = kernel if m.merged else (kernel.astype(jnp.float32) + m.delta()).astype(kernel.dtype)
            else:
                merged = (kernel.astype(jnp.float32) - m.delta()).astype(kernel.dtype) if m.merged else kernel
            plain = nnx.eval_shape(lambda: nnx.Linear(m.in_features, m.out_features, use_bias=m.bias is not None,
                                                      dtype=m.dtype, param_dtype=kernel.dtype, rngs=nnx.Rngs(0)))
            plain.kernel = nnx.Param(merged)
            if m.bias is not None:
                plain.bias = nnx.Param(m.bias[...])
            _set_child(out, path, plain)
    return out


def frozen_filter(prefixes: Sequence[str] | None = None):
    """nnx filter: parameters that are not LoRA factors, under any of `prefixes` (dotted paths; None =
    the whole model). The trainer keeps these fixed, outside the optimiser and the checkpoint."""

    def pred(path: tuple, value: Any) -> bool:
        if not isinstance(value, nnx.Param) or (path and path[-1] in LORA_PARAMS):
            return False
        if prefixes is None:
            return True
        s = path_str(path)
        return any(s == p or s.startswith(p + ".") for p in prefixes)

    return pred


def count(model: nnx.Module, names: Iterable[str] = LORA_PARAMS) -> int:
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    return int(sum(v.get_value().size for k, v in flat if k and k[-1] in tuple(names)))
