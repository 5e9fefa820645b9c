"""DSG-KD's teacher behind the teacher interface: what its losses read of the teacher (span-pooled hidden states
and attention rows of the domain words, `kdjax.losses.dsg_kd.teacher_*_targets`), either computed from the
frozen teacher inside the step (online) or once per training note into a cache that the input pipeline reads
(cached; `teacher.cache.enabled`). The teacher is frozen and deterministic, so both give the same losses.

Cached rows are stored without their trailing zeros (words a note does not have, keys past its length) and
padded back on reading: a few KB to a few hundred KB per note instead of the full grid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from kdjax.losses.dsg_kd import (attention_pairs, mean_heads, teacher_attention_targets, teacher_hidden_targets,
                                 word_onehot)
from kdjax.models.bert import BertConfig
from kdjax.teachers import cache as cache_lib
from kdjax.train.batch import Field

# batch fields of a cached teacher (the online teacher reads the t_* token fields instead)
HIDDEN, ATTN, COUNTS = "t_hidden", "t_attn", "t_counts"
TOKEN_FIELDS = ("t_input_ids", "t_attention_mask", "t_token_type_ids", "t_word_ids")


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the losses compare: the layer pairs, the domain words per note, how attention is aligned."""

    num_words: int
    layer_map: tuple[tuple[int, int], ...]
    alpha: float
    beta: float
    keys: str
    average_heads: bool
    teacher_width: int
    teacher_heads: int
    teacher_length: int
    form: str = "code"  # how L_hidn and L_attn are scaled (kdjax.losses.dsg_kd.layer_weights)
    ce_weight: float = 1.0  # CE's factor in L_total (0: a pre-distillation stage, the KD terms alone)

    @property
    def hidden_layers(self) -> list[int]:
        return [t for _, t in self.layer_map]

    @property
    def attn_layers(self) -> list[int]:
        return [t for _, t in attention_pairs(self.layer_map)]

    @property
    def distils(self) -> bool:
        return self.alpha > 0 or self.beta > 0

    def fields(self) -> dict[str, Field]:
        """The cached teacher's batch fields (per note, padded to the full grid)."""
        k = self.num_words
        out = {COUNTS: Field((k,), np.float32)}
        if self.alpha > 0:
            out[HIDDEN] = Field((len(self.hidden_layers), k, self.teacher_width), np.float32)
        if self.beta > 0:
            h = 1 if self.average_heads else self.teacher_heads
            x = k + 1 if self.keys == "word" else self.teacher_length
            out[ATTN] = Field((len(self.attn_layers), h, k, x), np.float32)
        return out


def plan(cfg: ml_collections.ConfigDict, lmap: list[tuple[int, int]], student: BertConfig,
         teacher: BertConfig) -> Plan:
    kd = cfg.kd
    avg = mean_heads(student.num_attention_heads, teacher.num_attention_heads, kd.attn_heads)
    return Plan(num_words=int(cfg.data.max_words), layer_map=tuple(map(tuple, lmap)), alpha=float(kd.alpha),
                beta=float(kd.beta), keys=kd.attn_keys, average_heads=avg, teacher_width=teacher.hidden_size,
                teacher_heads=teacher.num_attention_heads, teacher_length=int(cfg.data.teacher_max_length),
                form=str(kd.get("loss_form", "code")), ce_weight=float(kd.get("ce_weight", 1.0)))


def targets(teacher: nnx.Module, batch: dict[str, jax.Array], p: Plan) -> dict[str, jax.Array]:
    """The teacher's targets for a batch of encoded notes (the t_* token fields), batch first."""
    t = teacher(batch["t_input_ids"], batch["t_attention_mask"], batch["t_token_type_ids"],
                output_hidden_states=p.alpha > 0, output_attentions=p.beta > 0, deterministic=True)
    t = jax.lax.stop_gradient(t)
    out = {"counts": word_onehot(batch["t_word_ids"], p.num_words).sum(-1)}
    if p.alpha > 0:
        out["hidden"] = teacher_hidden_targets(t["hidden_states"], batch["t_word_ids"], p.num_words,
                                               p.hidden_layers)[0]
    if p.beta > 0:
        out["attn"] = teacher_attention_targets(t["attentions"], batch["t_word_ids"], p.num_words, p.attn_layers,
                                                p.keys, p.average_heads)
    return out


