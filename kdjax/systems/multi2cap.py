"""Multi2Cap (thesis ch. 3): LOAE's audio captioner (CED + LoRA -> Q-Former -> projector -> LLaMA + LoRA)
trained with L_total = L_cap + lambda * L_cfd, where L_cfd distils a frozen image teacher's view of the
clip's video frame into the audio encoder (thesis eq. 3.1-3.3). lambda = 0 is LOAE.

What is trained: the LoRA factors of CED and LLaMA, the Q-Former, the projector and the CFD heads. The
CED and LLaMA base weights are `Task.frozen` (outside the optimiser and the checkpoint, reloaded from
their checkpoints on resume); the image teacher is the frozen `Task.teacher`, or a feature cache.
"""

from __future__ import annotations

import dataclasses
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
from kdjax.audio.augment import AugmentConfig, augment
from kdjax.audio.io import crop_or_pad, load_audio
from kdjax.convert import from_pretrained
from kdjax.data import images as img_lib
from kdjax.data import captions as caption_data
from kdjax.data import tokenizers
from kdjax.errors import InputError
from kdjax.losses import feature as feature_losses
from kdjax.losses.classification import cross_entropy
from kdjax.metrics.captioning import CaptionTaskEvaluator, MetricConfig
from kdjax.models import ced as ced_lib
from kdjax.models import llama as llama_lib
from kdjax.models import lora
from kdjax.models import qformer as qformer_lib
from kdjax.models import resnet as resnet_lib
from kdjax.models import vit as vit_lib
from kdjax.models.generate import config_from
from kdjax.models.multi2cap import Multi2Cap, Multi2CapConfig
from kdjax.systems import captioning, contract
from kdjax.systems import checks as checks_lib
from kdjax.systems.checks import Checks
from kdjax.train import task as task_lib
from kdjax.train.batch import BatchSpec, Field, abstract_batch
from kdjax.train.task import Task

# LLaMA's patterns first: its `self_attn.q_proj` would also match CED's `attn.q_proj`.
LOGICAL_AXES = llama_lib.LOGICAL_AXES + qformer_lib.LOGICAL_AXES + ced_lib.LOGICAL_AXES
FROZEN = ("audio_encoder", "decoder")


def _lora_cfg(node) -> lora.LoraConfig:
    return lora.LoraConfig(targets=tuple(node.targets), rank=int(node.rank), alpha=float(node.alpha),
                           dropout=float(node.dropout))


def build_tokenizer(cfg: ml_collections.ConfigDict, texts: list[str] | None, workdir: str):
    """The decoder's tokenizer; a random-init decoder gets a word-level vocabulary of the training captions,
    saved in the workdir (so resuming and captioning reuse it)."""
    d = cfg.decoder
    if d.checkpoint:
        return tokenizers.load(assets.model_dir(d.checkpoint))
    out = os.path.join(workdir, "tokenizer")
    if texts is None and not os.path.isfile(os.path.join(out, "tokenizer.json")):
        raise FileNotFoundError(f"{out}: no tokenizer (train this workdir first)")
    return tokenizers.train_word_level(texts or [], out)


def build_model(cfg: ml_collections.ConfigDict, tok) -> Multi2Cap:
    rngs = nnx.Rngs(int(cfg.seed))
    a = cfg.audio
    overrides = {"num_classes": 0, "chunk_mode": a.chunk_mode, **dict(a.overrides)}
    if a.depth:
        overrides["depth"] = int(a.depth)
    if a.checkpoint:
        ced = from_pretrained(assets.resolve(a.checkpoint), arch=a.arch or None, **overrides)
    else:
        ced = ced_lib.CED(ced_lib.CedConfig.preset(a.arch, **overrides), rngs=rngs)
    d = cfg.decoder
    dec_over = {"dtype": d.dtype, "param_dtype": d.param_dtype, "remat": bool(d.remat),
                "scan_layers": bool(d.get("scan_layers", False))}
    if d.checkpoint:
        decoder = from_pretrained(assets.model_dir(d.checkpoint), **dec_over)
        if d.num_layers:  # keep the first layers only (quick experiments on small machines)
            decoder.keep_layers(int(d.num_layers))
    else:
        lc = llama_lib.LlamaConfig(**{**dict(d.random), "vocab_size": len(tok), "bos_token_id": tok.bos_token_id,
                                      "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id,
                                      **dec_over})
        decoder = llama_lib.LlamaForCausalLM(lc, rngs=rngs)
    q = cfg.qformer
    qcfg = qformer_lib.QFormerConfig(encoder_hidden_size=ced.cfg.embed_dim, **dict(q))
    qformer = qformer_lib.QFormer(qcfg, rngs=rngs)
    lora.apply(ced, _lora_cfg(a.lora), rngs)
    lora.apply(decoder, _lora_cfg(d.lora), rngs)
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    encode = lambda s: tok(s, add_special_tokens=False)["input_ids"]
    lam = float(cfg.cfd.weight)
    mcfg = Multi2CapConfig(prompt_prefix=tuple(bos + encode(cfg.prompt.prefix)),
                           prompt_suffix=tuple(encode(cfg.prompt.suffix)), audio_feature=cfg.cfd.audio_feature,
                           cfd_dim=int(cfg.cfd.dim) if lam > 0 else 0, image_dim=teacher_dim(cfg) if lam > 0 else 0,
                           share_prefix=bool(cfg.decoder.get("share_prefix", True)))
    return Multi2Cap(mcfg, ced, qformer, decoder, rngs=rngs)


