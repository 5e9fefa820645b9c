"""EffAAC's audio-only clips at the paper's scale (seed 002, sections 2.3 and 3.1): they stream from disk (only
paths and durations are held), clips over 300 s are skipped and counted, and a batch of the audio-only setting is
16 labelled + 16 audio-only clips by default."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from configs import effaac as effaac_config
from kdjax.audio.io import AudioError
from kdjax.data import captions as caption_data
from kdjax.systems import registry
from kdjax.systems.effaac import pipeline

SR = 16000


def _clips(root, n: int, seconds: float) -> list[str]:
    """`n` FLAC files of `seconds` of quiet noise: small on disk (16-bit FLAC), 4 bytes a sample once decoded."""
    root.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    names = []
    for i in range(n):
        wave = (rng.standard_normal(int(seconds * SR)) * 1e-3).astype(np.float32)
        sf.write(str(root / f"c{i}.flac"), wave, SR, subtype="PCM_16")
        names.append(f"clips/c{i}.flac")
    return names


def _cfg(manifest, on_bad="error"):
    cfg = effaac_config.get_config("tiny")
    cfg.data.audio_only_manifest = str(manifest)
    cfg.data.on_bad_input = on_bad
    return cfg


def test_audio_only_clips_stream_within_a_memory_budget_and_long_ones_are_skipped(tmp_path):
    names = _clips(tmp_path / "clips", 48, 30.0)  # 48 x 30 s = 92 MB of float32 if held in memory
    long_clip = tmp_path / "clips" / "long.flac"
    sf.write(str(long_clip), np.zeros(301 * SR, np.float32), SR, subtype="PCM_16")  # over 300 s
    manifest = tmp_path / "ao.jsonl"
    manifest.write_text("".join(json.dumps({"audio": a, "id": f"ao{i}"}) + "\n" for i, a in enumerate(names))
                        + json.dumps({"audio": "clips/long.flac", "id": "long"}) + "\n")
    cfg = _cfg(manifest)
    sources, _, _ = caption_data.sources(cfg.data)  # the labelled set (embedded), outside the budget
    budget = 24 * 2**20  # well under the audio-only set's decoded size, above one clip (1.9 MB) and a batch

    tracemalloc.start()
    try:
        rows, skipped = pipeline.audio_only_rows(cfg)
        pipe = pipeline.Pipeline(cfg, _Tok(), sources, rows, None, None)
        rng = np.random.default_rng(0)
        examples = [pipe.train_transform(pipe.data["train"][i], rng) for i in range(16)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"audio-only streaming: peak {peak / 2**20:.1f} MiB traced")
    assert peak < budget, f"peak {peak / 2**20:.1f} MiB"
    assert len(rows) == 48 and [r["seconds"] for r in rows] == [30.0] * 48
    assert skipped == [f"{long_clip}: 301 s is over data.audio_only_max_seconds (300 s)"]
    n = int(round(cfg.data.clip_seconds * SR))
    assert all(e["ao_wave"].shape == (n,) and e["ao_mask"].all() for e in examples)
    assert len({float(np.abs(e["ao_wave"]).sum()) for e in examples}) > 1  # different clips and crops


def test_unreadable_audio_only_clips_name_the_row_or_are_skipped_and_counted(tmp_path):
    names = _clips(tmp_path / "clips", 2, 1.0)
    (tmp_path / "clips" / "bad.flac").write_bytes(b"not audio at all")
    manifest = tmp_path / "ao.jsonl"
    manifest.write_text("".join(json.dumps({"audio": a}) + "\n" for a in [*names, "clips/bad.flac"]))
    with pytest.raises(AudioError, match=rf"{manifest}:3: .*bad.flac"):
        pipeline.audio_only_rows(_cfg(manifest))
    rows, skipped = pipeline.audio_only_rows(_cfg(manifest, "skip"))
    assert len(rows) == 2 and len(skipped) == 1 and "bad.flac" in skipped[0]


def test_the_audio_only_setting_batches_16_labelled_with_16_audio_only_clips(tmp_path):
    manifest = tmp_path / "ao.jsonl"
    manifest.write_text(json.dumps({"audio": "x.flac"}) + "\n")
    for variant in ("contra", "mse"):
        cfg = effaac_config.get_config(variant)
        assert cfg.train.batch_size == 32  # labelled clips only
        cfg.data.audio_only_manifest = str(manifest)
        _, resolved, notes = registry.resolve(cfg, paths=False)
        assert resolved.train.batch_size == 16, variant
        assert any("16 + 16" in n for n in notes)
    cfg = effaac_config.get_config("tiny")  # the CPU variants keep their batch (0: train.batch_size)
    cfg.data.audio_only_manifest = str(manifest)
    assert registry.resolve(cfg, paths=False)[1].train.batch_size == cfg.train.batch_size


class _Tok:
    """Enough of a tokenizer for the pipeline's caption encoding."""
    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [3 + len(w) % 5 for w in text.split()]}

    def __len__(self):
        return 8