def from_batch(batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """The cached targets the input pipeline put in the batch, named as `targets` names them."""
    names = {COUNTS: "counts", HIDDEN: "hidden", ATTN: "attn"}
    return {names[k]: v for k, v in batch.items() if k in names}


# ------------------------------------------------------------------------------------------------ cache
def _trim(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """`a` without its trailing all-zero slices along `axes` (at least one kept): padding restores it exactly."""
    for ax in axes:
        other = tuple(i for i in range(a.ndim) if i != ax)
        nz = np.nonzero(np.any(a != 0, axis=other))[0]
        a = np.take(a, np.arange(max(int(nz[-1]) + 1 if len(nz) else 1, 1)), axis=ax)
    return a


def _pad(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return np.pad(a, [(0, s - n) for n, s in zip(a.shape, shape)])


def cache_fields(p: Plan) -> dict[str, dict]:
    k = p.num_words
    out = {COUNTS: cache_lib.field(np.float32, (k,))}
    if p.alpha > 0:
        out[HIDDEN] = cache_lib.field(np.float32, (len(p.hidden_layers), -1, p.teacher_width))
    if p.beta > 0:
        out[ATTN] = cache_lib.field(np.float32, (len(p.attn_layers), 1 if p.average_heads else p.teacher_heads, -1,
                                                 -1))
    return out


def _trained(workdir: str) -> str:
    """A trained teacher's identity: its workdir and the checkpoint read from it (a retrained teacher is another)."""
    from kdjax.train.restore import trained_checkpoint

    return f"{os.path.abspath(workdir)} @ {trained_checkpoint(workdir)}"


def fingerprint(cfg: ml_collections.ConfigDict, p: Plan, train_texts: list[str]) -> dict[str, Any]:
    """What the cached outputs depend on: the teacher, its tokenization, the notes and what is pooled."""
    t = cfg.teacher
    return {"teacher": _trained(t.workdir) if t.workdir else
            os.path.abspath(t.hf_dir) if t.hf_dir and not t.hf_dir.startswith("pkg:") else t.hf_dir
            or f"random init (seed {cfg.seed + 1}) {dict(t.init)}",
            "tokenizer": t.tokenizer, "teacher_max_length": int(cfg.data.teacher_max_length),
            "max_words": p.num_words, "domain_words": cfg.data.domain_words, "preprocess": bool(cfg.data.preprocess),
            "train_notes_sha256": hashlib.sha256("\x00".join(train_texts).encode("utf-8")).hexdigest(),
            "hidden_layers": p.hidden_layers if p.alpha > 0 else [], "attn_layers": p.attn_layers if p.beta > 0 else [],
            "keys": p.keys, "average_heads": p.average_heads}


def write_cache(cfg: ml_collections.ConfigDict, teacher: nnx.Module, examples, p: Plan, cache_dir: str,
                train_texts: list[str]) -> tuple[cache_lib.OutputCache, dict]:
    """Compute the teacher's targets of every training note once (`examples[i]` is note i, encoded), in
    fixed-shape batches; resumable. Returns the cache and what writing it took."""
    gdef, state = nnx.split(teacher)
    run = jax.jit(lambda s, b: targets(nnx.merge(gdef, s), b, p))
    size = int(cfg.teacher.cache.batch_size)

    def compute(ids: list[str]) -> list[dict]:
        rows = [examples[int(i)] for i in ids]
        rows += [rows[-1]] * (size - len(rows))  # one compiled shape: pad the last batch, drop the padding
        batch = {k: jnp.asarray(np.stack([r[k] for r in rows])) for k in TOKEN_FIELDS}
        out = jax.tree.map(np.asarray, run(state, batch))
        res = []
        for j, i in enumerate(ids):
            row = {"id": i, COUNTS: out["counts"][j]}
            if "hidden" in out:
                row[HIDDEN] = _trim(out["hidden"][j], (1,))
            if "attn" in out:
                row[ATTN] = _trim(out["attn"][j], (2, 3))
            res.append(row)
        return res

    ids = [str(i) for i in range(len(examples))]
    stats = cache_lib.fill(cache_dir, ids, compute, cache_fields(p), batch_size=size, shard_size=size * 32,
                           teacher=f"DSG-KD teacher {cfg.teacher.hf_dir or 'random init'}",
                           fingerprint=fingerprint(cfg, p, train_texts), progress="DSG-KD teacher cache")
    cache = cache_lib.OutputCache(cache_dir)
    cache.check(ids)
    return cache, stats


def cached_example(cache: cache_lib.OutputCache, p: Plan, other_note: bool = False) -> Callable[[int, dict], dict]:
    """The input pipeline's map: note i's token fields for the teacher replaced by its cached targets (with
    `other_note`, a control, those of note i + n // 2 of n)."""
    shapes = {k: f.shape for k, f in p.fields().items()}
    notes = len(cache)
    shift = notes // 2 if other_note else 0

    def add(index: int, ex: dict) -> dict:
        out = {k: v for k, v in ex.items() if k not in TOKEN_FIELDS}
        # a repeated (later-epoch) pass hands grain's running index to the map: note index % notes
        for k, v in cache.get(str((index + shift) % notes)).items():
            out[k] = _pad(v, shapes[k])
        return out

    return add