def build_teacher(cfg: ml_collections.ConfigDict) -> nnx.Module | None:
    t = cfg.teacher
    if t.kind == "none" or float(cfg.cfd.weight) == 0:
        return None
    if t.checkpoint:
        return from_pretrained(assets.resolve(t.checkpoint), **({"feature": t.feature} if t.kind == "vit" else {}))
    rngs = nnx.Rngs(int(cfg.seed) + 7)
    logging.warning("teacher.checkpoint is empty: the image teacher is randomly initialised (smoke runs only)")
    if t.kind == "vit":
        return vit_lib.ViT(vit_lib.ViTConfig(image_size=int(cfg.data.image_size), feature=t.feature, **dict(t.random)),
                           rngs=rngs)
    if t.kind == "resnet":
        return resnet_lib.ResNet(resnet_lib.ResNetConfig(**dict(t.random)), rngs=rngs)
    raise ValueError(f"teacher.kind must be vit, resnet or none, got {t.kind!r}")


def teacher_dim(cfg: ml_collections.ConfigDict) -> int:
    t = cfg.teacher
    if t.checkpoint:
        from kdjax.convert.checkpoint_io import read_config

        c = read_config(assets.resolve(t.checkpoint))
        return int(c["hidden_sizes"][-1] if t.kind == "resnet" else c["hidden_size"])
    if t.kind == "vit":
        return int(dict(t.random).get("hidden_size", vit_lib.ViTConfig.hidden_size))
    return int(tuple(dict(t.random).get("hidden_sizes", resnet_lib.ResNetConfig.hidden_sizes))[-1])


def cached_image_features(cfg: ml_collections.ConfigDict, teacher: nnx.Module, examples, workdir: str
                          ) -> tuple[Any, dict]:
    """The image teacher's features of each training clip's picture (centre crop), computed once into the
    teacher interface's cache (`teacher.cache_dir`, default <workdir>/teacher_cache; resumable, refused when it
    holds another teacher's features). Returns the cache (read by example index) and what writing it took."""
    from kdjax.teachers import cache as cache_lib

    t, d = cfg.teacher, cfg.data
    out = t.cache_dir or os.path.join(workdir, "teacher_cache")
    size, b = int(d.image_size), 16
    gdef, state = nnx.split(teacher)
    run = jax.jit(lambda s, x: nnx.merge(gdef, s)(x)["features"])

    def compute(ids: list[str]) -> list[dict]:
        imgs = [img_lib.normalize(img_lib.center_crop(examples[int(i)]["image"], size)) for i in ids]
        imgs += [imgs[-1]] * (b - len(imgs))  # one compiled shape
        feats = np.asarray(run(state, jnp.asarray(np.stack(imgs))), np.float32)
        return [{"id": i, "features": feats[j]} for j, i in enumerate(ids)]

    fingerprint = {"teacher": t.checkpoint and os.path.abspath(assets.resolve(t.checkpoint))
                   or f"random init (seed {int(cfg.seed) + 7}) {t.kind} {dict(t.random)}",
                   "feature": t.feature, "image_size": size, "data": d.source,
                   "dataset": d.manifest_file or d.tfds_dir or "embedded", "train_clips": len(examples)}
    ids = [str(i) for i in range(len(examples))]
    stats = cache_lib.fill(out, ids, compute, {"features": cache_lib.field(np.float32, (teacher_dim(cfg),))},
                           batch_size=b, shard_size=b * 64, teacher=f"Multi2Cap image teacher ({t.kind})",
                           fingerprint=fingerprint, progress="image teacher cache")
    cache = cache_lib.OutputCache(out)
    cache.check(ids)
    return cache, stats


