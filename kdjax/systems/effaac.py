"""EffAAC (seed 002): the EffNet-Trm student trained with L = L_sup + L_seq + L_enc (eq. 3-7).

- L_sup: label-smoothed cross-entropy on a ground-truth caption (labelled clips only).
- L_seq: the same on the teacher's beam-search caption of the clip, re-tokenized with the student's word
  vocabulary (every clip, audio-only ones included). Teacher captions are generated once per clip into a
  teacher cache (kdjax.data.teacher_cache; `--mode=teacher_cache`), never in the step.
- L_enc: contrastive (eq. 6, losses.feature.effaac_contrastive) or MSE (eq. 7) between the mean-pooled
  student and teacher embeddings. The teacher embedding comes from the cache or, with `teacher.online`,
  from the frozen teacher run inside the step on the same crop the student hears (its own sample rate).

Audio-only clips (`data.audio_only_manifest`) are drawn one per labelled clip, so each batch is half
labelled, half audio-only (the paper's 16 + 16), and contribute L_seq + L_enc.

A teacher is any kdjax captioner with an audio encoder; Multi2Cap (a trained workdir) is adapted here.
Outputs of other teachers (e.g. a PyTorch HTSAT-BART) enter through an imported cache (`teacher.kind=cache`).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from kdjax import assets, teachers
from kdjax.audio.io import crop_or_pad, load_audio, load_many
from kdjax.convert import load_efficientnet
from kdjax.convert.checkpoint_io import LazyTensors
from kdjax.data import captions as caption_data
from kdjax.data import jsonl, teacher_cache, tokenizers
from kdjax.errors import InputError
from kdjax.losses import feature as feature_losses
from kdjax.losses.classification import cross_entropy
from kdjax.metrics.captioning import CaptionTaskEvaluator, MetricConfig
from kdjax.models import caption_decoder
from kdjax.models.caption_decoder import CaptionDecoderConfig
from kdjax.models.effaac import EffAAC, EffAACConfig, FrontEndConfig
from kdjax.models.efficientnet import EfficientNetConfig
from kdjax.models.generate import config_from
from kdjax.models.layers import masked_mean
from kdjax.models.state import flatten, map_with_path, path_str
from kdjax.systems import captioning, contract
from kdjax.systems.checks import Checks
from kdjax.train import task as task_lib
from kdjax.train.batch import BatchSpec, Field, abstract_batch
from kdjax.train.task import Task

LOGICAL_AXES = caption_decoder.LOGICAL_AXES


# ------------------------------------------------------------------------------------------- teacher
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


def _workdir_config(workdir: str) -> ml_collections.ConfigDict:
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: not a kdjax workdir (no config.json)")
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


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

    tcfg = _workdir_config(t.workdir)
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


def _audio_only_rows(cfg: ml_collections.ConfigDict) -> tuple[list[dict], list[str]]:
    path = cfg.data.audio_only_manifest
    if not path:
        return [], []
    root = os.path.dirname(os.path.abspath(path))
    rows = [{"id": str(r.get("id", f"{os.path.basename(path)}:{n}")), "audio": os.path.join(root, r["audio"])}
            for n, r in jsonl.read_rows(path, ("audio",))]
    waves, kept, bad = load_many([r["audio"] for r in rows], int(cfg.data.sample_rate), cfg.data.on_bad_input)
    return [{"id": rows[i]["id"], "wave": w} for w, i in zip(waves, kept)], bad


def _resample(wave: np.ndarray, src: int, dst: int) -> np.ndarray:
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
    sources, _, _ = caption_data.sources(cfg.data)
    waves = {r["id"]: r["wave"] for r in sources["train"]}
    waves.update({r["id"]: r["wave"] for r in _audio_only_rows(cfg)[0]})
    gen = captioning.generation(cfg.teacher.generate, ttok)
    sr, tsr = int(cfg.data.sample_rate), teacher.sample_rate
    length = int(round(cfg.data.clip_seconds * tsr))
    gdef, state = nnx.split(teacher)

    @jax.jit
    def run(state, wave, mask):
        t = nnx.merge(gdef, state)
        return t.caption(wave, mask, gen)[0], t.embed(wave, mask)["pooler_output"]

    decode = tokenizers.text_decoder(ttok)
    b = int(cfg.teacher.batch_size)

    def compute(ids: list[str]) -> list[dict]:
        pairs = [crop_or_pad(_resample(waves[i], sr, tsr), length) for i in ids]
        pairs += [pairs[-1]] * (b - len(ids))  # one shape: pad the last batch, drop the padding
        wave, mask = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
        tokens, emb = run(state, jnp.asarray(wave), jnp.asarray(mask))
        texts, emb = decode(np.asarray(tokens)), np.asarray(emb)
        return [{"id": i, "embedding": emb[j], "caption": texts[j]} for j, i in enumerate(ids)]

    cache_lib.fill(out, list(waves), compute, teacher_cache.fields(teacher.dim), batch_size=b, shard_size=b * 16,
                   teacher=f"multi2cap {os.path.abspath(cfg.teacher.workdir)}", progress="EffAAC teacher cache")
    if jax.process_count() > 1:  # every host reads the whole cache
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"teacher cache {out}")
    return out


# ------------------------------------------------------------------------------------------- student
def build_tokenizer(cfg: ml_collections.ConfigDict, texts: list[str] | None, workdir: str):
    """The student's word vocabulary from the training captions (saved in the workdir; reused on resume).
    With student.init_from, the initialising workdir's vocabulary (its decoder's rows)."""
    if cfg.student.init_from:
        return tokenizers.load(os.path.join(cfg.student.init_from, "tokenizer"))
    out = os.path.join(workdir, "tokenizer")
    if texts is None and not os.path.isfile(os.path.join(out, "tokenizer.json")):
        raise FileNotFoundError(f"{out}: no tokenizer (train this workdir first)")
    s = cfg.student
    return tokenizers.train_word_level(texts or [], out, max_words=int(s.max_words) or None,
                                       min_count=int(s.min_count))


def student_config(cfg: ml_collections.ConfigDict, tok, teacher_dim: int) -> EffAACConfig:
    s, kd = cfg.student, cfg.kd
    enc = EfficientNetConfig.from_name(s.encoder, **dict(s.encoder_overrides))
    dec = CaptionDecoderConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                               pad_token_id=tok.pad_token_id, **dict(s.decoder))
    return EffAACConfig(encoder=enc, decoder=dec, front_end=FrontEndConfig(sample_rate=int(cfg.data.sample_rate)),
                        enc_proj_dim=teacher_dim if kd.enc == "mse" else 0,
                        contra_dim=int(kd.contra_dim) if kd.enc == "contra" else 0,
                        teacher_dim=teacher_dim if kd.enc == "contra" else 0)


def _copy_decoder(model: EffAAC, workdir: str) -> None:
    """Initialise `model.decoder` (all but memory_proj, which faces a new encoder) from a trained EffAAC
    workdir (Table 1, row 3)."""
    src, _ = load_trained(_workdir_config(workdir), workdir)
    theirs = flatten(nnx.state(src.decoder, nnx.Param))

    def take(path: str, v):
        if path.startswith("memory_proj."):
            return v
        if path not in theirs or theirs[path].shape != v.shape:
            raise InputError(f"{workdir}: its decoder has no {path} of shape {v.shape}")
        return theirs[path]

    state = nnx.state(model.decoder, nnx.Param)
    nnx.replace_by_pure_dict(state, map_with_path(take, nnx.to_pure_dict(state)))
    nnx.update(model.decoder, state)


def _build_model(cfg: ml_collections.ConfigDict, tok, workdir: str, teacher_dim: int | None = None,
                 teacher: Multi2CapTeacher | None = None) -> tuple[EffAAC, dict]:
    s = cfg.student
    info: dict[str, Any] = {}
    if teacher_dim is None:
        teacher_dim = int(cfg.kd.get("teacher_dim", 0) or 0)
    external = None
    if s.memory == "teacher":
        if teacher is None:
            raise InputError("student.memory='teacher' needs an online teacher (teacher.kind='multi2cap')")
        if teacher.sample_rate != int(cfg.data.sample_rate):
            raise InputError(f"student.memory='teacher': the teacher reads {teacher.sample_rate} Hz audio, "
                             f"data.sample_rate is {cfg.data.sample_rate}")
        external = teacher.encoder()
    elif s.memory != "student":
        raise InputError(f"student.memory must be 'student' or 'teacher', got {s.memory!r}")
    mcfg = student_config(cfg, tok, teacher_dim)
    model = EffAAC(mcfg, rngs=nnx.Rngs(int(cfg.seed)), external_encoder=external)
    if s.encoder_checkpoint and external is None:
        path = assets.resolve(s.encoder_checkpoint)
        tensors = LazyTensors(path)
        prefix = next((p for p in ("", "encoder.", "model.", "module.") if p + "_conv_stem.weight" in tensors), "")
        enc, report = load_efficientnet(tensors, name=s.encoder, prefix=prefix, source=path,
                                        **dict(s.encoder_overrides))
        nnx.update(model.encoder, nnx.state(enc))
        info["encoder_checkpoint"] = {"path": path, "ignored": len(report.ignored)}
    if s.init_from:
        _copy_decoder(model, s.init_from)
        info["decoder_from"] = s.init_from
    return model, info


def frozen_filter(cfg: ml_collections.ConfigDict):
    """Table 1's frozen halves, plus an external (teacher) encoder, which is never trained."""
    parts = set(cfg.train.get("freeze", ()))
    unknown = parts - {"encoder", "decoder"}
    if unknown:
        raise InputError(f"train.freeze: unknown part(s) {sorted(unknown)} (encoder, decoder)")

    def pred(path: tuple, value: Any) -> bool:
        if not isinstance(value, nnx.Param):
            return False
        s = path_str(path)
        if s.startswith("external_encoder."):
            return True
        if "encoder" in parts and s.startswith("encoder."):
            return True
        return "decoder" in parts and s.startswith("decoder.") and not s.startswith("decoder.memory_proj.")

    return pred


