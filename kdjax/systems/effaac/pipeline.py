"""EffAAC's input pipeline: labelled clips with their reference captions and the teacher's fields (its caption
of the clip for L_seq, its next-token distributions along that caption for word-level KD, its embedding for cached
encoder KD), audio-only clips drawn one per labelled clip, the random crops (at the teacher's rate too when an
online teacher reads another one), and fixed evaluation crops.

Audio-only clips stream from disk (seed 002 trains on AudioSet- and Freesound-scale audio-only sets): only their
paths and durations are held, each is decoded when drawn, in the input pipeline's workers. Clips longer than
`data.audio_only_max_seconds` (300 s) are skipped and counted, as are unreadable ones with on_bad_input='skip'."""

from __future__ import annotations

import os

import grain
import ml_collections
import numpy as np

from kdjax.audio.io import AudioError, crop_or_pad, duration, load_audio
from kdjax.data import captions as caption_data
from kdjax.data import jsonl, tokenizers
from kdjax.errors import InputError
from kdjax.systems.effaac.word_kd import FIELDS as WORD_FIELDS


def uses_audio_only(cfg: ml_collections.ConfigDict) -> bool:
    """Whether the config trains with audio-only clips: a manifest of files, or synthetic ones
    (data.source='synthetic' with data.synthetic.num_audio_only > 0)."""
    d = cfg.data
    return bool(d.audio_only_manifest) or (d.source == "synthetic" and int(d.synthetic.get("num_audio_only", 0)) > 0)


def audio_only_rows(cfg: ml_collections.ConfigDict) -> tuple[list[dict], list[str]]:
    """The audio-only clips {"id", "audio": path, "seconds"} (no samples: they are decoded when drawn; synthetic
    ones {"id", "synthetic": generator, "index"}, made when drawn) and the skipped ones ('path: why': over
    data.audio_only_max_seconds, or unreadable with on_bad_input='skip')."""
    d = cfg.data
    rows = caption_data.synthetic_audio_only(d) if d.source == "synthetic" else []
    path = d.audio_only_manifest
    if not path:
        return rows, []
    if d.on_bad_input not in ("error", "skip"):
        raise InputError(f"data.on_bad_input must be 'error' or 'skip', got {d.on_bad_input!r}")
    longest = float(d.get("audio_only_max_seconds", 300.0))
    root = os.path.dirname(os.path.abspath(path))
    skipped = []
    for n, r in jsonl.read_rows(path, ("audio",)):
        audio = os.path.join(root, r["audio"])
        try:
            seconds = duration(audio)
        except AudioError as e:
            if d.on_bad_input == "error":
                raise AudioError(f"{path}:{n}: {e}") from None
            skipped.append(str(e))
            continue
        if seconds > longest:
            skipped.append(f"{audio}: {seconds:.0f} s is over data.audio_only_max_seconds ({longest:g} s)")
            continue
        rows.append({"id": str(r.get("id", f"{os.path.basename(path)}:{n}")), "audio": audio, "seconds": seconds})
    return rows, skipped


def audio_only_wave(row: dict, sample_rate: int) -> np.ndarray:
    """An audio-only clip's samples: decoded from its file, or made by its generator."""
    if "synthetic" in row:
        return row["synthetic"].wave(row["index"])
    return load_audio(row["audio"], sample_rate)


