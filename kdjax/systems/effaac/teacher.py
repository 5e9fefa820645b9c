"""EffAAC's teacher behind the teacher interface: a trained Multi2Cap captioner (its audio encoder online in the
step, or its embeddings and beam-search captions cached once per clip), or another framework's outputs imported
into the same cache (teacher.kind='cache')."""

from __future__ import annotations

import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from kdjax import assets
from kdjax.audio.io import crop_or_pad
from kdjax.data import captions as caption_data
from kdjax.data import teacher_cache, tokenizers
from kdjax.errors import InputError
from kdjax.systems import captioning
from kdjax.systems.effaac import pipeline, word_kd
from kdjax.train.restore import workdir_config


class AudioTeacher(nnx.Module):
    """What of a teacher the train step runs: its audio encoder, whose token sequence is the encoder output
    (pooled: the length-masked mean token). The language model that wrote the cached captions is not part
    of it, so a 7B decoder never occupies the accelerators of a student's run."""

    def __init__(self, audio_encoder: nnx.Module, sample_rate: int):
        self.audio_encoder = audio_encoder
        self.dim = audio_encoder.cfg.embed_dim
        self.sample_rate = sample_rate

    def embed(self, wave: jax.Array, mask: jax.Array | None) -> dict[str, jax.Array]:
        enc = self.audio_encoder(wave, mask)
        return {"last_hidden_state": enc["last_hidden_state"], "mask": enc["token_mask"],
                "pooler_output": enc["pooler_output"]}


class Multi2CapTeacher(nnx.Module):
    """A trained Multi2Cap captioner as an EffAAC teacher: captions from its own beam search (written once
    per clip to the teacher cache), embeddings from `encoder()`."""

    def __init__(self, model: nnx.Module, sample_rate: int):
        self.model = model
        self.dim = model.audio_encoder.cfg.embed_dim
        self.sample_rate = sample_rate

    def encoder(self) -> AudioTeacher:
        return AudioTeacher(self.model.audio_encoder, self.sample_rate)

    def embed(self, wave: jax.Array, mask: jax.Array | None) -> dict[str, jax.Array]:
        return self.encoder().embed(wave, mask)

    def caption(self, wave: jax.Array, mask: jax.Array | None, cfg) -> tuple[jax.Array, jax.Array]:
        return self.model.caption(wave, mask, cfg)


def load_teacher(cfg: ml_collections.ConfigDict) -> tuple[Multi2CapTeacher, Any] | None:
    """(teacher module, its tokenizer) for teacher.kind='multi2cap'; None otherwise."""
    t = cfg.teacher
    if t.kind in ("none", "cache"):
        return None
    if t.kind != "multi2cap":
        raise InputError(f"teacher.kind must be multi2cap, cache or none, got {t.kind!r}")
    if not t.workdir:
        raise InputError("teacher.kind='multi2cap' needs teacher.workdir (a trained Multi2Cap workdir)")
    from kdjax.systems import multi2cap

    tcfg = workdir_config(t.workdir)
    if tcfg.system != "multi2cap":
        raise InputError(f"{t.workdir}: a {tcfg.system!r} workdir, not multi2cap")
    model, tok = multi2cap.load_trained(tcfg, t.workdir)
    return Multi2CapTeacher(model, int(tcfg.data.sample_rate)), tok


def cache_dir(cfg: ml_collections.ConfigDict) -> str:
    t = cfg.teacher
    if t.cache_dir:
        return assets.resolve(t.cache_dir) if t.cache_dir.startswith("pkg:") else t.cache_dir
    if not t.workdir:
        raise InputError("teacher.cache_dir or teacher.workdir must say where the teacher cache is")
    return os.path.join(t.workdir, "teacher_cache")


def resample(wave: np.ndarray, src: int, dst: int) -> np.ndarray:
    if src == dst:
        return wave
    import soxr

    return soxr.resample(wave, src, dst).astype(np.float32)


