"""EffAAC's Task: build (teacher, student, pipeline, loss, evaluation), the batch description, the abstract task
for ahead-of-time compiles, and captioning with a trained workdir."""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from kdjax import paths, teachers
from kdjax.data import captions as caption_data
from kdjax.data import teacher_cache
from kdjax.errors import InputError
from kdjax.models import caption_decoder
from kdjax.models.effaac import EffAAC
from kdjax.systems import captioning
from kdjax.systems.effaac import pipeline, word_kd
from kdjax.systems.effaac.loss import make_loss_fn
from kdjax.systems.effaac.student import build_model, build_tokenizer, frozen_filter, load_trained, student_config
from kdjax.systems.effaac.teacher import AudioTeacher, cache_dir, load_teacher, make_teacher_cache, online_teacher
from kdjax.train import task as task_lib
from kdjax.train.batch import BatchSpec, Field, abstract_batch
from kdjax.train.task import Task

LOGICAL_AXES = caption_decoder.LOGICAL_AXES


def build(cfg: ml_collections.ConfigDict, workdir: str) -> Task:
    d, kd = cfg.data, cfg.kd
    if kd.enc not in ("contra", "mse", "none"):
        raise InputError(f"kd.enc must be contra, mse or none, got {kd.enc!r}")
    uses_teacher = (kd.enc != "none" or float(kd.seq_weight) > 0 or word_kd.enabled(cfg)
                    or cfg.student.memory == "teacher")
    if uses_teacher and cfg.teacher.kind == "none":
        raise InputError("this config distils (kd.enc or kd.seq_weight) but teacher.kind is 'none'")
    os.makedirs(workdir, exist_ok=True)
    sources, items_of, skipped = caption_data.sources(d)
    ao_rows, ao_bad = pipeline.audio_only_rows(cfg)
    tok = build_tokenizer(cfg, [c for r in items_of("train") for c in r["captions"]], workdir)

    loaded = load_teacher(cfg) if uses_teacher else None
    online = loaded is not None and (bool(cfg.teacher.online) or cfg.student.memory == "teacher")
    if cfg.student.memory == "teacher" and kd.enc != "none":
        raise InputError("student.memory='teacher' reads the teacher's encoder: set kd.enc='none'")
    cache, word = None, None
    if uses_teacher and (float(kd.seq_weight) > 0 or word_kd.enabled(cfg) or (kd.enc != "none" and not online)):
        cdir = cache_dir(cfg)
        want = [r["id"] for r in sources["train"]] + [r["id"] for r in ao_rows]
        missing = set(want) - teacher_cache.done_ids(cdir)
        if word_kd.enabled(cfg):
            missing |= set(want) - teacher_cache.done_ids(word_kd.cache_dir(cfg, cdir))
        if loaded is not None and missing:
            make_teacher_cache(cfg, workdir, loaded)  # once per clip, before training
        cache = teacher_cache.read(cdir)
        cache.check(want)
        if word_kd.enabled(cfg):
            if loaded is None:  # the config checks say so too; build() may be called without them
                raise InputError("kd.word.weight > 0 needs the teacher's decoder and tokenizer: "
                                 f"teacher.kind='multi2cap' (is {cfg.teacher.kind!r})")
            word = word_kd.Aligner(word_kd.cache_dir(cfg, cdir), loaded[1], tok, int(d.max_caption_tokens))
            word.cache.check(want)
    teacher = loaded[0] if loaded is not None else None
    teacher_dim = teacher.dim if teacher is not None else (cache.dim if cache is not None else 0)
    model, model_info = build_model(cfg, tok, workdir, teacher_dim, teacher)
    # what captioning needs to rebuild the model
    paths.write_text(paths.join(workdir, "student.json"), json.dumps({"teacher_dim": teacher_dim}))
    step_teacher = teacher.encoder() if online and cfg.student.memory != "teacher" and kd.enc != "none" else None

    length = int(round(d.clip_seconds * d.sample_rate))
    tsr = step_teacher.sample_rate if step_teacher is not None else int(d.sample_rate)
    pipe = pipeline.Pipeline(cfg, tok, sources, ao_rows, cache, tsr if step_teacher is not None else None, word)
    data, ao = pipe.data, pipe.ao

    fixed = captioning.fixed_example(length)
    gen_cfg = captioning.generation(cfg.eval.generate, tok)

    def predict_fn(model, batch):
        tokens, lengths = model.caption(batch["wave"], batch["mask"], gen_cfg)
        return {"tokens": tokens, "lengths": lengths, "index": batch["index"]}

    info: dict[str, Any] = {}
    items = {s: items_of(s) for s in ("validation", "test")}
    evaluator, prediction_rows = captioning.evaluator(cfg, items, tok, info)
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
        "kd": {"enc": kd.enc, "seq_weight": float(kd.seq_weight), "enc_weight": float(kd.enc_weight),
               **({"contra_form": kd.contra_form} if kd.enc == "contra" else {}),
               **({"word": {"weight": float(kd.word.weight), "top_k": word.k, "cache": word.cache.dir,
                            **word.stats(cache.caption, want)}} if word is not None else {})},
        **model_info,
    })
    return Task(
        model=model, loss_fn=make_loss_fn(cfg, tok.bos_token_id), predict_fn=predict_fn,
        train_data=pipe.train(),
        eval_data={"dev": data["validation"].map(fixed), "test": data["test"].map(fixed)},
        evaluate=evaluator, prediction_rows=prediction_rows, train_transform=pipe.train_transform,
        logical_axes=LOGICAL_AXES, frozen=frozen,
        teacher=step_teacher, info=info,
        batch_spec=batch_spec(cfg, teacher_dim=teacher_dim, teacher_rate=tsr, online=step_teacher is not None))


