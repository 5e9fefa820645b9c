"""EffAAC's student: its word vocabulary, the EffNet-Trm model (with the AudioSet EfficientNet checkpoint, a
decoder copied from another workdir or the teacher's encoder as memory: Table 1), the frozen halves, and the
student trained in a workdir."""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections
from flax import nnx

from kdjax import assets, paths
from kdjax.convert import load_efficientnet
from kdjax.convert.checkpoint_io import LazyTensors
from kdjax.data import tokenizers
from kdjax.errors import InputError
from kdjax.models.caption_decoder import CaptionDecoderConfig
from kdjax.models.effaac import EffAAC, EffAACConfig, FrontEndConfig
from kdjax.models.efficientnet import EfficientNetConfig
from kdjax.models.state import flatten, map_with_path, path_str
from kdjax.systems.effaac.teacher import Multi2CapTeacher, load_teacher
from kdjax.train.restore import workdir_config


def build_tokenizer(cfg: ml_collections.ConfigDict, texts: list[str] | None, workdir: str):
    """The student's word vocabulary from the training captions (saved in the workdir; reused on resume).
    With student.init_from, the initialising workdir's vocabulary (its decoder's rows)."""
    if cfg.student.init_from:
        return tokenizers.load(os.path.join(cfg.student.init_from, "tokenizer"))
    out = paths.join(workdir, "tokenizer")
    if texts is None and not paths.isfile(paths.join(out, "tokenizer.json")):
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


def copy_decoder(model: EffAAC, workdir: str) -> None:
    """Initialise `model.decoder` (all but memory_proj, which faces a new encoder) from a trained EffAAC
    workdir (Table 1, row 3)."""
    src, _ = load_trained(workdir_config(workdir), workdir)
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


def build_model(cfg: ml_collections.ConfigDict, tok, workdir: str, teacher_dim: int | None = None,
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
        copy_decoder(model, s.init_from)
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


def load_trained(cfg: ml_collections.ConfigDict, workdir: str) -> tuple[EffAAC, Any]:
    """The audio-only student trained in `workdir` and its tokenizer."""
    from kdjax.train.restore import restore_trained

    tok = build_tokenizer(cfg, None, workdir)
    teacher = load_teacher(cfg)[0] if cfg.student.memory == "teacher" else None
    dim = int(json.loads(paths.read_text(paths.join(workdir, "student.json")))["teacher_dim"])
    model, _ = build_model(cfg, tok, workdir, dim, teacher)
    return restore_trained(cfg, model, frozen_filter(cfg), workdir).audio_only(), tok
