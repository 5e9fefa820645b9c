"""distill_lm's models: the frozen teacher LLaMA, the student LLaMA and, for hidden-state KD, the student's learned
projections onto the teacher's width (one per mapped layer pair)."""

from __future__ import annotations

import logging

import ml_collections
from flax import nnx

from kdjax import assets
from kdjax.convert import from_pretrained
from kdjax.losses.layers import layer_map
from kdjax.models import llama as llama_lib
from kdjax.train.sharding import scoped

# the student LLaMA under `lm`, its projections (student width -> teacher width) under `hidden_proj`
STUDENT_AXES = (scoped("lm", llama_lib.LOGICAL_AXES), (r"^hidden_proj\.\d+\.kernel$", ("embed", None)))


class Student(nnx.Module):
    """The trainable part: the student LLaMA (`lm`, what is exported) and, when hidden-state KD is on and the widths
    differ, a linear projection of each mapped student layer's states onto the teacher's width (`hidden_proj`)."""

    def __init__(self, lm: llama_lib.LlamaForCausalLM, teacher_width: int = 0, pairs: int = 0, *,
                 rngs: nnx.Rngs | None = None):
        self.lm = lm
        d = lm.cfg.hidden_size
        self.hidden_proj = nnx.List([nnx.Linear(d, teacher_width, rngs=rngs) for _ in range(pairs)]) \
            if pairs and teacher_width != d else None

    def project(self, i: int, x):
        return x if self.hidden_proj is None else self.hidden_proj[i](x)


def llama(spec: dict, tok_or_vocab, seed: int, **over) -> llama_lib.LlamaForCausalLM:
    """A random-init LLaMA of `spec` over a tokenizer (its size and special ids) or a vocabulary size."""
    vocab = tok_or_vocab if isinstance(tok_or_vocab, int) else len(tok_or_vocab)
    ids = {} if isinstance(tok_or_vocab, int) else {"bos_token_id": tok_or_vocab.bos_token_id,
                                                    "eos_token_id": tok_or_vocab.eos_token_id,
                                                    "pad_token_id": tok_or_vocab.pad_token_id}
    return llama_lib.LlamaForCausalLM(llama_lib.LlamaConfig(**{**dict(spec), "vocab_size": vocab, **ids, **over}),
                                      rngs=nnx.Rngs(seed))


def student_overrides(cfg: ml_collections.ConfigDict) -> dict:
    s = cfg.student
    return {"dtype": s.dtype, "param_dtype": s.param_dtype, "remat": bool(s.remat), "scan_layers": bool(s.scan_layers)}


def build_student_lm(cfg: ml_collections.ConfigDict, tok) -> llama_lib.LlamaForCausalLM:
    """Random (seed), or the teacher checkpoint's first `student.from_teacher_layers` layers."""
    n = int(cfg.student.from_teacher_layers)
    if not n:
        return llama(cfg.student.random, tok, int(cfg.seed), **student_overrides(cfg))
    student = from_pretrained(assets.model_dir(cfg.teacher.checkpoint), **student_overrides(cfg))
    student.keep_layers(n)
    return student


def hidden_pairs(cfg: ml_collections.ConfigDict, student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """The (student, teacher) hidden_states index pairs of hidden-state KD (none when kd.hidden.weight is 0)."""
    h = cfg.kd.hidden
    if not float(h.weight):
        return []
    return layer_map(str(h.layer_map), student_layers, teacher_layers, key="kd.hidden.layer_map")


def build_teacher(cfg: ml_collections.ConfigDict, tok) -> llama_lib.LlamaForCausalLM:
    """The teacher from its checkpoint, or random over `tok` (seed + 1)."""
    t = cfg.teacher
    if t.checkpoint:
        return from_pretrained(assets.model_dir(t.checkpoint))
    logging.warning("teacher.checkpoint is empty: the teacher is randomly initialised (tests of the machinery)")
    return llama(t.random, tok, int(cfg.seed) + 1)


def build_student(cfg: ml_collections.ConfigDict, student_tok, teacher: llama_lib.LlamaForCausalLM | None = None
                  ) -> Student:
    """The student LLaMA over `student_tok` with the projections hidden-state KD needs (onto `teacher`'s width;
    hidden-state KD needs the teacher model)."""
    lm = build_student_lm(cfg, student_tok)
    pairs = hidden_pairs(cfg, lm.cfg.num_hidden_layers, teacher.cfg.num_hidden_layers) if teacher is not None else []
    return Student(lm, teacher.cfg.hidden_size if teacher is not None else 0, len(pairs),
                   rngs=nnx.Rngs(int(cfg.seed) + 2))


CACHED = ("topk", "sampled")  # kd.source values read from a cache of the teacher's distributions (kdjax.teachers.topk)


def teacher_in_step(cfg: ml_collections.ConfigDict) -> bool:
    """Whether the step runs the teacher: KD online, hidden-state KD or on-policy KD. A cached teacher's model is
    built only to compute what its caches lack."""
    kd = cfg.kd
    return (float(kd.alpha) > 0 and str(kd.source) not in CACHED) or float(kd.hidden.weight) > 0 or \
        (float(kd.alpha) > 0 and float(kd.on_policy.fraction) > 0)
