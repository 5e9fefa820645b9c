"""Audio front ends."""

from kdjax.audio.features import log_mel, mel_filterbank
from kdjax.audio.io import AudioError, batch_waves, crop_or_pad, load_audio, load_many

__all__ = ["log_mel", "mel_filterbank", "AudioError", "batch_waves", "crop_or_pad", "load_audio", "load_many"]
