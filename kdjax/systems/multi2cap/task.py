"""Multi2Cap's Task: build, the batch description, the abstract task for ahead-of-time compiles, and captioning
with a trained workdir."""

from __future__ import annotations

import logging
from typing import Any

import grain
import jax
import ml_collections
import numpy as np
from flax import nnx

from kdjax import teachers
from kdjax.audio.augment import AugmentConfig, augment
from kdjax.audio.io import crop_or_pad
from kdjax.data import captions as caption_data
from kdjax.data import images as img_lib
from kdjax.data import tokenizers
from kdjax.errors import InputError
from kdjax.models import lora
from kdjax.models import resnet as resnet_lib
from kdjax.models import vit as vit_lib
from kdjax.models.multi2cap import Multi2Cap
from kdjax.systems import captioning

from kdjax.systems.multi2cap.loss import make_loss_fn
from kdjax.systems.multi2cap.models import (LOGICAL_AXES, build_model, build_teacher, build_tokenizer, frozen,
                                            teacher_dim, teacher_normalization)
from kdjax.systems.multi2cap.teacher import cached_image_features, uses_teacher
from kdjax.train import task as task_lib
from kdjax.train.batch import BatchSpec, Field, abstract_batch
from kdjax.train.restore import init_params, read_params
from kdjax.train.task import Task


def batch_spec(cfg: ml_collections.ConfigDict, image_dim: int | None = None) -> BatchSpec:
    """A clip's crop and one reference caption; with CFD also the clip's picture (random-resized crop,
    normalised) for the image teacher in the step, or, with `teacher.cache`, the teacher's feature of it
    (`image_dim` wide: the teacher's width)."""
    spec = captioning.caption_fields(cfg)
    if uses_teacher(cfg):
        if cfg.teacher.cache:
            spec["image_features"] = Field((image_dim or teacher_dim(cfg),), np.float32)
        else:
            s = int(cfg.data.image_size)
            spec["image"] = Field((s, s, 3), np.float32)
    return spec


def abstract_task(cfg: ml_collections.ConfigDict) -> tuple[Task, dict]:
    """The training Task with abstract models (nnx.eval_shape: no weights are read or allocated; the
    architectures come from the `random` specs and presets) and the global batch's shapes: what
    `Trainer(..., abstract=True)` compiles for a target topology. The decoder's vocabulary is
    `aot.vocab_size` (a tokenizer is not read)."""
    cfg = ml_collections.ConfigDict(cfg.to_dict())
    for node in (cfg.audio, cfg.decoder, cfg.teacher):
        node.checkpoint = ""
    tok = task_lib.ShapeTokenizer(int(cfg.aot.vocab_size))
    model = nnx.eval_shape(lambda: build_model(cfg, tok))
    teacher = nnx.eval_shape(lambda: build_teacher(cfg)) if uses_teacher(cfg) and not cfg.teacher.cache else None
    b = int(cfg.train.batch_size)
    task = task_lib.abstract(
        model, make_loss_fn(cfg), b, logical_axes=LOGICAL_AXES, frozen=lora.frozen_filter(frozen(cfg)), teacher=teacher,
        teacher_logical_axes=vit_lib.LOGICAL_AXES if cfg.teacher.kind == "vit" else resnet_lib.LOGICAL_AXES)
    return task, abstract_batch(batch_spec(cfg), b)