def cfd_loss(kind: str, audio: jax.Array, image: jax.Array, cfg: ml_collections.ConfigDict,
             key: jax.Array) -> jax.Array:
    """Thesis eq. 3.2 (triplet: anchor image, positive the clip's audio, negative another clip's audio) and the
    Table 3.5 alternatives."""
    if kind == "triplet":
        neg = feature_losses.pick_negatives(image, audio, cfg.negatives, key)
        return feature_losses.triplet_margin(image, audio, audio[neg], margin=float(cfg.margin))
    if kind == "smooth_l1":
        return feature_losses.smooth_l1(audio, image)
    if kind == "mse":
        return feature_losses.mse(audio, image)
    if kind == "info_nce":
        return feature_losses.info_nce(image, audio, temperature=float(cfg.temperature))
    if kind == "cosine":
        return feature_losses.cosine(audio, image)
    raise ValueError(f"unknown cfd.loss {kind!r} (triplet, smooth_l1, mse, info_nce, cosine)")


def make_loss_fn(cfg: ml_collections.ConfigDict):
    """L_total = L_cap + lambda * L_cfd (thesis eq. 3.3); L_cap is the token cross-entropy on caption tokens."""
    lam, kind = float(cfg.cfd.weight), cfg.cfd.loss

    def loss_fn(model, teacher, batch, rngs):
        out = model(batch["wave"], batch["mask"], batch["caption_ids"], batch["caption_mask"], deterministic=False,
                    rngs=rngs)
        l_cap = cross_entropy(out["logits"], batch["caption_ids"], batch["caption_mask"])
        m = batch["caption_mask"].astype(jnp.float32)
        acc = jnp.sum((out["logits"].argmax(-1) == batch["caption_ids"]) * m) / jnp.maximum(m.sum(), 1.0)
        metrics = {"l_cap": l_cap, "token_acc": acc}
        loss = l_cap
        if lam > 0:
            img = teacher(batch["image"])["features"] if teacher is not None else batch["image_features"]
            a, i = model.cfd_embeddings(out["audio_feature"], jax.lax.stop_gradient(img))
            l_cfd = cfd_loss(kind, a, i, cfg.cfd, rngs.dropout())
            metrics["l_cfd"] = l_cfd
            loss = loss + lam * l_cfd
        return loss, metrics

    return loss_fn


def uses_teacher(cfg: ml_collections.ConfigDict) -> bool:
    return float(cfg.cfd.weight) > 0 and cfg.teacher.kind != "none"


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
        model, make_loss_fn(cfg), b, logical_axes=LOGICAL_AXES, frozen=lora.frozen_filter(FROZEN), teacher=teacher,
        teacher_logical_axes=vit_lib.LOGICAL_AXES if cfg.teacher.kind == "vit" else resnet_lib.LOGICAL_AXES)
    return task, abstract_batch(batch_spec(cfg), b)


def build(cfg: ml_collections.ConfigDict, workdir: str) -> Task:
    d = cfg.data
    sources, captions_of, skipped = caption_data.sources(cfg.data)
    tok = build_tokenizer(cfg, None if cfg.decoder.checkpoint else [c for cs in captions_of("train") for c in cs],
                          workdir)
    model = build_model(cfg, tok)
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
    references = {s: captions_of(s) for s in ("validation", "test")}
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

    def train_transform(ex, rng: np.random.Generator):
        wave = ex["wave"]
        if aug_cfg is not None:
            wave, _ = augment(wave, rng, aug_cfg, crop_to=length)
        wave, mask = crop_or_pad(wave, length, rng)
        j = int(rng.integers(len(ex["caption_lens"])))  # one of the references (Clotho has 5)
        out = {"wave": wave.astype(np.float32), "mask": mask, "caption_ids": ex["caption_ids"][j],
               "caption_mask": (np.arange(cap_len) < ex["caption_lens"][j]).astype(np.int32)}
        if "image" in ex:
            out["image"] = img_lib.normalize(img_lib.random_resized_crop(ex["image"], rng, image_size))
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
    evaluator = captioning.evaluator(cfg, references, tok, info)
    strip = lambda ex: {k: v for k, v in ex.items() if k != "index"}
    info.update({
        "num_examples": {s: len(v) for s, v in data.items()}, "bad_audio_skipped": len(skipped),
        "data_source": d.source,
        "bad_audio": skipped[:100], "clip_samples": length, "decoder_vocab": len(tok),
        "prompt_tokens": [len(model.cfg.prompt_prefix), len(model.cfg.prompt_suffix)],
        "trainable_params": int(sum(x.size for x in jax.tree.leaves(
            nnx.split(model, lora.frozen_filter(FROZEN), nnx.Param, ...)[2]))),
        "lora_params": lora.count(model), "teacher": teacher_info,
    })
    return Task(
        model=model, loss_fn=loss_fn, predict_fn=predict_fn, train_data=data["train"].map(strip),
        eval_data={"dev": data["validation"].map(fixed), "test": data["test"].map(fixed)},
        evaluate=evaluator, train_transform=train_transform, logical_axes=LOGICAL_AXES,
        frozen=lora.frozen_filter(FROZEN), teacher=teacher,
        teacher_logical_axes=vit_lib.LOGICAL_AXES if cfg.teacher.kind == "vit" else resnet_lib.LOGICAL_AXES,
        info=info, batch_spec=batch_spec(cfg))