def predictor(cfg: ml_collections.ConfigDict, workdir: str):
    """--mode=caption: captions of audio files by the captioner trained in `workdir` (kdjax.systems.inference)."""
    from kdjax.systems import inference

    model, tok = load_trained(cfg, workdir)
    return inference.caption_predictor(cfg, model, tok)


def cost_model(cfg: ml_collections.ConfigDict) -> tuple[EffAAC, Any]:
    """The EffNet-Trm student the config builds, as deployed (no contrastive heads), for `--mode=cost`: random
    weights and an `aot.vocab_size`-word vocabulary (what it costs does not depend on the weights' values, so no
    trained workdir, teacher or data is read)."""
    if cfg.student.memory == "teacher":
        raise InputError("student.memory='teacher' runs the teacher's encoder under the decoder (Table 1, row 2); "
                         "--mode=cost measures the EffNet-Trm student: set student.memory='student'")
    from kdjax.models import ced as ced_lib

    tok = task_lib.ShapeTokenizer(int(cfg.aot.vocab_size))
    dim = ced_lib.CedConfig.preset(cfg.aot.teacher_arch).embed_dim
    return EffAAC(student_config(cfg, tok, dim), rngs=nnx.Rngs(int(cfg.seed))).audio_only(), tok


def batch_spec(cfg: ml_collections.ConfigDict, teacher_dim: int | None = None, teacher_rate: int | None = None,
               online: bool | None = None) -> BatchSpec:
    """A labelled clip's crop and one reference caption; with L_seq the teacher's caption of the clip
    (`teacher_ids`/`teacher_mask`), with word-level KD also the teacher's top-k along it moved to the student's words
    (`word_*`, kdjax.systems.effaac.word_kd); with encoder KD from the cache its embedding (`teacher_emb`, `teacher_dim`
    wide), or with an online teacher that reads another sample rate (`teacher_rate`) the same crop at its rate
    (`teacher_wave`/`teacher_wave_mask`). With audio-only clips every example also carries one of them
    (`ao_` fields: the crop and its teacher fields, no reference caption)."""
    kd, d = cfg.kd, cfg.data
    online = online_teacher(cfg) if online is None else online
    if teacher_dim is None:  # the configured teacher architecture's width (what an abstract compile builds)
        from kdjax.models import ced as ced_lib

        teacher_dim = ced_lib.CedConfig.preset(cfg.aot.teacher_arch).embed_dim
    sr, cap = int(d.sample_rate), int(d.max_caption_tokens)
    n = captioning.clip_samples(d)

    def teacher_fields(prefix: str) -> dict[str, Field]:
        out = {}
        if online and teacher_rate and int(teacher_rate) != sr:
            m = int(round(d.clip_seconds * int(teacher_rate)))
            out.update({prefix + "teacher_wave": Field((m,), np.float32),
                        prefix + "teacher_wave_mask": Field((m,), np.bool_)})
        if float(kd.seq_weight) > 0 or word_kd.enabled(cfg):
            out.update({prefix + "teacher_ids": Field((cap,), np.int32),
                        prefix + "teacher_mask": Field((cap,), np.int32)})
        if word_kd.enabled(cfg):
            k = int(kd.word.top_k)
            out.update({prefix + "word_logprobs": Field((cap, k), np.float32),
                        prefix + "word_ids": Field((cap, k), np.int32),
                        prefix + "word_rest": Field((cap,), np.float32),
                        prefix + "word_mask": Field((cap,), np.float32)})
        if kd.enc != "none" and not online:
            out[prefix + "teacher_emb"] = Field((int(teacher_dim),), np.float32)
        return out

    spec = {**captioning.caption_fields(cfg), **teacher_fields("")}
    if pipeline.uses_audio_only(cfg):
        spec.update({"ao_wave": Field((n,), np.float32), "ao_mask": Field((n,), np.bool_), **teacher_fields("ao_")})
    return spec


def abstract_task(cfg: ml_collections.ConfigDict) -> tuple[Task, dict]:
    """The training Task with an abstract student (nnx.eval_shape; nothing is read or allocated) and the
    global batch's shapes, for `kdjax.aot`. With an online teacher (the paper's KD_contra from a Multi2Cap
    workdir) the step also runs the teacher's audio encoder, an `aot.teacher_arch` CED (Multi2Cap-base's);
    otherwise its embeddings come from the cache, in the batch. The vocabulary is `aot.vocab_size` words.
    With audio-only clips (`pipeline.uses_audio_only`), every example carries an audio-only clip too (batch_spec)."""
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
