"""Waveform input: formats, mix-down, resampling, crop/pad masks and bad-audio errors."""

import numpy as np
import pytest
import soundfile as sf

from kdjax.audio import AudioError, batch_waves, crop_or_pad, load_audio, load_many


def _tone(sr, seconds=1.0, freq=1000.0):
    t = np.arange(int(sr * seconds)) / sr
    left = 0.5 * np.sin(2 * np.pi * freq * t)
    return np.stack([left, 0.5 * left], axis=1).astype(np.float32)  # stereo, right = half of left


def _peak_hz(wave, sr):
    spec = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return np.argmax(spec) * sr / len(wave)


@pytest.mark.parametrize("fmt,tol", [("wav", 2), ("flac", 2), ("ogg", 400), ("mp3", 1600)])
def test_formats_mono_and_resampling(tmp_path, fmt, tol):
    path = str(tmp_path / f"tone.{fmt}")
    sf.write(path, _tone(44100), 44100)
    wave = load_audio(path, 16000)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - 16000) <= tol  # lossy codecs add encoder padding
    assert abs(_peak_hz(wave, 16000) - 1000.0) < 5.0
    mid = wave[4000:12000]
    assert np.sqrt(np.mean(mid ** 2)) == pytest.approx(0.75 * 0.5 / np.sqrt(2), rel=0.05)  # mean of channels


def _bad_files(tmp_path):
    good = _tone(16000)
    files = {}
    files["missing"] = str(tmp_path / "nope.wav")
    files["garbage"] = str(tmp_path / "garbage.wav")
    (tmp_path / "garbage.wav").write_bytes(b"not audio at all" * 20)
    for fmt in ("wav", "flac"):
        p = tmp_path / f"full.{fmt}"
        sf.write(str(p), good, 16000)
        data = p.read_bytes()
        (tmp_path / f"cut.{fmt}").write_bytes(data[: len(data) // 3])
        files[f"truncated {fmt}"] = str(tmp_path / f"cut.{fmt}")
    files["empty"] = str(tmp_path / "empty.wav")
    sf.write(files["empty"], np.zeros((0, 1), np.float32), 16000)
    files["nan"] = str(tmp_path / "nan.wav")
    bad = good.copy()
    bad[100, 0] = np.nan
    sf.write(files["nan"], bad, 16000, subtype="FLOAT")
    return files


def test_bad_audio_names_the_file(tmp_path):
    expected = {"missing": "not found", "garbage": "unreadable", "truncated wav": "truncated WAV",
                "truncated flac": "unreadable", "empty": "no samples", "nan": "NaN or Inf"}
    files = _bad_files(tmp_path)
    for kind, path in files.items():
        with pytest.raises(AudioError) as err:
            load_audio(path)
        assert str(err.value).startswith(path) and expected[kind] in str(err.value), (kind, str(err.value))
    good = str(tmp_path / "full.wav")
    with pytest.raises(AudioError):
        load_many([good, files["nan"]])
    waves, kept, skipped = load_many([good] + list(files.values()) + [good], on_bad="skip")
    assert len(waves) == 2 and kept == [0, len(files) + 1] and len(skipped) == len(files)
    assert all(any(s.startswith(p) for s in skipped) for p in files.values())


def test_crop_or_pad_and_masks():
    wave = np.arange(100, dtype=np.float32)
    fixed, mask = crop_or_pad(wave, 40)
    np.testing.assert_array_equal(fixed, wave[:40])  # evaluation: deterministic, from the start
    assert mask.all()
    a, _ = crop_or_pad(wave, 40, np.random.default_rng(1))
    b, _ = crop_or_pad(wave, 40, np.random.default_rng(1))
    c, _ = crop_or_pad(wave, 40, np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)  # seeded
    assert not np.array_equal(a, c)
    assert np.array_equal(a, wave[int(a[0]):int(a[0]) + 40])  # a contiguous window
    short, mask = crop_or_pad(wave[:10], 40)
    assert short[:10].tolist() == list(range(10)) and not short[10:].any()
    assert mask.sum() == 10 and mask[:10].all()
    batch, masks = batch_waves([wave[:10], wave[:25]])
    assert batch.shape == masks.shape == (2, 25)
    assert masks.sum(1).tolist() == [10, 25]
