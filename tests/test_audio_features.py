"""kdjax.audio.log_mel against an independent reference: torch.stft (float64) + librosa's HTK filterbank."""

import jax
import librosa
import numpy as np
import pytest
import torch

from kdjax.audio import log_mel, mel_filterbank


def _reference(wave, sr, n_fft, win, hop, n_mels, fmin, fmax, top_db=120.0):
    fb = torch.tensor(librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=True,
                                          norm=None), dtype=torch.float64)
    window = torch.nn.functional.pad(torch.hann_window(win, dtype=torch.float64),
                                     ((n_fft - win) // 2, n_fft - win - (n_fft - win) // 2))
    spec = torch.stft(torch.tensor(wave, dtype=torch.float64), n_fft, hop, n_fft, window, center=True,
                      pad_mode="reflect", return_complex=True).abs() ** 2
    db = 10 * torch.log10((fb @ spec).clamp(min=1e-10))
    return torch.maximum(db, db.amax(dim=(-2, -1), keepdim=True) - top_db).numpy()


def _clips(sr, seconds, n=2, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * (200 + 1500 * t) * t)
    clips = [tone + 0.05 * rng.normal(size=t.size), 0.01 * rng.normal(size=t.size) * (1 + np.sin(6 * t))]
    return np.stack(clips[:n]).astype(np.float32)


@pytest.mark.parametrize("setting", [
    dict(sr=16000, n_fft=512, win=512, hop=160, n_mels=64, fmin=0.0, fmax=8000.0),  # CED / EffAAC
    dict(sr=32000, n_fft=1024, win=1024, hop=320, n_mels=64, fmin=50.0, fmax=14000.0),  # WavCaps HTSAT
    dict(sr=16000, n_fft=512, win=400, hop=160, n_mels=80, fmin=20.0, fmax=7600.0),  # short window
])
def test_log_mel_matches_reference(setting):
    s = setting
    wave = _clips(s["sr"], 2.5)
    ours = np.asarray(jax.jit(lambda w: log_mel(w, s["sr"], s["n_fft"], s["win"], s["hop"], s["n_mels"],
                                                s["fmin"], s["fmax"]))(wave))
    ref = _reference(wave, s["sr"], s["n_fft"], s["win"], s["hop"], s["n_mels"], s["fmin"], s["fmax"])
    assert ours.shape == ref.shape == (2, s["n_mels"], 1 + wave.shape[-1] // s["hop"])
    above = ref > ref.max(axis=(-2, -1), keepdims=True) - 120.0
    assert above.mean() > 0.9
    assert np.abs(ours - ref)[above].max() <= 1e-3


def test_filterbank_equals_librosa_htk():
    for sr, n_fft, n_mels, fmin, fmax in ((16000, 512, 64, 0.0, 8000.0), (32000, 1024, 64, 50.0, 14000.0)):
        ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=True, norm=None)
        np.testing.assert_allclose(mel_filterbank(sr, n_fft, n_mels, fmin, fmax), ref.T, atol=1e-7)


def test_top_db_clamp_per_example_or_batch():
    loud = _clips(16000, 1.0, n=1)[0]
    quiet = loud * 1e-4  # 80 dB quieter
    batch = np.stack([loud, quiet])
    per = np.asarray(log_mel(batch, top_db=30.0))
    whole = np.asarray(log_mel(batch, top_db=30.0, top_db_scope="batch"))
    # Per example, the quiet clip keeps its own 30 dB range; batch-wide, it is flattened to the floor.
    np.testing.assert_allclose(per[1], per[0] - 80.0, atol=1e-2)
    assert np.ptp(whole[1]) == 0.0 and whole[1].max() == pytest.approx(whole[0].max() - 30.0, abs=1e-4)
    np.testing.assert_allclose(np.asarray(log_mel(loud, top_db=30.0)), per[0], atol=1e-5)
