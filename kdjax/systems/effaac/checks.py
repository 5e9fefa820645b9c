"""EffAAC's config checks (run before any device work; see kdjax.systems.checks)."""

from __future__ import annotations

import ml_collections

from kdjax.losses.feature import CONTRA_FORMS
from kdjax.systems import captioning
from kdjax.systems.checks import Checks


def validate(cfg: ml_collections.ConfigDict, c: Checks) -> None:
    from kdjax.models import ced as ced_lib
    from kdjax.models.efficientnet import VARIANTS

    captioning.validate_data(c)
    synthetic_ao = c.get("data.source") == "synthetic" and c.number("data.synthetic.num_audio_only", integer=True,
                                                                   ge=0, default=0) not in (0, None)
    if c.path("data.audio_only_manifest", "file") or c.get("data.audio_only_manifest") or synthetic_ao:
        c.number("data.audio_only_max_seconds", gt=0)
        per_batch = c.number("data.audio_only_batch_size", integer=True, ge=0)
        if per_batch and per_batch != c.get("train.batch_size"):  # 0 keeps train.batch_size
            c.adjust("train.batch_size", per_batch,
                     f"train.batch_size: {per_batch} labelled clips per batch, each with an audio-only clip "
                     f"({per_batch} + {per_batch}, data.audio_only_batch_size; the paper's 16 + 16)")
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
    c.one_of("kd.contra_form", CONTRA_FORMS)
    c.number("kd.label_smoothing", ge=0, lt=1)
    word = c.number("kd.word.weight", ge=0, default=0.0)
    kind = c.one_of("teacher.kind", ("multi2cap", "cache", "none"))
    word = isinstance(word, (int, float)) and word > 0
    if word:
        c.number("kd.word.top_k", integer=True, gt=0)
        if kind != "multi2cap":
            c.problem("kd.word.weight", "word-level KD reads the teacher's decoder along its captions: needs "
                                        f"teacher.kind='multi2cap' (is {kind!r})")
    distils = (enc not in ("none", None) or (isinstance(seq, (int, float)) and seq > 0) or word
               or memory == "teacher")
    if distils and kind == "none":
        c.problem("teacher.kind", "'none', but the config distils (kd.enc, kd.seq_weight, kd.word.weight or "
                                  "student.memory='teacher'): name a teacher, or set --config.kd.enc=none "
                                  "--config.kd.seq_weight=0")
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
