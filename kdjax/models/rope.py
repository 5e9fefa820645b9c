"""Rotary position embeddings with the frequency schedules a Hugging Face config can carry.

`rope_type` (HF's `rope_parameters` / legacy `rope_scaling`):
  default   inv_freq_i = theta^(-2i/d)                                  (Su et al. 2021)
  linear    positions divided by `factor` (position interpolation, Chen et al. 2023)
  dynamic   NTK-aware: theta grows with the sequence length once it exceeds max_position_embeddings
  yarn      per-frequency blend of interpolation and extrapolation plus an attention scale (Peng et al. 2023)
  longrope  per-frequency rescaling, `long_factor` past the original context, `short_factor` within it
  llama3    Llama 3.1: low frequencies divided by `factor`, a smooth ramp between low and high

Frequencies that depend on the sequence length (dynamic, longrope) are chosen from the largest position
in the call, as transformers does, so incremental decoding with a KV cache sees the same frequencies as a
full forward pass over the same positions.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "longrope", "llama3")


@dataclasses.dataclass(frozen=True)
class Rope:
    head_dim: int
    theta: float = 10000.0
    rope_type: str = "default"
    max_position_embeddings: int = 2048
    params: tuple[tuple[str, Any], ...] = ()  # the remaining rope_parameters (factor, beta_fast, ...)

    @classmethod
    def from_hf(cls, cfg: Mapping[str, Any], head_dim: int) -> "Rope":
        """From a HF config dict: transformers 5 `rope_parameters`, or legacy `rope_theta` + `rope_scaling`."""
        params = dict(cfg.get("rope_parameters") or {})
        legacy = dict(cfg.get("rope_scaling") or {})
        params = {**legacy, **params}
        theta = float(params.pop("rope_theta", cfg.get("rope_theta", 10000.0)))
        kind = params.pop("rope_type", params.pop("type", "default"))
        params.pop("type", None)
        if kind not in ROPE_TYPES:
            raise ValueError(f"rope_type {kind!r} is not supported (known: {ROPE_TYPES})")
        if float(params.get("partial_rotary_factor", 1.0)) != 1.0:
            raise ValueError("partial_rotary_factor != 1 is not supported for LLaMA")
        params.pop("partial_rotary_factor", None)
        return cls(head_dim, theta, kind, int(cfg.get("max_position_embeddings", 2048)),
                   tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items())))

    def to_hf(self) -> dict[str, Any]:
        p = {k: list(v) if isinstance(v, tuple) else v for k, v in self.params}
        return {"rope_theta": self.theta, "rope_type": self.rope_type, **p}

    def _p(self, key: str, default: Any = None) -> Any:
        return dict(self.params).get(key, default)

    def _base_freqs(self, theta: float | jax.Array) -> np.ndarray | jax.Array:
        # NumPy for a static theta: the llama3/yarn schedules post-process these on the host, which must also
        # work while a jit traces the model (a jnp constant is a tracer there)
        exponents = np.arange(0, self.head_dim, 2, dtype=np.float32) / self.head_dim
        if isinstance(theta, (int, float)):
            return np.float32(1.0) / (np.float32(theta) ** exponents)
        return 1.0 / (jnp.asarray(theta, jnp.float32) ** exponents)

    def inv_freq(self, seq_len: jax.Array | int) -> tuple[jax.Array, float]:
        """(inverse frequencies (head_dim/2,), scale applied to cos and sin) for a call whose largest
        position is seq_len - 1."""
        d, kind = self.head_dim, self.rope_type
        if kind == "default":
            return self._base_freqs(self.theta), 1.0
        if kind == "linear":
            return self._base_freqs(self.theta) / float(self._p("factor")), 1.0
        if kind == "dynamic":
            factor, mpe = float(self._p("factor")), self.max_position_embeddings
            length = jnp.maximum(jnp.asarray(seq_len, jnp.float32), mpe)
            theta = self.theta * ((factor * length / mpe) - (factor - 1)) ** (d / (d - 2))
            return self._base_freqs(theta), 1.0
        if kind == "llama3":
            factor, low, high = (float(self._p(k)) for k in ("factor", "low_freq_factor", "high_freq_factor"))
            context = float(self._p("original_max_position_embeddings"))
            freqs = np.asarray(self._base_freqs(self.theta))
            wavelen = 2 * math.pi / freqs
            # long wavelengths (beyond context / low) are interpolated, short ones (below context / high)
            # kept, and the band between them blended linearly in context / wavelength
            scaled = np.where(wavelen > context / low, freqs / factor, freqs)
            smooth = (context / wavelen - low) / (high - low)
            blended = (1 - smooth) * scaled / factor + smooth * scaled
            medium = (wavelen >= context / high) & (wavelen <= context / low)
            return jnp.asarray(np.where(medium, blended, scaled), jnp.float32), 1.0
        if kind == "yarn":
            return self._yarn()
        if kind == "longrope":
            original = int(self._p("original_max_position_embeddings"))
            factor = self._p("factor") or self.max_position_embeddings / original
            scale = self._p("attention_factor")
            if scale is None:
                scale = 1.0 if factor <= 1 else math.sqrt(1 + math.log(factor) / math.log(original))
            base = self._base_freqs(self.theta)
            long_ = base / jnp.asarray(self._p("long_factor"), jnp.float32)
            short = base / jnp.asarray(self._p("short_factor"), jnp.float32)
            return jnp.where(jnp.asarray(seq_len) > original, long_, short), float(scale)
        raise AssertionError(kind)

    def _yarn(self) -> tuple[jax.Array, float]:
        d = self.head_dim
        original = int(self._p("original_max_position_embeddings"))
        factor = self._p("factor") or self.max_position_embeddings / original
        mscale = lambda s, m=1.0: 1.0 if s <= 1 else 0.1 * m * math.log(s) + 1.0
        scale = self._p("attention_factor")
        if scale is None:
            m, m_all = self._p("mscale"), self._p("mscale_all_dim")
            scale = mscale(factor, m) / mscale(factor, m_all) if m and m_all else mscale(factor)
        fast, slow = self._p("beta_fast") or 32, self._p("beta_slow") or 1
        # the dimension at which a frequency completes `rotations` turns over the original context
        dim_at = lambda rotations: d * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(self.theta))
        lo, hi = dim_at(fast), dim_at(slow)
        if self._p("truncate", True):
            lo, hi = math.floor(lo), math.ceil(hi)
        lo, hi = max(lo, 0), min(hi, d - 1)
        if lo == hi:
            hi += 0.001
        ramp = np.clip((np.arange(d // 2, dtype=np.float32) - lo) / (hi - lo), 0, 1)
        keep = 1 - ramp  # 1: extrapolate (high frequency), 0: interpolate
        base = np.asarray(self._base_freqs(self.theta))
        freqs = base / factor * (1 - keep) + base * keep
        return jnp.asarray(freqs, jnp.float32), float(scale)

    def cos_sin(self, positions: jax.Array, dtype: Any = jnp.float32) -> tuple[jax.Array, jax.Array]:
        """positions (b, l) -> cos, sin (b, l, head_dim), each frequency repeated for both halves."""
        freqs, scale = self.inv_freq(jnp.max(positions) + 1)
        angles = positions[..., None].astype(jnp.float32) * freqs
        angles = jnp.concatenate([angles, angles], axis=-1)
        return (jnp.cos(angles) * scale).astype(dtype), (jnp.sin(angles) * scale).astype(dtype)


def apply_rotary(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """x (b, l, heads, head_dim) rotated in (first half, second half) pairs, HF's rotate_half layout."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos[:, :, None, :] + rotated * sin[:, :, None, :]
