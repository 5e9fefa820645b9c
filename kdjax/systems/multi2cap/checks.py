"""Multi2Cap's config checks (run before any device work; see kdjax.systems.checks)."""

from __future__ import annotations

import json
import os

import ml_collections

from kdjax.data import captions as caption_data
from kdjax.models import ced as ced_lib
from kdjax.systems import captioning
from kdjax.systems import checks as checks_lib
from kdjax.systems.checks import Checks
from kdjax.train import resume_config



CFD_LOSSES = ("triplet", "smooth_l1", "mse", "info_nce", "cosine")
DTYPES = ("float32", "bfloat16", "float16")


def check_lora(c: Checks, key: str) -> None:
    for pattern in c.get(f"{key}.targets") or ():
        c.regex(f"{key}.targets", pattern)
    c.number(f"{key}.rank", integer=True, gt=0)
    c.number(f"{key}.alpha", gt=0)
    c.number(f"{key}.dropout", ge=0, lt=1)


# What decides the shapes and meaning of the parameters a pre-training stage hands to its fine-tuning stage
INIT_SAME = ("system", "audio.arch", "audio.checkpoint", "audio.depth", "audio.overrides", "audio.lora",
             "audio.train_base",
             "decoder.checkpoint", "decoder.num_layers", "decoder.lora", "qformer")


def init_from_differences(cfg: ml_collections.ConfigDict, stored: dict) -> list[str]:
    """'key: theirs -> ours' for each setting an `init_from` workdir (its config.json, `stored`) must share with this
    run: the bases, LoRA and Q-Former; a random decoder's architecture and the seed where a base is random."""
    keys = list(INIT_SAME)
    if not cfg.decoder.checkpoint:
        keys.append("decoder.random")
    if not (cfg.audio.checkpoint and cfg.decoder.checkpoint):
        keys.append("seed")  # a random frozen base is the seed's: the LoRA factors were trained on that one
    return resume_config.differences_in(stored, cfg, keys)


def validate(cfg: ml_collections.ConfigDict, c: Checks) -> None:
    init = c.path("init_from", "dir", contains=("config.json",), why="a trained Multi2Cap workdir")
    if init:
        with open(os.path.join(init, "config.json"), encoding="utf-8") as f:
            for diff in init_from_differences(cfg, json.load(f)):
                c.problem("init_from", f"{c.get('init_from')} was trained with other settings: {diff}")
    captioning.validate_data(c)
    c.number("data.image_size", integer=True, gt=0)
    arch = c.get("audio.arch") or ""
    if arch and arch not in ced_lib.SIZES:
        c.problem("audio.arch", f"{arch!r} is not one of {', '.join(ced_lib.SIZES)}")
    # a CED state dict, a directory kdjax wrote for CED, or a trained audio_tagging workdir (audio_tagging.ced_encoder)
    audio = c.path("audio.checkpoint")
    if audio and os.path.isdir(audio) and not os.path.isfile(os.path.join(audio, "config.json")):
        c.problem("audio.checkpoint", f"{audio}: a directory without config.json is neither kdjax's CED directory "
                                      "nor a kdjax audio_tagging workdir")
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