def build(cfg: ml_collections.ConfigDict, workdir: str) -> Task:
    d = cfg.data
    sources, items_of, skipped = caption_data.sources(cfg.data)
    train_texts = [c for r in items_of("train") for c in r["captions"]]
    tok = build_tokenizer(cfg, None if cfg.decoder.checkpoint else train_texts,
                          workdir)
    model = build_model(cfg, tok)
    init_info = init_from(cfg, model)
    teacher = build_teacher(cfg)
    lam = float(cfg.cfd.weight)
    length = int(round(d.clip_seconds * d.sample_rate))
    cap_len = int(d.max_caption_tokens)
    use_images = lam > 0
    keep_side = int(d.image_size) * 8 // 7

    def example(split):
        def make(index, r):
            ids, lens = tokenizers.encode_captions(tok, list(r["captions"]), cap_len)
            ex = {"wave": np.asarray(r["wave"], np.float32), "caption_ids": ids, "caption_lens": lens,
                  "index": np.int32(index)}
            if use_images and split == "train":
                img = r.get("image")
                if img is None and r.get("image_path"):
                    img = img_lib.load_rgb(r["image_path"])
                if img is None:
                    raise InputError(f"{r['id']}: CFD (cfd.weight > 0) needs an image for every training clip")
                ex["image"] = img_lib.center_crop(img, keep_side)
            return ex
        return make

    data = {s: grain.MapDataset.source(src).map_with_index(example(s)) if not isinstance(src, list)
            else grain.MapDataset.source([example(s)(i, r) for i, r in enumerate(src)]) for s, src in sources.items()}
    items = {s: items_of(s) for s in ("validation", "test")}
    teacher_info = teachers.describe(teachers.ONLINE) if teacher is not None else None
    if teacher is not None and cfg.teacher.cache:  # features once per clip; no image model in the step
        train = data["train"]
        cache, stats = cached_image_features(cfg, teacher, train, workdir)
        data["train"] = train.map_with_index(
            lambda i, ex: {**{k: v for k, v in ex.items() if k != "image"},
                           "image_features": cache.get(str(i))["features"]})
        teacher, teacher_info = None, teachers.describe(teachers.CACHED, cache, stats)

    aug_cfg = AugmentConfig.from_config(cfg.augment.ops) if cfg.augment.enabled else None
    image_size = int(d.image_size)
    image_stats = teacher_normalization(cfg)

    def train_transform(ex, rng: np.random.Generator):
        wave = ex["wave"]
        if aug_cfg is not None:
            wave, _ = augment(wave, rng, aug_cfg, crop_to=length)
        wave, mask = crop_or_pad(wave, length, rng)
        j = int(rng.integers(len(ex["caption_lens"])))  # one of the references (Clotho has 5)
        out = {"wave": wave.astype(np.float32), "mask": mask, "caption_ids": ex["caption_ids"][j],
               "caption_mask": (np.arange(cap_len) < ex["caption_lens"][j]).astype(np.int32)}
        if "image" in ex:
            crop = img_lib.random_resized_crop(ex["image"], rng, image_size)
            out["image"] = img_lib.normalize(crop, *image_stats)
        if "image_features" in ex:
            out["image_features"] = ex["image_features"]
        return out

    fixed = captioning.fixed_example(length)
    gen_cfg = captioning.generation(cfg.eval.generate, tok)
    loss_fn = make_loss_fn(cfg)

    def predict_fn(model, batch):
        tokens, lengths = model.caption(batch["wave"], batch["mask"], gen_cfg)
        return {"tokens": tokens, "lengths": lengths, "index": batch["index"]}

    info: dict[str, Any] = {}
    evaluator, prediction_rows = captioning.evaluator(cfg, items, tok, info)
    strip = lambda ex: {k: v for k, v in ex.items() if k != "index"}
    info.update({
        "num_examples": {s: len(v) for s, v in data.items()}, "bad_audio_skipped": len(skipped),
        "data_source": d.source,
        "bad_audio": skipped[:100], "clip_samples": length, "decoder_vocab": len(tok),
        "prompt_tokens": [len(model.cfg.prompt_prefix), len(model.cfg.prompt_suffix)],
        "trainable_params": int(sum(x.size for x in jax.tree.leaves(
            nnx.split(model, lora.frozen_filter(frozen(cfg)), nnx.Param, ...)[2]))),
        "lora_params": lora.count(model), "teacher": teacher_info, "init_from": init_info,
        "image_normalization": ({"mean": image_stats[0].tolist(), "std": image_stats[1].tolist(),
                                 "rescale": image_stats[2]} if use_images else None),
    })
    return Task(
        model=model, loss_fn=loss_fn, predict_fn=predict_fn, train_data=data["train"].map(strip),
        eval_data={"dev": data["validation"].map(fixed), "test": data["test"].map(fixed)},
        evaluate=evaluator, prediction_rows=prediction_rows, train_transform=train_transform, logical_axes=LOGICAL_AXES,
        frozen=lora.frozen_filter(frozen(cfg)), teacher=teacher,
        teacher_logical_axes=vit_lib.LOGICAL_AXES if cfg.teacher.kind == "vit" else resnet_lib.LOGICAL_AXES,
        info=info, batch_spec=batch_spec(cfg))


def init_from(cfg: ml_collections.ConfigDict, model: Multi2Cap) -> dict[str, Any] | None:
    """The fine-tuning stage: `model`'s trained parameters (LoRA factors, Q-Former, projector) from the pre-training
    workdir `cfg.init_from`; the frozen bases are already the checkpoints', the optimiser starts afresh."""
    if not cfg.get("init_from"):
        return None
    params, source = read_params(cfg.init_from)
    trainable = nnx.All(nnx.Param, nnx.Not(lora.frozen_filter(frozen(cfg))))
    unused = init_params(model, trainable, params, source)
    logging.info("initialised %d parameter arrays from %s%s", len(params) - len(unused), source,
                 f" (not used: {', '.join(unused)})" if unused else "")
    return {"checkpoint": source, "arrays": len(params) - len(unused), "unused": unused}


def load_trained(cfg: ml_collections.ConfigDict, workdir: str) -> tuple[Multi2Cap, Any]:
    """The audio-only captioner trained in `workdir` (best parameters if kept, else the latest) and its
    tokenizer."""
    from kdjax.train.restore import restore_trained

    tok = build_tokenizer(cfg, None, workdir)
    return restore_trained(cfg, build_model(cfg, tok), lora.frozen_filter(frozen(cfg)), workdir).audio_only(), tok


def predictor(cfg: ml_collections.ConfigDict, workdir: str):
    """--mode=caption: captions of audio files by the captioner trained in `workdir` (kdjax.systems.inference)."""
    from kdjax.systems import inference

    model, tok = load_trained(cfg, workdir)
    return inference.caption_predictor(cfg, model, tok)


def cost_model(cfg: ml_collections.ConfigDict) -> tuple[Multi2Cap, Any]:
    """The audio-only captioner the config builds, for `--mode=cost`: the CED and LLaMA from their checkpoints
    where the config names them (their architectures), random where it does not; the vocabulary is the decoder
    checkpoint's or `aot.vocab_size` words. What it costs does not depend on the weights' values, so no trained
    workdir or data is read."""
    tok = build_tokenizer(cfg, None, "") if cfg.decoder.checkpoint else task_lib.ShapeTokenizer(int(cfg.aot.vocab_size))
    return build_model(cfg, tok).audio_only(), tok