class Pipeline:
    """The examples of every split and the per-example training transform. `cache` is the teacher cache (None
    without one); `online_rate` the sample rate of an online teacher in the step (None: no online teacher)."""

    def __init__(self, cfg: ml_collections.ConfigDict, tok, sources, ao_rows, cache, online_rate: int | None,
                 word=None):
        d = cfg.data
        self.cfg, self.tok, self.cache, self.word = cfg, tok, cache, word  # word: word_kd.Aligner (word-level KD)
        self.length, self.cap_len, self.sr = int(round(d.clip_seconds * d.sample_rate)), int(d.max_caption_tokens), \
            int(d.sample_rate)
        self.online = online_rate is not None
        self.tsr = int(online_rate) if online_rate else self.sr
        self.t_length = int(round(d.clip_seconds * self.tsr))
        self.data = {s: self._split(sources, s) for s in caption_data.SPLITS}
        # paths or generators: decoded or made when drawn (their word-level KD fields too: audio-only sets are large)
        self.ao = [{**{k: v for k, v in r.items() if k != "id"}, "clip_id": r["id"],
                    **self.teacher_fields(r["id"], word=False)} for r in ao_rows]

    def teacher_fields(self, clip_id: str, word: bool = True) -> dict[str, np.ndarray]:
        kd = self.cfg.kd
        if self.cache is None:
            return {}
        out = {}
        if float(kd.seq_weight) > 0 or self.word is not None:
            ids, lens = tokenizers.encode_captions(self.tok, [self.cache.caption(clip_id)], self.cap_len)
            out.update(teacher_ids=ids[0], teacher_len=lens[0])
        if self.word is not None and word:
            out.update(self.word.fields(clip_id, self.cache.caption(clip_id)))
        if not self.online and kd.enc != "none":
            out["teacher_emb"] = self.cache.embedding(clip_id)
        return out

    def example(self, index: int, r: dict) -> dict:
        ids, lens = tokenizers.encode_captions(self.tok, list(r["captions"]), self.cap_len)
        return {"wave": np.asarray(r["wave"], np.float32), "caption_ids": ids, "caption_lens": lens,
                "index": np.int32(index), **self.teacher_fields(r["id"])}

    def _split(self, sources, split: str) -> grain.MapDataset:
        src = sources[split]
        wave_only = lambda i, r: {"wave": np.asarray(r["wave"], np.float32), "index": np.int32(i)}
        make = self.example if split == "train" else wave_only
        if isinstance(src, list):
            return grain.MapDataset.source([make(i, r) for i, r in enumerate(src)])
        return grain.MapDataset.source(src).map_with_index(make)

    def crop(self, wave: np.ndarray, rng: np.random.Generator, prefix: str = "") -> dict:
        from kdjax.systems.effaac.teacher import resample

        w, m = crop_or_pad(wave, self.length, rng)
        out = {prefix + "wave": w.astype(np.float32), prefix + "mask": m}
        if self.online and self.tsr != self.sr:  # the teacher hears the same crop at its own rate
            tw, _ = crop_or_pad(resample(w, self.sr, self.tsr), self.t_length)
            out[prefix + "teacher_wave"] = tw
            out[prefix + "teacher_wave_mask"] = m[np.minimum(np.arange(self.t_length) * self.sr // self.tsr,
                                                             self.length - 1)]
        return out

    def teacher_mask(self, ex: dict, prefix: str = "") -> dict:
        out = {}
        if "teacher_ids" in ex:
            out = {prefix + "teacher_ids": ex["teacher_ids"],
                   prefix + "teacher_mask": (np.arange(self.cap_len) < ex["teacher_len"]).astype(np.int32)}
        for name in ("teacher_emb",) + WORD_FIELDS:
            if name in ex:
                out[prefix + name] = ex[name]
        return out

    def train_transform(self, ex: dict, rng: np.random.Generator) -> dict:
        j = int(rng.integers(len(ex["caption_lens"])))  # one of the references (Clotho has 5)
        out = {**self.crop(ex["wave"], rng), "caption_ids": ex["caption_ids"][j],
               "caption_mask": (np.arange(self.cap_len) < ex["caption_lens"][j]).astype(np.int32),
               **self.teacher_mask(ex)}
        if self.ao:
            a = self.ao[int(rng.integers(len(self.ao)))]
            out.update(self.crop(audio_only_wave(a, self.sr), rng, "ao_"))
            out.update(self.teacher_mask(a, "ao_"))
            if self.word is not None:
                out.update(self.word.fields(a["clip_id"], self.cache.caption(a["clip_id"]), "ao_"))
        return out

    def train(self) -> grain.MapDataset:
        return self.data["train"].map(lambda ex: {k: v for k, v in ex.items() if k != "index"})
