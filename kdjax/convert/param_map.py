"""Declarative Hugging Face <-> Flax parameter maps, used in both directions.

A map is a list of `Entry(hf, flax, kind)` naming one PyTorch module and the Flax module that holds
the same weights; `{i}` stands for a layer index and is expanded by `expand`. `kind` says how the
module's tensors correspond:

  linear     weight (out, in) <-> kernel (in, out) transposed; bias <-> bias
  linear_nobias  the same without a bias (LLaMA projections)
  layernorm  weight <-> scale; bias <-> bias
  rmsnorm    weight <-> scale
  embed      weight <-> embedding
  tensor     the names are full tensor names and the values are equal (e.g. learned query tokens)
  conv       weight (out, in, *k) <-> kernel (*k, in, out); bias <-> bias (conv_nobias: no bias)
  batchnorm  weight/bias/running_mean/running_var <-> scale/bias/mean/var
  pos_embed  (1, D, *grid) channels-first tensor <-> (1, *grid, D) channels-last
  mha_in     torch.nn.MultiheadAttention's fused input projection: in_proj_weight (3D, D) and
             in_proj_bias (3D,), split with parts=("query", "key", "value") into three linears

`parts=("q", "k", "v")` splits one fused checkpoint module into equal slices along its output axis,
one per Flax module (the Flax name holds `{part}`); saving concatenates them again.

An index that appears in the HF name but not in the Flax name is a stacked layer axis (a scanned stack,
kdjax.models.stack): HF `model.layers.{i}.mlp.up_proj.weight` is slice i of the leading axis of Flax
`model.layers.mlp.up_proj.kernel`. Loading fills one stacked tensor at a time from its layers.

Conversion is a pure function of name -> array mappings, so the same map serves loading, saving and
tests, and a checkpoint can be converted one tensor at a time.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import fnmatch
import logging
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from kdjax.errors import InputError


@dataclasses.dataclass(frozen=True)
class Entry:
    hf: str
    flax: str
    kind: str
    parts: tuple[str, ...] = ()


def _t(x):
    return np.ascontiguousarray(np.transpose(x))


def _conv_to_flax(x):
    return np.ascontiguousarray(np.moveaxis(x, (0, 1), (-1, -2)))


def _conv_to_hf(x):
    return np.ascontiguousarray(np.moveaxis(x, (-1, -2), (0, 1)))


_ident = lambda x: x
# kind -> list of (hf suffix, flax suffix, hf->flax, flax->hf)
_KINDS: dict[str, list[tuple[str, str, Callable, Callable]]] = {
    "linear": [("weight", "kernel", _t, _t), ("bias", "bias", _ident, _ident)],
    "linear_nobias": [("weight", "kernel", _t, _t)],
    "layernorm": [("weight", "scale", _ident, _ident), ("bias", "bias", _ident, _ident)],
    "rmsnorm": [("weight", "scale", _ident, _ident)],
    "embed": [("weight", "embedding", _ident, _ident)],
    "tensor": [("", "", _ident, _ident)],
    "conv": [("weight", "kernel", _conv_to_flax, _conv_to_hf), ("bias", "bias", _ident, _ident)],
    "conv_nobias": [("weight", "kernel", _conv_to_flax, _conv_to_hf)],
    "pos_embed": [("", "", lambda x: np.ascontiguousarray(np.moveaxis(x, 1, -1)),
                   lambda x: np.ascontiguousarray(np.moveaxis(x, -1, 1)))],
    "mha_in": [("in_proj_weight", "kernel", _t, _t), ("in_proj_bias", "bias", _ident, _ident)],
    "batchnorm": [("weight", "scale", _ident, _ident), ("bias", "bias", _ident, _ident),
                  ("running_mean", "mean", _ident, _ident), ("running_var", "var", _ident, _ident)],
}


def _join(a: str, b: str) -> str:
    return f"{a}.{b}" if a and b else a or b


@dataclasses.dataclass(frozen=True)
class TensorRule:
    hf: str
    flax: str
    to_flax: Callable[[np.ndarray], np.ndarray]
    to_hf: Callable[[np.ndarray], np.ndarray]
    part: tuple[int, int] | None = None  # (index, count): this rule reads slice `index` of `count`
    layer: int | None = None  # the Flax tensor is a stack and this rule is its slice `layer` (leading axis)


def expand(entries: Iterable[Entry], num_layers: int | Mapping[str, int] = 0) -> list[TensorRule]:
    """Expand module entries into per-tensor rules. `{i}` ranges over num_layers; a mapping
    {'i': n, 'j': m} expands several independent indices."""
    counts = {"i": num_layers} if isinstance(num_layers, int) else dict(num_layers)
    rules: list[TensorRule] = []
    for e in entries:
        variants = [(None, e.hf, e.flax)]
        for name, n in counts.items():
            token = "{" + name + "}"
            nxt = []
            for layer, hf, fx in variants:
                if token in hf or token in fx:
                    if token not in fx and layer is not None:
                        raise ValueError(f"{e.hf} -> {e.flax}: only one index may be a stacked axis")
                    nxt += [(k if token not in fx else layer, hf.replace(token, str(k)), fx.replace(token, str(k)))
                            for k in range(n)]
                else:
                    nxt.append((layer, hf, fx))
            variants = nxt
        for layer, hf, fx in variants:
            for hs, fs, to_f, to_h in _KINDS[e.kind]:
                if e.parts:
                    rules += [TensorRule(_join(hf, hs), _join(fx.replace("{part}", p), fs), to_f, to_h,
                                         (j, len(e.parts)), layer) for j, p in enumerate(e.parts)]
                else:
                    rules.append(TensorRule(_join(hf, hs), _join(fx, fs), to_f, to_h, layer=layer))
    return rules


class ConversionError(InputError):
    """A checkpoint does not match the model; the message lists every offending key."""


# NaN/Inf in a checkpoint is almost always damage (a diverged run saved, a bad cast); loading refuses it unless a
# caller asks otherwise. A context variable, so the request reaches hf_to_flax through every family's loader
# without each one growing a parameter (their keyword arguments are config overrides).
_ALLOW_NONFINITE = contextvars.ContextVar("kdjax_allow_nonfinite", default=False)


@contextlib.contextmanager
def nonfinite_allowed(allow: bool = True):
    """Within the block, checkpoint tensors holding NaN/Inf load with a warning instead of a ConversionError."""
    token = _ALLOW_NONFINITE.set(allow)
    try:
        yield
    finally:
        _ALLOW_NONFINITE.reset(token)


def _nonfinite(name: str, value: np.ndarray) -> str | None:
    # numpy floats, and ml_dtypes' bfloat16/float8 (numpy kind "V") as the safetensors flax reader returns them
    if value.dtype.kind not in "fc" and not value.dtype.name.startswith(("bfloat", "float")):
        return None
    bad = np.size(value) - int(np.count_nonzero(np.isfinite(value)))
    return f"{name}: {bad} NaN/Inf of {np.size(value)}" if bad else None


def _hf_shape(r: TensorRule, want: tuple[int, ...]) -> tuple[int, ...]:
    """The checkpoint-side shape that would fit a model tensor of shape `want` (one layer's, for a stack)."""
    shape = r.to_hf(np.zeros(want, dtype=bool)).shape
    if r.part is not None:
        shape = (shape[0] * r.part[1], *shape[1:])
    return tuple(shape)


@dataclasses.dataclass
class LoadReport:
    missing: list[str] = dataclasses.field(default_factory=list)  # model params absent from checkpoint
    unexpected: list[str] = dataclasses.field(default_factory=list)  # checkpoint tensors nobody reads
    mismatched: list[str] = dataclasses.field(default_factory=list)  # "name: checkpoint (a,b) vs model (c,d)"
    ignored: list[str] = dataclasses.field(default_factory=list)  # known-unused tensors (buffers, heads)
    initialized: list[str] = dataclasses.field(default_factory=list)  # params left at their fresh init
    nonfinite: list[str] = dataclasses.field(default_factory=list)  # "name: k NaN/Inf of n" (checkpoint tensors)
    nonfinite_allowed: bool = False  # nonfinite tensors were loaded on request (nonfinite_allowed())

    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched
                    or (self.nonfinite and not self.nonfinite_allowed))

    def describe(self) -> str:
        parts = []
        for name in ("missing", "unexpected", "mismatched", "nonfinite"):
            items = getattr(self, name)
            if items:
                parts.append(f"{len(items)} {name}: " + ", ".join(items[:50])
                             + (" ..." if len(items) > 50 else ""))
        return "; ".join(parts) or "ok"