def make_teacher_cache(cfg: ml_collections.ConfigDict, workdir: str,
                       loaded: tuple[Multi2CapTeacher, Any] | None = None) -> str:
    """Write the teacher's embedding and beam-search caption of every training (and audio-only) clip; clips
    already cached are skipped, so an interrupted run continues; each host of a multi-host job computes its
    share of the clips. Returns the cache directory."""
    from kdjax.teachers import cache as cache_lib

    loaded = loaded or load_teacher(cfg)
    if loaded is None:
        raise InputError("--mode=teacher_cache needs teacher.kind='multi2cap' and teacher.workdir")
    teacher, ttok = loaded
    out = cache_dir(cfg)
    ids, clips = _clips(cfg, teacher)
    gen = captioning.generation(cfg.teacher.generate, ttok)
    gdef, state = nnx.split(teacher)

    @jax.jit
    def run(state, wave, mask):
        t = nnx.merge(gdef, state)
        return t.caption(wave, mask, gen)[0], t.embed(wave, mask)["pooler_output"]

    decode = tokenizers.text_decoder(ttok)
    b = int(cfg.teacher.batch_size)

    def compute(part: list[str]) -> list[dict]:
        tokens, emb = run(state, *clips(part))
        texts, emb = decode(np.asarray(tokens)), np.asarray(emb)
        return [{"id": i, "embedding": emb[j], "caption": texts[j]} for j, i in enumerate(part)]

    cache_lib.fill(out, ids, compute, teacher_cache.fields(teacher.dim), batch_size=b, shard_size=b * 16,
                   teacher=f"multi2cap {os.path.abspath(cfg.teacher.workdir)}", progress="EffAAC teacher cache")
    _sync(f"teacher cache {out}")
    if word_kd.enabled(cfg):  # the teacher's distributions along the captions it just wrote
        captions = teacher_cache.read(out)
        word_kd.write_cache(cfg, teacher, ttok, clips, captions.caption, ids, word_kd.cache_dir(cfg, out))
        _sync(f"word-level teacher cache {out}")
    return out


def _sync(name: str) -> None:
    if jax.process_count() > 1:  # every host reads the whole cache
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _clips(cfg: ml_collections.ConfigDict, teacher: Multi2CapTeacher
           ) -> tuple[list[str], Callable[[list[str]], tuple[jax.Array, jax.Array]]]:
    """The ids of the clips the teacher's caches cover (training, then audio-only) and `clips(ids)`: up to
    teacher.batch_size of them as one fixed-size batch (wave, mask) at the teacher's rate and clip length."""
    sources, _, _ = caption_data.sources(cfg.data)
    # where each clip is, not its samples: a training clip is read (or made) again when its batch is computed
    train = sources["train"]
    where: dict[str, Any] = {r["id"]: i for i, r in enumerate(train)}
    where.update({r["id"]: r for r in pipeline.audio_only_rows(cfg)[0]})
    sr, tsr, b = int(cfg.data.sample_rate), teacher.sample_rate, int(cfg.teacher.batch_size)
    length = int(round(cfg.data.clip_seconds * tsr))

    def clips(ids: list[str]) -> tuple[jax.Array, jax.Array]:
        waves = [train[where[i]]["wave"] if isinstance(where[i], int) else pipeline.audio_only_wave(where[i], sr)
                 for i in ids]
        pairs = [crop_or_pad(resample(w, sr, tsr), length) for w in waves]
        pairs += [pairs[-1]] * (b - len(ids))  # one shape: pad the last batch, drop the padding
        return jnp.asarray(np.stack([p[0] for p in pairs])), jnp.asarray(np.stack([p[1] for p in pairs]))

    return list(where), clips


def online_teacher(cfg: ml_collections.ConfigDict) -> bool:
    """Whether the step runs the teacher's audio encoder (its embeddings on the student's crop)."""
    return (cfg.teacher.kind == "multi2cap" and bool(cfg.teacher.online) and cfg.kd.enc != "none"
            and cfg.student.memory != "teacher")
