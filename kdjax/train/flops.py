"""Matmul and convolution FLOPs of a traced program, read from its jaxpr.

XLA's cost analysis counts a while loop's body once, so a scanned layer stack (kdjax.models.stack) is counted
as one layer however deep it is. The jaxpr still knows each scan's length: `dot_flops(jaxpr)` counts every
iteration, `dot_flops(jaxpr, loops=False)` counts each body once as XLA does, and the difference is what XLA's
figure lacks. Only dot_general and conv_general_dilated are counted (a multiply-add is 2 FLOPs): they are
nearly all of a transformer step's FLOPs, and the elementwise work of the missing iterations is left out.
"""

from __future__ import annotations

import math
from typing import Any

from jax.extend import core


def _dot(eqn) -> float:
    lhs, rhs = (v.aval.shape for v in eqn.invars)
    (_, rc), (_, rb) = eqn.params["dimension_numbers"]
    free = math.prod(d for i, d in enumerate(rhs) if i not in set(rc) | set(rb))
    return 2.0 * math.prod(lhs) * free


def _conv(eqn) -> float:
    rhs = eqn.invars[1].aval.shape
    out = eqn.outvars[0].aval.shape
    out_features = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
    return 2.0 * math.prod(out) * math.prod(rhs) / out_features


def _subjaxprs(value: Any):
    if isinstance(value, core.ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, core.Jaxpr):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _subjaxprs(v)


def dot_flops(jaxpr: core.ClosedJaxpr | core.Jaxpr, *, loops: bool = True) -> float:
    """FLOPs of the matmuls and convolutions in `jaxpr`, each scan body times its length (`loops`) or once.
    A cond counts its costliest branch; a while loop (unknown trip count) its body once."""
    jaxpr = jaxpr.jaxpr if isinstance(jaxpr, core.ClosedJaxpr) else jaxpr
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            total += _dot(eqn)
        elif name == "conv_general_dilated":
            total += _conv(eqn)
        else:
            subs = [dot_flops(j, loops=loops) for v in eqn.params.values() for j in _subjaxprs(v)]
            if not subs:
                continue
            if name == "cond":
                total += max(subs)
            elif name == "scan":
                total += sum(subs) * (eqn.params["length"] if loops else 1)
            else:
                total += sum(subs)
    return total


def xla_flops(compiled: Any) -> float:
    """XLA's FLOP count of a compiled program (one device's when partitioned); 0 where the backend has no cost
    analysis (XLA:GPU)."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return 0.0
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float((cost or {}).get("flops", 0.0))


def missed_scan_flops(jaxpr: core.ClosedJaxpr | core.Jaxpr) -> float:
    """The matmul/convolution FLOPs of the scan iterations XLA's cost analysis does not see."""
    return dot_flops(jaxpr) - dot_flops(jaxpr, loops=False)


def program_flops(traced: Any, compiled: Any) -> float:
    """FLOPs of a whole traced-and-compiled program: XLA's count plus the scan iterations it sees only once.
    A scanned model must be counted this way (a 32-layer stack would otherwise be one layer's cost)."""
    return xla_flops(compiled) + missed_scan_flops(traced.jaxpr)
