"""Building blocks shared by the model families."""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

# Hugging Face `hidden_act` names. HF's "gelu" is the exact erf form; "gelu_new"/"gelu_pytorch_tanh"
# are the tanh approximation.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_fast": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unsupported hidden_act {name!r}; known: {sorted(ACTIVATIONS)}") from None


def padding_bias(mask: jax.Array, dtype=jnp.float32) -> jax.Array:
    """(batch, keys) 0/1 mask -> additive (batch, 1, 1, keys) bias, as HF's extended attention mask."""
    return jnp.where(mask[:, None, None, :].astype(bool), 0.0, jnp.finfo(dtype).min).astype(dtype)


def attention_with_probs(q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array | None,
                         dropout: Callable[[jax.Array], jax.Array] | None = None
                         ) -> tuple[jax.Array, jax.Array]:
    """Scaled dot-product attention that also returns the post-softmax probabilities.

    q: (b, q, h, d), k/v: (b, k, h, d), bias broadcastable to (b, h, q, k). Softmax runs in float32
    whatever the compute dtype, since distillation losses read the probabilities directly.
    Returns (context (b, q, h, d), probs (b, h, q, k) in float32).
    """
    scale = 1.0 / jnp.sqrt(jnp.asarray(q.shape[-1], jnp.float32))
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) * scale
    if bias is not None:
        scores = scores + bias
    probs = jax.nn.softmax(scores, axis=-1)
    used = dropout(probs) if dropout is not None else probs
    ctx = jnp.einsum("bhqk,bkhd->bqhd", used.astype(v.dtype), v)
    return ctx, probs


def linear(layer: Callable[..., jax.Array], x: jax.Array, *, deterministic: bool, rngs) -> jax.Array:
    """Apply a projection that may have been swapped for a LoRA layer (kdjax.models.lora): LoRA layers
    take the dropout controls, plain ones do not. Models call their LoRA-able projections through this."""
    if getattr(layer, "takes_dropout", False):
        return layer(x, deterministic=deterministic, rngs=rngs)
    return layer(x)


def masked_mean(x: jax.Array, mask: jax.Array | None) -> jax.Array:
    """Mean over axis 1 of (b, n, d) counting only rows where `mask` (b, n) is set (all rows without a mask)."""
    if mask is None:
        return x.mean(axis=1)
    m = mask[..., None].astype(x.dtype)
    return (x * m).sum(axis=1) / jnp.maximum(m.sum(axis=1), 1.0)


def pool_mask(mask: jax.Array, size: int) -> jax.Array:
    """(b, n) frame/sample validity -> (b, ceil(n / size)): a window is valid if any element is."""
    n = mask.shape[-1]
    pad = -n % size
    mask = jnp.pad(mask.astype(bool), [(0, 0), (0, pad)])
    return mask.reshape(mask.shape[0], -1, size).any(axis=-1)


def depthwise_conv2d(x: jax.Array, kernel: jax.Array, stride: int,
                     padding: str | Sequence[tuple[int, int]]) -> jax.Array:
    """NHWC depthwise convolution, kernel (kh, kw, 1, C), padding "SAME" (TensorFlow's) or explicit
    [(top, bottom), (left, right)].

    On CPU it is computed as kh x kw strided multiply-adds of shifted views, which XLA fuses into one loop:
    XLA:CPU's grouped convolution (feature_group_count = C) has no vectorised kernel and runs 20-50x slower
    than that, forward and backward (measured in this project on EfficientNet-B2's shapes). Accelerators
    use their native grouped convolution."""
    kh, kw = kernel.shape[:2]
    if padding == "SAME":
        padding = [(t // 2, t - t // 2) for t in
                   (max((-(-n // stride) - 1) * stride + k - n, 0) for n, k in ((x.shape[1], kh), (x.shape[2], kw)))]
    padding = [tuple(p) for p in padding]
    if jax.default_backend() != "cpu":
        return jax.lax.conv_general_dilated(x, kernel.astype(x.dtype), (stride, stride), padding,
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                            feature_group_count=x.shape[-1])
    xp = jnp.pad(x, [(0, 0), padding[0], padding[1], (0, 0)])
    h = (xp.shape[1] - kh) // stride + 1
    w = (xp.shape[2] - kw) // stride + 1
    k = kernel.astype(x.dtype)
    out = None
    for i in range(kh):
        for j in range(kw):
            view = jax.lax.slice(xp, (0, i, j, 0), (xp.shape[0], i + (h - 1) * stride + 1, j + (w - 1) * stride + 1,
                                                    xp.shape[3]), (1, stride, stride, 1))
            term = view * k[i, j, 0]
            out = term if out is None else out + term
    return out
