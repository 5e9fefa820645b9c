"""Waveform augmentations of Multi2Cap (thesis Appendix 3.7.2): AddWhiteNoise, Shifting, Stretching,
Flipping. Each is applied with its own probability, in an order drawn per example.

They run on the host, inside the grain pipeline (`Task.train_transform`), before cropping: stretching
changes a clip's length, which has no static shape on device, and all four are cheap next to the
encoder. The log-mel front end then runs once per example, on device inside the train step, on the
augmented waveform; nothing is computed twice. Randomness comes from the generator grain derives from
(seed, position in the repeated stream), so augmentations are reproducible and a resumed run draws
exactly what the uninterrupted run would have drawn.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    noise_p: float = 0.5
    snr_db: tuple[float, float] = (10.0, 40.0)  # signal-to-noise ratio drawn uniformly in dB
    shift_p: float = 0.5
    max_shift: float = 0.5  # fraction of the clip length, either direction
    shift_rollover: bool = True  # samples pushed out re-enter at the other end; else zero-filled
    stretch_p: float = 0.5
    stretch_rate: tuple[float, float] = (0.8, 1.25)  # > 1 speeds up (shorter clip); pitch is kept
    flip_p: float = 0.5

    @classmethod
    def from_config(cls, cfg) -> AugmentConfig:
        """From an ml_collections ConfigDict (or dict) with any subset of the fields."""
        d = dict(cfg)
        return cls(**{k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in d.items()})


def add_white_noise(wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian white noise scaled so that 10*log10(P_signal / P_noise) is exactly `snr_db`."""
    power = float(np.mean(wave.astype(np.float64) ** 2))
    if power == 0.0:  # silence has no SNR; leave it silent rather than invent a level
        return wave
    noise = rng.standard_normal(wave.shape)
    noise *= np.sqrt(power / 10.0 ** (snr_db / 10.0) / np.mean(noise ** 2))
    return (wave + noise).astype(np.float32)


def shift(wave: np.ndarray, samples: int, rollover: bool = True) -> np.ndarray:
    """Move the clip `samples` later in time (earlier if negative)."""
    if rollover:
        return np.roll(wave, samples)
    out = np.zeros_like(wave)
    if samples >= 0:
        out[samples:] = wave[:len(wave) - samples]
    else:
        out[:samples] = wave[-samples:]
    return out


def stretch(wave: np.ndarray, rate: float, n_fft: int = 512) -> np.ndarray:
    """Time stretch by `rate` keeping the pitch (librosa's phase vocoder); length becomes len / rate.
    A 512-point STFT (32 ms at 16 kHz) is ten times cheaper than librosa's 2048 default and matches
    the front end's resolution."""
    import librosa

    if len(wave) < n_fft:  # shorter than one STFT frame: nothing a phase vocoder can do
        return wave
    return librosa.effects.time_stretch(wave.astype(np.float32), rate=rate, n_fft=n_fft,
                                        hop_length=n_fft // 4).astype(np.float32)


def flip(wave: np.ndarray) -> np.ndarray:
    """Phase inversion."""
    return -wave


def augment(wave: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig, crop_to: int | None = None
            ) -> tuple[np.ndarray, list[str]]:
    """Apply each augmentation with its probability, in a random order. Returns (wave, names applied).

    `crop_to`: the length the caller will crop to afterwards. A longer clip is first cut at random to
    what the slowest stretch could still need, so long clips cost no more than short ones.
    """
    if crop_to is not None:
        keep = int(np.ceil(crop_to * max(cfg.stretch_rate))) + 512
        if len(wave) > keep:
            start = int(rng.integers(0, len(wave) - keep + 1))
            wave = wave[start:start + keep]
    ops = {
        "noise": (cfg.noise_p, lambda w: add_white_noise(w, rng.uniform(*cfg.snr_db), rng)),
        "shift": (cfg.shift_p, lambda w: shift(
            w, int(rng.uniform(-cfg.max_shift, cfg.max_shift) * len(w)), cfg.shift_rollover)),
        "stretch": (cfg.stretch_p, lambda w: stretch(w, float(np.exp(rng.uniform(*np.log(cfg.stretch_rate)))))),
        "flip": (cfg.flip_p, flip),
    }
    names = list(ops)
    applied = []
    for i in rng.permutation(len(names)):
        p, fn = ops[names[i]]
        if rng.random() < p:
            wave = fn(wave)
            applied.append(names[i])
    return wave, applied
