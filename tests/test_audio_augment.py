"""Augmentation properties: flip twice is identity, noise hits its SNR, stretching keeps pitch and
scales duration, shifting moves the clip, and draws are reproducible per (seed, index)."""

import grain
import numpy as np
import pytest

from kdjax.audio import augment as aug

SR = 16000


def _tone(freq=440.0, seconds=2.0):
    t = np.arange(int(SR * seconds)) / SR
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_flip_twice_is_identity():
    w = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    np.testing.assert_array_equal(aug.flip(aug.flip(w)), w)
    np.testing.assert_array_equal(aug.flip(w), -w)


@pytest.mark.parametrize("snr", [0.0, 10.0, 25.0, 40.0])
def test_white_noise_reaches_requested_snr(snr):
    w = _tone()
    noisy = aug.add_white_noise(w, snr, np.random.default_rng(1))
    noise = noisy.astype(np.float64) - w
    measured = 10 * np.log10(np.mean(w.astype(np.float64) ** 2) / np.mean(noise ** 2))
    assert abs(measured - snr) <= 0.5, measured
    assert np.abs(np.fft.rfft(noise)[5000:]).mean() > 0.1  # broadband, not a copy of the tone


def _peak_hz(w):
    spec = np.abs(np.fft.rfft(w * np.hanning(len(w))))
    return np.argmax(spec) * SR / len(w)


@pytest.mark.parametrize("rate", [0.8, 1.25])
def test_stretch_keeps_frequency_and_scales_duration(rate):
    w = _tone(440.0, 2.0)
    out = aug.stretch(w, rate)
    assert abs(len(out) - len(w) / rate) <= 512  # within one STFT frame
    assert abs(_peak_hz(out[2048:-2048]) - 440.0) <= SR / 512  # one bin of a 512-point STFT


def test_shift_rolls_or_zero_fills():
    w = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(aug.shift(w, 3), np.roll(w, 3))
    np.testing.assert_array_equal(aug.shift(w, 3, rollover=False), [0, 0, 0, 0, 1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(aug.shift(w, -2, rollover=False), [2, 3, 4, 5, 6, 7, 8, 9, 0, 0])


def test_probabilities_order_and_reproducibility():
    cfg = aug.AugmentConfig(noise_p=1.0, shift_p=0.0, stretch_p=1.0, flip_p=0.5)
    orders, flips = set(), 0
    for seed in range(200):
        _, applied = aug.augment(_tone(seconds=0.5), np.random.default_rng(seed), cfg)
        assert "shift" not in applied and {"noise", "stretch"} <= set(applied)
        orders.add(tuple(a for a in applied if a != "flip"))
        flips += "flip" in applied
    assert orders == {("noise", "stretch"), ("stretch", "noise")}  # the order is drawn
    assert 70 < flips < 130
    # grain's per-element generators make a pipeline's draws a function of (seed, index) only
    base = grain.MapDataset.source([_tone(seconds=0.3)] * 8)
    run = lambda: [w for w in base.random_map(lambda w, rng: aug.augment(w, rng, cfg)[0], seed=7)]
    a, b = run(), run()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], a[1])