def hf_to_flax(hf_tensors: Mapping[str, np.ndarray], rules: list[TensorRule],
               flax_shapes: Mapping[str, tuple[int, ...]], *, ignore: Iterable[str] = (),
               may_init: Iterable[str] = (), source: str = "checkpoint",
               put: Callable[[str, np.ndarray], Any] | None = None) -> tuple[dict[str, Any], LoadReport]:
    """Convert HF tensors to flat Flax params (dotted paths).

    `ignore`: glob patterns of checkpoint tensors that are known and deliberately unused.
    `may_init`: glob patterns of model params that may be absent (e.g. a fresh classification head).
    `put(flax_name, array)`: where each converted tensor goes (e.g. a device array in the parameter
    dtype and sharding); the host copy is dropped at once, so a large checkpoint converts one tensor at
    a time in little more memory than the result.
    Raises ConversionError naming every missing, unexpected and mis-shaped key (shapes in the checkpoint's own
    layout) and every tensor holding NaN/Inf (unless within `nonfinite_allowed()`).
    """
    report = LoadReport(nonfinite_allowed=_ALLOW_NONFINITE.get())
    checked: set[str] = set()  # checkpoint tensors already checked for NaN/Inf (fused ones feed several rules)
    out: dict[str, np.ndarray] = {}
    stacks: dict[str, tuple[np.ndarray, set[int]]] = {}  # stacked Flax tensor -> (host buffer, layers filled)
    by_hf = {r.hf: r for r in rules}
    from kdjax.train.logging import progress_bar  # here: kdjax.train imports the converters

    bar = progress_bar(len(rules), f"convert {str(source).rstrip('/').rsplit('/', 1)[-1]}", "tensor", leave=False,
                       min_total=64)
    for name in hf_tensors:
        if name not in by_hf:
            (report.ignored if any(fnmatch.fnmatch(name, p) for p in ignore) else report.unexpected
             ).append(name)
    for r in rules:
        bar.update(1)
        if r.flax not in flax_shapes:
            raise ConversionError(f"parameter map names {r.flax!r}, which the model does not have")
        if r.hf not in hf_tensors:
            if any(fnmatch.fnmatch(r.flax, p) for p in may_init):
                report.initialized.append(r.flax)
            elif r.hf not in report.missing:
                report.missing.append(r.hf)
            continue
        value = np.asarray(hf_tensors[r.hf])
        raw_shape = tuple(value.shape)
        if r.hf not in checked:
            checked.add(r.hf)
            bad = _nonfinite(r.hf, value)
            if bad:
                report.nonfinite.append(bad)
        full = tuple(flax_shapes[r.flax])
        want = full if r.layer is None else full[1:]
        if r.part is not None:
            index, count = r.part
            if not value.ndim or value.shape[0] % count:
                mismatch = f"{r.hf}: {source} {raw_shape} vs model {_hf_shape(r, want)} (does not split in {count})"
                if mismatch not in report.mismatched:  # the parts of a fused tensor report it once
                    report.mismatched.append(mismatch)
                continue
            value = np.split(value, count, axis=0)[index]
        value = r.to_flax(value)
        if tuple(value.shape) != want:
            mismatch = f"{r.hf}: {source} {raw_shape} vs model {_hf_shape(r, want)}"
            if mismatch not in report.mismatched:  # the parts of a fused tensor report it once
                report.mismatched.append(mismatch)
            continue
        if r.layer is not None:  # one layer of a stack: the stack is converted once all its layers are in
            buf, filled = stacks.setdefault(r.flax, (np.empty(full, value.dtype), set()))
            buf[r.layer] = value
            filled.add(r.layer)
            del value
            if len(filled) < full[0]:
                continue
            value = stacks.pop(r.flax)[0]
        out[r.flax] = put(r.flax, value) if put is not None else value
        del value
    bar.close()
    covered = {r.flax for r in rules}
    for name in flax_shapes:
        if name not in covered and not any(fnmatch.fnmatch(name, p) for p in may_init):
            raise ConversionError(f"model parameter {name!r} has no entry in the parameter map")
    if not report.ok():
        raise ConversionError(f"{source} does not match the model: {report.describe()}"
                              + ("; pass allow_nonfinite=True to load NaN/Inf weights anyway"
                                 if report.nonfinite and not report.nonfinite_allowed else ""))
    if report.nonfinite:
        logging.warning("%s: loaded tensors holding NaN/Inf (allowed): %s", source, ", ".join(report.nonfinite))
    return out, report


