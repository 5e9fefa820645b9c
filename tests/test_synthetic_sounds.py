"""Synthetic sound events: deterministic random access; audio, image and caption agree."""

import grain
import numpy as np
import pytest

from kdjax.data.synthetic_sounds import KINDS, SyntheticSounds


def _peak_hz(w, sr=16000):
    spec = np.abs(np.fft.rfft(w))
    return np.argmax(spec[20:]) * sr / len(w) + 20 * sr / len(w)


def test_examples_are_a_function_of_seed_and_index():
    src = SyntheticSounds(1000, seed=3)
    a, b = src[917], SyntheticSounds(1000, seed=3)[917]
    np.testing.assert_array_equal(a["wave"], b["wave"])
    np.testing.assert_array_equal(a["image"], b["image"])
    assert a["caption"] == b["caption"]
    assert not np.array_equal(src[0]["wave"], src[1]["wave"])
    assert not np.array_equal(src[0]["wave"], SyntheticSounds(1000, seed=4)[0]["wave"])
    with pytest.raises(IndexError):
        src[1000]
    ds = grain.MapDataset.source(src)[::100]  # works as a grain source
    assert len(ds) == 10 and ds[3]["caption"] == src[300]["caption"]


def test_audio_image_and_caption_describe_the_same_events():
    src = SyntheticSounds(300, seed=0, max_events=1)
    kinds_seen = set()
    for i in range(300):
        ex = src[i]
        ev = ex["events"][0]
        kinds_seen.add(ev["kind"])
        assert ex["wave"].shape == (64000,) and ex["wave"].dtype == np.float32
        assert np.abs(ex["wave"]).max() < 1.0
        assert ex["image"].shape == (224, 224, 3)
        assert ev["kind"] in ex["caption"] and ev["pitch"] in ex["caption"]
        assert ex["label"] == KINDS.index(ev["kind"])
        if ev["kind"] in ("beep", "siren"):  # pitch audible where the caption says
            peak = _peak_hz(ex["wave"])
            assert (peak > 1500) == (ev["pitch"] == "high"), (i, peak, ex["caption"])
        # one drawn shape per repetition: count colour blobs along the shapes' row
        row = 0.3 if ev["pitch"] == "high" else 0.7
        line = ex["image"][int(224 * row), :, :].astype(int).sum(-1) < 700
        blobs = int(np.sum(line[1:] & ~line[:-1]) + line[0])
        assert blobs == ev["count"], (i, blobs, ex["caption"])
    assert kinds_seen == set(KINDS)
    assert src[0]["caption_ko"].endswith("들린다.")
