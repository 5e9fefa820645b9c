"""A stack of identical layers stored as one module whose arrays carry a leading layer axis, run by lax.scan.

An unrolled stack puts every layer's forward and backward into the program, so compile time and host memory
grow with depth (about 45 s and 0.75 GB of host RAM per LLaMA-2-7B layer on this project's CPU host); a
scanned stack compiles one layer body whatever the depth, which is what makes a 32-layer 7B step compile for a
TPU slice here. Parameter paths lose the layer index (`model.layers.self_attn.q_proj.kernel`, shape
(L, in, out)); the parameter maps (kdjax.convert.param_map) and logical axes know that form.

The body is pure: it receives `nnx.merge(graphdef, layer_slice)`, and any randomness comes in as a per-layer
key, never from an outer nnx.Rngs (whose counter would be advanced inside the loop). A stack carries its depth
as the static attribute `stack_depth`, so code that speaks per-layer names (PEFT adapters) can find it.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx


def stacked(make: Callable[[nnx.Rngs], nnx.Module], n: int, rngs: nnx.Rngs) -> nnx.Module:
    """`n` independently initialised `make(rngs)` as one module with a leading axis of `n` on every array."""
    if n < 1:
        raise ValueError(f"a stack needs at least one layer, got {n}")
    copies = [nnx.split(make(rngs)) for _ in range(n)]
    graphdef = copies[0][0]
    return _mark(nnx.merge(graphdef, jax.tree.map(lambda *xs: jnp.stack(xs), *(s for _, s in copies))), n)


def _mark(module: nnx.Module, n: int | None) -> nnx.Module:
    module.stack_depth = n
    return module


def stacks(model: nnx.Module) -> dict[str, int]:
    """The stacks inside `model`: dotted module path -> depth."""
    from kdjax.models.state import path_str

    return {path_str(p): m.stack_depth for p, m in nnx.iter_modules(model) if getattr(m, "stack_depth", None)}


def layer(stack: nnx.Module, i: int) -> nnx.Module:
    """Layer `i` as an ordinary module (its arrays are slices of the stack's), e.g. for a decoding loop that
    carries one cache per layer."""
    graphdef, state = nnx.split(stack)
    return _mark(nnx.merge(graphdef, jax.tree.map(lambda x: x[i], state)), None)


def truncate(stack: nnx.Module, n: int) -> nnx.Module:
    """The first `n` layers."""
    graphdef, state = nnx.split(stack)
    return _mark(nnx.merge(graphdef, jax.tree.map(lambda x: x[:n], state)), n)


def scan(stack: nnx.Module, body: Callable[[nnx.Module, Any, Any], tuple[Any, Any]], carry: Any, xs: Any = None,
         *, remat: bool = False) -> tuple[Any, Any]:
    """lax.scan of `body(layer, carry, x) -> (carry, y)` over the layers, `xs` and the ys stacked per layer.
    `remat` recomputes each layer's activations in the backward pass (jax.checkpoint of the body: only the
    carry between layers is kept)."""
    graphdef, state = nnx.split(stack)

    def step(c, inp):
        s, x = inp
        return body(_mark(nnx.merge(graphdef, s), None), c, x)

    if remat:
        step = jax.checkpoint(step, prevent_cse=False)
    return jax.lax.scan(step, carry, (state, xs))
