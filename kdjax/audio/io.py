"""Waveform input: read, mix down, resample, crop or pad, with errors that name the file.

Bad audio (missing, unreadable or truncated file, no samples, NaN/Inf samples) raises `AudioError`
naming the file; `load_many(..., on_bad="skip")` skips such files and returns what it skipped and why,
so nothing reaches a jitted step as a silently zero-filled example.
"""

from __future__ import annotations

import functools
import os
import struct
from typing import Sequence

import numpy as np

from kdjax import paths
from kdjax.errors import InputError


class AudioError(InputError):
    """A file that cannot give a valid waveform."""


def _wav_truncated(path: str) -> bool:
    """True when a RIFF/WAVE file's data chunk claims more bytes than the file holds (libsndfile reads
    such files silently short)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return False
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            cid, clen = struct.unpack("<4sI", f.read(8))
            if cid == b"data":
                return pos + 8 + clen > size
            pos += 8 + clen + (clen & 1)
    return False


def _remote(fn):
    """Run a reader on a local copy of a file in a bucket (the decoders read local files), naming the bucket
    path in its errors."""
    @functools.wraps(fn)
    def wrapped(path: str, *args, **kwargs):
        if not paths.is_remote(path):
            return fn(path, *args, **kwargs)
        if not paths.isfile(path):
            raise AudioError(f"{path}: audio file not found")
        with paths.local_copy(path) as local:
            try:
                return fn(local, *args, **kwargs)
            except AudioError as e:
                raise AudioError(str(e).replace(local, path)) from None
    return wrapped


@_remote
def read_audio(path: str) -> tuple[np.ndarray, int]:
    """(samples, channels) float32 and the file's sample rate: soundfile, falling back to librosa."""
    if not os.path.isfile(path):
        raise AudioError(f"{path}: audio file not found")
    import soundfile as sf

    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as sf_err:  # formats libsndfile lacks; librosa tries its other decoders
        try:
            import warnings

            import librosa

            with warnings.catch_warnings():  # librosa warns about its own soundfile -> audioread fallback
                warnings.simplefilter("ignore")
                y, sr = librosa.load(path, sr=None, mono=False)
            data = np.atleast_2d(y).T.astype(np.float32)
        except Exception as lr_err:
            raise AudioError(f"{path}: unreadable audio (soundfile: {sf_err}; librosa: {lr_err})") from None
    if path.lower().endswith(".wav") and _wav_truncated(path):
        raise AudioError(f"{path}: truncated WAV file (data chunk runs past the end of the file)")
    return data, int(sr)


@_remote
def duration(path: str) -> float:
    """Seconds of audio in `path`, from its header (nothing decoded) where libsndfile reads the format; otherwise
    the file is decoded once (and dropped). AudioError naming the file when it cannot be read."""
    if not os.path.isfile(path):
        raise AudioError(f"{path}: audio file not found")
    import soundfile as sf

    try:
        info = sf.info(path)
        if info.samplerate > 0 and info.frames >= 0:
            if path.lower().endswith(".wav") and _wav_truncated(path):
                raise AudioError(f"{path}: truncated WAV file (data chunk runs past the end of the file)")
            return info.frames / info.samplerate
    except AudioError:
        raise
    except Exception:  # noqa: BLE001 - a format only librosa decodes: measured by decoding
        pass
    data, sr = read_audio(path)
    return data.shape[0] / sr


def load_audio(path: str, sample_rate: int = 16000) -> np.ndarray:
    """Mono float32 waveform at `sample_rate` (soxr's high-quality resampler when rates differ)."""
    data, sr = read_audio(path)
    if data.shape[0] == 0:
        raise AudioError(f"{path}: no samples")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: NaN or Inf samples")
    wave = data.mean(axis=1)
    if sr != sample_rate:
        import soxr

        wave = soxr.resample(wave, sr, sample_rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(wave, np.float32)


def load_many(paths: Sequence[str], sample_rate: int = 16000, on_bad: str = "error"
              ) -> tuple[list[np.ndarray], list[int], list[str]]:
    """Load every file. Returns (waves, the indices into `paths` they came from, skipped); with
    on_bad='skip', bad files are left out and listed in `skipped` as 'path: reason'."""
    if on_bad not in ("error", "skip"):
        raise InputError(f"data.on_bad_input must be 'error' or 'skip', got {on_bad!r}")
    waves, kept, skipped = [], [], []
    for i, p in enumerate(paths):
        try:
            waves.append(load_audio(p, sample_rate))
            kept.append(i)
        except AudioError as e:
            if on_bad == "error":
                raise
            skipped.append(str(e))
    return waves, kept, skipped


def crop_or_pad(wave: np.ndarray, length: int, rng: np.random.Generator | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-length view of `wave` and its validity mask. Longer clips are cropped: at a random offset
    when `rng` is given (training), from the start otherwise (evaluation). Shorter clips are
    zero-padded at the end, and the mask marks the real samples."""
    n = len(wave)
    if n >= length:
        start = int(rng.integers(0, n - length + 1)) if rng is not None else 0
        return wave[start:start + length], np.ones(length, bool)
    out = np.zeros(length, np.float32)
    out[:n] = wave
    return out, np.arange(length) < n


def batch_waves(waves: Sequence[np.ndarray], length: int | None = None,
                rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(batch, length) waveforms and masks; `length` defaults to the longest clip."""
    length = length or max(len(w) for w in waves)
    pairs = [crop_or_pad(w, length, rng) for w in waves]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