def load_trained(cfg: ml_collections.ConfigDict, workdir: str) -> tuple[Multi2Cap, Any]:
    """The audio-only captioner trained in `workdir` (best parameters if kept, else the latest) and its
    tokenizer."""
    from kdjax.train.restore import restore_trained

    tok = build_tokenizer(cfg, None, workdir)
    return restore_trained(cfg, build_model(cfg, tok), lora.frozen_filter(FROZEN), workdir).audio_only(), tok


def caption_files(cfg: ml_collections.ConfigDict, workdir: str, files: list[str]) -> list[tuple[str, str]]:
    """Caption audio files with the trained model in `workdir` (best parameters if kept, else the latest)."""
    model, tok = load_trained(cfg, workdir)
    return captioning.caption_files(cfg, model, tok, files)


# ----------------------------------------------------------------------------------------- checks
CFD_LOSSES = ("triplet", "smooth_l1", "mse", "info_nce", "cosine")
DTYPES = ("float32", "bfloat16", "float16")


def check_lora(c: Checks, key: str) -> None:
    for pattern in c.get(f"{key}.targets") or ():
        c.regex(f"{key}.targets", pattern)
    c.number(f"{key}.rank", integer=True, gt=0)
    c.number(f"{key}.alpha", gt=0)
    c.number(f"{key}.dropout", ge=0, lt=1)


def validate(cfg: ml_collections.ConfigDict, c: Checks) -> None:
    captioning.validate_data(c)
    c.number("data.image_size", integer=True, gt=0)
    arch = c.get("audio.arch") or ""
    if arch and arch not in ced_lib.SIZES:
        c.problem("audio.arch", f"{arch!r} is not one of {', '.join(ced_lib.SIZES)}")
    c.path("audio.checkpoint", "file")
    c.one_of("audio.chunk_mode", ("mean", "concat"))
    c.number("audio.depth", integer=True, ge=0)
    check_lora(c, "audio.lora")
    c.path("decoder.checkpoint")
    c.one_of("decoder.dtype", DTYPES)
    c.one_of("decoder.param_dtype", DTYPES)
    c.number("decoder.num_layers", integer=True, ge=0)
    check_lora(c, "decoder.lora")
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "num_query_tokens",
                "window"):
        c.number(f"qformer.{key}", integer=True, gt=0)
    kind = c.one_of("teacher.kind", ("vit", "resnet", "none"))
    c.path("teacher.checkpoint", "dir", contains=("config.json",))
    c.one_of("teacher.feature", ("cls", "pooler", "mean"))
    lam = c.number("cfd.weight", ge=0)
    c.one_of("cfd.loss", CFD_LOSSES)
    c.one_of("cfd.negatives", ("roll", "random", "hardest"))
    c.one_of("cfd.audio_feature", ("encoder_mean", "qformer_mean"))
    c.number("cfd.dim", integer=True, gt=0)
    c.number("cfd.margin", ge=0)
    c.number("cfd.temperature", gt=0)
    if isinstance(lam, (int, float)) and lam > 0:
        if kind == "none":
            c.problem("cfd.weight", f"lambda = {lam} distils from an image teacher but teacher.kind is 'none' (set "
                                    "--config.cfd.weight=0 for LOAE, or a teacher)")
        elif c.paths:
            why = caption_data.train_images(cfg.data)
            if why:
                c.problem("cfd.weight", f"lambda = {lam} needs a picture of every training clip: {why} (set "
                                        "--config.cfd.weight=0 --config.teacher.kind=none on a dataset without images)")
    checks_lib.augment(c)
    captioning.validate_eval(c)
    c.number("aot.vocab_size", integer=True, gt=0)


class Multi2CapSystem(contract.System):
    name = "multi2cap"
    capabilities = frozenset({contract.CAPTION})

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


SYSTEM = Multi2CapSystem()