def _shift_right(ids: jax.Array, bos: int) -> jax.Array:
    return jnp.concatenate([jnp.full((ids.shape[0], 1), bos, ids.dtype), ids[:, :-1]], axis=1)


def make_loss_fn(cfg: ml_collections.ConfigDict, bos: int):
    """L = L_sup + w_seq L_seq + w_enc L_enc (seed 002 eq. 5); audio-only rows (`ao_*`) add L_seq + L_enc."""
    kd = cfg.kd
    ls, w_seq, w_enc, kind = float(kd.label_smoothing), float(kd.seq_weight), float(kd.enc_weight), kd.enc
    freeze_enc = "encoder" in set(cfg.train.get("freeze", ()))

    def loss_fn(model, teacher, batch, rngs):
        n_lab = batch["wave"].shape[0]
        cat = lambda k: (jnp.concatenate([batch[k], batch["ao_" + k]]) if "ao_" + k in batch else batch[k])
        wave, mask = cat("wave"), cat("mask")
        enc = model.encode(wave, mask, deterministic=freeze_enc, rngs=rngs)
        memory = (enc["last_hidden_state"], enc["mask"])
        kw = dict(deterministic=False, rngs=rngs)
        ids, cmask = batch["caption_ids"], batch["caption_mask"]
        lab_memory = jax.tree.map(lambda x: x[:n_lab], memory)
        logits = model.decoder(*lab_memory, _shift_right(ids, bos), **kw)["logits"]
        l_sup = cross_entropy(logits, ids, cmask, label_smoothing=ls)
        m = cmask.astype(jnp.float32)
        acc = jnp.sum((logits.argmax(-1) == ids) * m) / jnp.maximum(m.sum(), 1.0)
        metrics = {"l_sup": l_sup, "token_acc": acc}
        loss = l_sup
        if w_seq > 0:
            t_ids, t_mask = cat("teacher_ids"), cat("teacher_mask")
            t_logits = model.decoder(*memory, _shift_right(t_ids, bos), **kw)["logits"]
            metrics["l_seq"] = cross_entropy(t_logits, t_ids, t_mask, label_smoothing=ls)
            loss = loss + w_seq * metrics["l_seq"]
        if kind != "none":
            if teacher is not None:
                tw, tm = (cat("teacher_wave"), cat("teacher_wave_mask")) if "teacher_wave" in batch else (wave, mask)
                t_emb = jax.lax.stop_gradient(teacher.embed(tw, tm)["pooler_output"])
            else:
                t_emb = cat("teacher_emb")
            if kind == "contra":
                ps, pt = model.contrastive_embeddings(enc["pooler_output"], t_emb.astype(jnp.float32))
                l_enc = feature_losses.effaac_contrastive(pt, ps, model.logit_scale[...])
                metrics["logit_scale"] = jnp.exp(model.logit_scale[...])
            elif kind == "mse":
                l_enc = feature_losses.mse(masked_mean(enc["last_hidden_state"], enc["mask"]), t_emb)
            else:
                raise ValueError(f"kd.enc must be contra, mse or none, got {kind!r}")
            metrics["l_enc"] = l_enc
            loss = loss + w_enc * l_enc
        return loss, metrics

    return loss_fn


