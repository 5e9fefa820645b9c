"""Audio front ends."""

from kdjax.audio.features import log_mel, mel_filterbank

__all__ = ["log_mel", "mel_filterbank"]
