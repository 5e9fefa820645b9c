"""Log-mel front end in JAX (jittable, so it runs on the accelerator inside the train step).

Semantics follow CED's front end (torchaudio MelSpectrogram + AmplitudeToDB): periodic Hann window,
center=True with reflect padding, power 2, HTK mel scale without filter normalisation,
10*log10(max(x, amin)), then a clamp at (max - top_db). The max is taken per example by default;
top_db_scope="batch" takes it over the whole batch, which is what torchaudio does for a 3-D input.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) triangular HTK filters, unnormalised (torchaudio's melscale_fbanks)."""
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    width = np.diff(edges)
    slopes = edges[None, :] - freqs[:, None]
    down = -slopes[:, :-2] / width[:-1]
    up = slopes[:, 2:] / width[1:]
    return np.maximum(0.0, np.minimum(down, up)).astype(np.float32)


def hann_window(win_length: int, n_fft: int) -> np.ndarray:
    """Periodic Hann window (torch.hann_window's default), zero-padded to n_fft on both sides."""
    n = np.arange(win_length)
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / win_length)
    left = (n_fft - win_length) // 2
    return np.pad(w, (left, n_fft - win_length - left)).astype(np.float32)


def power_spectrogram(wave: jax.Array, n_fft: int = 512, win_length: int = 512, hop_length: int = 160
                      ) -> jax.Array:
    """(..., samples) -> (..., frames, n_fft // 2 + 1) |STFT|^2, centred with reflect padding."""
    pad = n_fft // 2
    x = jnp.pad(wave, [(0, 0)] * (wave.ndim - 1) + [(pad, pad)], mode="reflect")
    frames = 1 + (x.shape[-1] - n_fft) // hop_length
    idx = np.arange(frames)[:, None] * hop_length + np.arange(n_fft)[None, :]
    spec = jnp.fft.rfft(x[..., idx] * hann_window(win_length, n_fft), axis=-1)
    return jnp.real(spec) ** 2 + jnp.imag(spec) ** 2


def log_mel(wave: jax.Array, sample_rate: int = 16000, n_fft: int = 512, win_length: int = 512,
            hop_length: int = 160, n_mels: int = 64, f_min: float = 0.0, f_max: float = 8000.0,
            top_db: float | None = 120.0, amin: float = 1e-10, top_db_scope: str = "example") -> jax.Array:
    """(..., samples) float waveform -> (..., n_mels, frames) log-mel power in dB."""
    if top_db_scope not in ("example", "batch"):
        raise ValueError(f"top_db_scope must be 'example' or 'batch', got {top_db_scope!r}")
    power = power_spectrogram(jnp.asarray(wave, jnp.float32), n_fft, win_length, hop_length)
    mel = jnp.einsum("...tf,fm->...mt", power, mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max),
                     precision=jax.lax.Precision.HIGHEST)
    db = 10.0 * jnp.log10(jnp.maximum(mel, amin))
    if top_db is not None:
        if top_db_scope == "batch" or db.ndim == 2:
            floor = db.max() - top_db
        else:
            floor = db.max(axis=(-2, -1), keepdims=True) - top_db
        db = jnp.maximum(db, floor)
    return db


def frame_mask(sample_mask: jax.Array, frames: int, hop: int) -> jax.Array:
    """Sample validity (b, samples) -> frame validity (b, frames): frame i is centred on sample i*hop."""
    idx = jnp.minimum(jnp.arange(frames) * hop, sample_mask.shape[-1] - 1)
    return sample_mask.astype(bool)[:, idx]