def build(cfg: ml_collections.ConfigDict, workdir: str) -> Task:
    d, kd = cfg.data, cfg.kd
    if kd.enc not in ("contra", "mse", "none"):
        raise InputError(f"kd.enc must be contra, mse or none, got {kd.enc!r}")
    uses_teacher = kd.enc != "none" or float(kd.seq_weight) > 0 or cfg.student.memory == "teacher"
    if uses_teacher and cfg.teacher.kind == "none":
        raise InputError("this config distils (kd.enc or kd.seq_weight) but teacher.kind is 'none'")
    os.makedirs(workdir, exist_ok=True)
    sources, captions_of, skipped = caption_data.sources(d)
    ao_rows, ao_bad = _audio_only_rows(cfg)
    tok = build_tokenizer(cfg, [c for cs in captions_of("train") for c in cs], workdir)

    loaded = load_teacher(cfg) if uses_teacher else None
    online = loaded is not None and (bool(cfg.teacher.online) or cfg.student.memory == "teacher")
    if cfg.student.memory == "teacher" and kd.enc != "none":
        raise InputError("student.memory='teacher' reads the teacher's encoder: set kd.enc='none'")
    cache = None
    if uses_teacher and (float(kd.seq_weight) > 0 or (kd.enc != "none" and not online)):
        cdir = cache_dir(cfg)
        want = [r["id"] for r in sources["train"]] + [r["id"] for r in ao_rows]
        missing = set(want) - teacher_cache.done_ids(cdir)
        if loaded is not None and missing:
            make_teacher_cache(cfg, workdir, loaded)  # once per clip, before training
        cache = teacher_cache.read(cdir)
        cache.check(want)
    teacher = loaded[0] if loaded is not None else None
    teacher_dim = teacher.dim if teacher is not None else (cache.dim if cache is not None else 0)
    model, model_info = _build_model(cfg, tok, workdir, teacher_dim, teacher)
    with open(os.path.join(workdir, "student.json"), "w") as f:  # what captioning needs to rebuild the model
        json.dump({"teacher_dim": teacher_dim}, f)
    step_teacher = teacher.encoder() if online and cfg.student.memory != "teacher" and kd.enc != "none" else None

    length = int(round(d.clip_seconds * d.sample_rate))
    cap_len = int(d.max_caption_tokens)
    sr = int(d.sample_rate)
    tsr = step_teacher.sample_rate if step_teacher is not None else sr
    t_length = int(round(d.clip_seconds * tsr))

    def teacher_fields(clip_id: str) -> dict[str, np.ndarray]:
        if cache is None:
            return {}
        out = {}
        if float(kd.seq_weight) > 0:
            ids, lens = tokenizers.encode_captions(tok, [cache.caption(clip_id)], cap_len)
            out.update(teacher_ids=ids[0], teacher_len=lens[0])
        if step_teacher is None and kd.enc != "none":
            out["teacher_emb"] = cache.embedding(clip_id)
        return out

    def example(index, r):
        ids, lens = tokenizers.encode_captions(tok, list(r["captions"]), cap_len)
        return {"wave": np.asarray(r["wave"], np.float32), "caption_ids": ids, "caption_lens": lens,
                "index": np.int32(index), **teacher_fields(r["id"])}

    def lazy(split):
        src = sources[split]
        if isinstance(src, list):
            return grain.MapDataset.source([example(i, r) for i, r in enumerate(src)] if split == "train"
                                           else [{"wave": np.asarray(r["wave"], np.float32), "index": np.int32(i)}
                                                 for i, r in enumerate(src)])
        if split == "train":
            return grain.MapDataset.source(src).map_with_index(example)
        return grain.MapDataset.source(src).map_with_index(lambda i, r: {"wave": r["wave"], "index": np.int32(i)})

    data = {s: lazy(s) for s in caption_data.SPLITS}
    ao = [{"wave": r["wave"], **teacher_fields(r["id"])} for r in ao_rows]

    def crop(wave, rng, prefix=""):
        w, m = crop_or_pad(wave, length, rng)
        out = {prefix + "wave": w.astype(np.float32), prefix + "mask": m}
        if step_teacher is not None and tsr != sr:  # the teacher hears the same crop at its own rate
            tw, _ = crop_or_pad(_resample(w, sr, tsr), t_length)
            out[prefix + "teacher_wave"] = tw
            out[prefix + "teacher_wave_mask"] = m[np.minimum(np.arange(t_length) * sr // tsr, length - 1)]
        return out

    def teacher_mask(ex, prefix=""):
        out = {}
        if "teacher_ids" in ex:
            out = {prefix + "teacher_ids": ex["teacher_ids"],
                   prefix + "teacher_mask": (np.arange(cap_len) < ex["teacher_len"]).astype(np.int32)}
        if "teacher_emb" in ex:
            out[prefix + "teacher_emb"] = ex["teacher_emb"]
        return out

    def train_transform(ex, rng: np.random.Generator):
        j = int(rng.integers(len(ex["caption_lens"])))  # one of the references (Clotho has 5)
        out = {**crop(ex["wave"], rng), "caption_ids": ex["caption_ids"][j],
               "caption_mask": (np.arange(cap_len) < ex["caption_lens"][j]).astype(np.int32), **teacher_mask(ex)}
        if ao:
            a = ao[int(rng.integers(len(ao)))]
            out.update(crop(a["wave"], rng, "ao_"))
            out.update(teacher_mask(a, "ao_"))
        return out

    fixed = captioning.fixed_example(length)
    gen_cfg = captioning.generation(cfg.eval.generate, tok)

    def predict_fn(model, batch):
        tokens, lengths = model.caption(batch["wave"], batch["mask"], gen_cfg)
        return {"tokens": tokens, "lengths": lengths, "index": batch["index"]}

    info: dict[str, Any] = {}
    references = {s: captions_of(s) for s in ("validation", "test")}
    evaluator = captioning.evaluator(cfg, references, tok, info)
    frozen = frozen_filter(cfg)
    student = nnx.All(nnx.Param, nnx.Not(nnx.Any(*map(nnx.PathContains, (
        "external_encoder", "student_proj", "teacher_proj", "logit_scale")))))
    info.update({
        "num_examples": {s: len(v) for s, v in data.items()}, "audio_only_clips": len(ao),
        "bad_audio_skipped": len(skipped) + len(ao_bad), "bad_audio": (skipped + ao_bad)[:100],
        "student_vocab": len(tok),
        "teacher": teachers.describe(teachers.ONLINE if step_teacher is not None else
                                     teachers.IMPORTED if cfg.teacher.kind == "cache" else teachers.CACHED,
                                     cache, source=cfg.teacher.kind, dim=teacher_dim,
                                     captions_cached=cache is not None and float(kd.seq_weight) > 0),
        "student_params": int(sum(x.size for x in jax.tree.leaves(nnx.state(model, student)))),
        "kd": {"enc": kd.enc, "seq_weight": float(kd.seq_weight), "enc_weight": float(kd.enc_weight)},
        **model_info,
    })
    strip = lambda ex: {k: v for k, v in ex.items() if k != "index"}
    return Task(
        model=model, loss_fn=make_loss_fn(cfg, tok.bos_token_id), predict_fn=predict_fn,
        train_data=data["train"].map(strip),
        eval_data={"dev": data["validation"].map(fixed), "test": data["test"].map(fixed)},
        evaluate=evaluator, train_transform=train_transform, logical_axes=LOGICAL_AXES, frozen=frozen,
        teacher=step_teacher, info=info,
        batch_spec=batch_spec(cfg, teacher_dim=teacher_dim, teacher_rate=tsr, online=step_teacher is not None))


def load_trained(cfg: ml_collections.ConfigDict, workdir: str) -> tuple[EffAAC, Any]:
    """The audio-only student trained in `workdir` and its tokenizer."""
    from kdjax.train.restore import restore_trained

    tok = build_tokenizer(cfg, None, workdir)
    teacher = load_teacher(cfg)[0] if cfg.student.memory == "teacher" else None
    with open(os.path.join(workdir, "student.json")) as f:
        dim = int(json.load(f)["teacher_dim"])
    model, _ = _build_model(cfg, tok, workdir, dim, teacher)
    return restore_trained(cfg, model, frozen_filter(cfg), workdir).audio_only(), tok


def caption_files(cfg: ml_collections.ConfigDict, workdir: str, files: list[str]) -> list[tuple[str, str]]:
    """Caption audio files with the student trained in `workdir`."""
    model, tok = load_trained(cfg, workdir)
    return captioning.caption_files(cfg, model, tok, files)


def online_teacher(cfg: ml_collections.ConfigDict) -> bool:
    """Whether the step runs the teacher's audio encoder (its embeddings on the student's crop)."""
    return (cfg.teacher.kind == "multi2cap" and bool(cfg.teacher.online) and cfg.kd.enc != "none"
            and cfg.student.memory != "teacher")


def batch_spec(cfg: ml_collections.ConfigDict, teacher_dim: int | None = None, teacher_rate: int | None = None,
               online: bool | None = None) -> BatchSpec:
    """A labelled clip's crop and one reference caption; with L_seq the teacher's caption of the clip
    (`teacher_ids`/`teacher_mask`); with encoder KD from the cache its embedding (`teacher_emb`, `teacher_dim`
    wide), or with an online teacher that reads another sample rate (`teacher_rate`) the same crop at its rate
    (`teacher_wave`/`teacher_wave_mask`). With audio-only clips every example also carries one of them
    (`ao_` fields: the crop and its teacher fields, no reference caption)."""
    kd, d = cfg.kd, cfg.data
    online = online_teacher(cfg) if online is None else online
    sr, cap = int(d.sample_rate), int(d.max_caption_tokens)
    n = captioning.clip_samples(d)

    def teacher_fields(prefix: str) -> dict[str, Field]:
        out = {}
        if online and teacher_rate and int(teacher_rate) != sr:
            m = int(round(d.clip_seconds * int(teacher_rate)))
            out.update({prefix + "teacher_wave": Field((m,), np.float32),
                        prefix + "teacher_wave_mask": Field((m,), np.bool_)})
        if float(kd.seq_weight) > 0:
            out.update({prefix + "teacher_ids": Field((cap,), np.int32),
                        prefix + "teacher_mask": Field((cap,), np.int32)})
        if kd.enc != "none" and not online:
            out[prefix + "teacher_emb"] = Field((int(teacher_dim),), np.float32)
        return out

    spec = {**captioning.caption_fields(cfg), **teacher_fields("")}
    if d.audio_only_manifest:
        spec.update({"ao_wave": Field((n,), np.float32), "ao_mask": Field((n,), np.bool_), **teacher_fields("ao_")})
    return spec


def abstract_task(cfg: ml_collections.ConfigDict) -> tuple[Task, dict]:
    """The training Task with an abstract student (nnx.eval_shape; nothing is read or allocated) and the
    global batch's shapes, for `kdjax.aot`. With an online teacher (the paper's KD_contra from a Multi2Cap
    workdir) the step also runs the teacher's audio encoder, an `aot.teacher_arch` CED (Multi2Cap-base's);
    otherwise its embeddings come from the cache, in the batch. The vocabulary is `aot.vocab_size` words.
    With `data.audio_only_manifest` set, every example carries an audio-only clip too (batch_spec)."""
    from kdjax.models import ced as ced_lib

    kd, d, b = cfg.kd, cfg.data, int(cfg.train.batch_size)
    online = online_teacher(cfg)
    ced_cfg = ced_lib.CedConfig.preset(cfg.aot.teacher_arch, num_classes=0)
    teacher = nnx.eval_shape(lambda: AudioTeacher(ced_lib.CED(ced_cfg, rngs=nnx.Rngs(0)),
                                                  int(d.sample_rate))) if online else None
    dim = ced_cfg.embed_dim if kd.enc != "none" else 0
    tok = task_lib.ShapeTokenizer(int(cfg.aot.vocab_size))
    model = nnx.eval_shape(lambda: EffAAC(student_config(cfg, tok, dim), rngs=nnx.Rngs(0)))
    task = task_lib.abstract(model, make_loss_fn(cfg, tok.bos_token_id), b, logical_axes=LOGICAL_AXES,
                             frozen=frozen_filter(cfg), teacher=teacher, teacher_logical_axes=ced_lib.LOGICAL_AXES)
    spec = batch_spec(cfg, teacher_dim=dim, teacher_rate=int(d.sample_rate), online=online)
    return task, abstract_batch(spec, b)


# ----------------------------------------------------------------------------------------- checks
def validate(cfg: ml_collections.ConfigDict, c: Checks) -> None:
    from kdjax.models import ced as ced_lib
    from kdjax.models.efficientnet import VARIANTS

    captioning.validate_data(c)
    c.path("data.audio_only_manifest", "file")
    c.one_of("student.encoder", sorted(VARIANTS))
    c.path("student.encoder_checkpoint", "file")
    c.path("student.init_from", "dir", contains=("config.json",), why="a trained EffAAC workdir")
    memory = c.one_of("student.memory", ("student", "teacher"))
    c.number("student.max_words", integer=True, ge=0)
    c.number("student.min_count", integer=True, gt=0)
    for key in ("d_model", "num_heads", "ffn_dim", "num_layers"):
        c.number(f"student.decoder.{key}", integer=True, gt=0)
    c.number("student.decoder.dropout", ge=0, lt=1)
    enc = c.one_of("kd.enc", ("contra", "mse", "none"))
    c.number("kd.enc_weight", ge=0)
    seq = c.number("kd.seq_weight", ge=0)
    c.number("kd.contra_dim", integer=True, gt=0)
    c.number("kd.label_smoothing", ge=0, lt=1)
    kind = c.one_of("teacher.kind", ("multi2cap", "cache", "none"))
    distils = enc not in ("none", None) or (isinstance(seq, (int, float)) and seq > 0) or memory == "teacher"
    if distils and kind == "none":
        c.problem("teacher.kind", "'none', but the config distils (kd.enc, kd.seq_weight or student.memory="
                                  "'teacher'): name a teacher, or set --config.kd.enc=none --config.kd.seq_weight=0")
    if kind == "multi2cap" and distils:
        c.path("teacher.workdir", "dir", required=True, why="teacher.kind='multi2cap': a trained Multi2Cap workdir",
               contains=("config.json",))
    if kind == "cache" and distils:
        if c.required("teacher.cache_dir", "teacher.kind='cache': a teacher cache directory"):
            c.path("teacher.cache_dir", "dir", contains=("meta.json",))
    if memory == "teacher":
        if kind != "multi2cap":
            c.problem("student.memory", "'teacher' reads the teacher's encoder: needs teacher.kind='multi2cap'")
        if enc not in ("none", None):
            c.problem("student.memory", f"'teacher' reads the teacher's encoder: set kd.enc='none' (is {enc!r})")
    c.number("teacher.batch_size", integer=True, gt=0)
    c.number("teacher.generate.num_beams", integer=True, gt=0)
    c.subset_of("train.freeze", ("encoder", "decoder"))
    captioning.validate_eval(c)
    c.number("aot.vocab_size", integer=True, gt=0)
    c.one_of("aot.teacher_arch", tuple(ced_lib.SIZES))


class EffAACSystem(contract.System):
    name = "effaac"
    capabilities = frozenset({contract.CAPTION, contract.TEACHER_CACHE})

    def validate(self, cfg, checks):
        validate(cfg, checks)

    def batch_spec(self, cfg, **dims):
        return batch_spec(cfg, **dims)

    def build(self, cfg, workdir):
        return build(cfg, workdir)

    def abstract_task(self, cfg):
        return abstract_task(cfg)

    def caption_files(self, cfg, workdir, files):
        return caption_files(cfg, workdir, files)

    def make_teacher_cache(self, cfg, workdir):
        return make_teacher_cache(cfg, workdir)


SYSTEM = EffAACSystem()