class HFView(Mapping[str, np.ndarray]):
    """Flat Flax params seen as HF tensors, converted on access: writing a checkpoint from it holds one
    output shard in host memory at a time, not a second copy of the model."""

    def __init__(self, flax_params: Mapping[str, Any], rules: list[TensorRule]):
        covered = {r.flax for r in rules}
        extra = sorted(set(flax_params) - covered)
        if extra:
            raise ConversionError(f"model parameters without a parameter-map entry: {extra}")
        self._params = flax_params
        self._host: tuple[str, np.ndarray] | None = None  # the stack last read (its layers are read in a row)
        self._by_hf: dict[str, list[TensorRule]] = {}
        for r in rules:
            if r.flax in flax_params:
                self._by_hf.setdefault(r.hf, []).append(r)
        for name, rs in self._by_hf.items():
            if rs[0].part is not None and len(rs) != rs[0].part[1]:
                raise ConversionError(f"{name}: only {len(rs)} of its {rs[0].part[1]} parts are in the model")

    def _value(self, r: TensorRule) -> np.ndarray:
        if r.layer is None:
            return np.asarray(self._params[r.flax])
        if self._host is None or self._host[0] != r.flax:
            self._host = (r.flax, np.asarray(self._params[r.flax]))
        return self._host[1][r.layer]

    def __getitem__(self, name: str) -> np.ndarray:
        rs = self._by_hf[name]
        if rs[0].part is None:
            return rs[0].to_hf(self._value(rs[0]))
        rs = sorted(rs, key=lambda r: r.part[0])
        return np.concatenate([r.to_hf(self._value(r)) for r in rs], axis=0)

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_hf)

    def __len__(self) -> int:
        return len(self._by_hf)

    def __contains__(self, name: object) -> bool:
        return name in self._by_hf


def flax_to_hf(flax_params: Mapping[str, np.ndarray], rules: list[TensorRule]) -> dict[str, np.ndarray]:
    """Convert flat Flax params to HF tensors; every model parameter must be covered by the map."""
    view = HFView(flax_params, rules)
    return {k: view[k] for k in view}
