"""distill_lm's Task: teacher and student LLaMAs, the loss (next-token CE + alpha x token-level KD), held-out
perplexity, the batch description and the abstract task for ahead-of-time compiles."""

from __future__ import annotations

import functools
import math

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from kdjax import paths, teachers
from kdjax.losses.feature import mse
from kdjax.losses.layers import layer_map
from kdjax.losses.token_kd import segment_mask, sparse_token_kd, token_cross_entropy, token_kd
from kdjax.models import llama as llama_lib
from kdjax.systems.distill_lm import data as data_lib
from kdjax.systems.distill_lm import on_policy
from kdjax.systems.distill_lm import teacher as teacher_lib
from kdjax.systems.distill_lm.models import (CACHED, STUDENT_AXES, Student, build_student, build_teacher, hidden_pairs,
                                             llama,
                                             student_overrides, teacher_in_step)
from kdjax.teachers import topk
from kdjax.train import task as task_lib
from kdjax.train.batch import BatchSpec, Field, abstract_batch
from kdjax.train.task import Task


def cached_teacher(cfg: ml_collections.ConfigDict) -> bool:
    return str(cfg.kd.source) in CACHED and float(cfg.kd.alpha) > 0


def batch_spec(cfg: ml_collections.ConfigDict) -> BatchSpec:
    """A packed row: its token ids and which sequence each token belongs to (0: padding); with a cached teacher, its
    top-k at each of the student's tokens (ids in the student's vocabulary, -1 absent) and where there is one."""
    n, k = int(cfg.data.length), int(cfg.kd.top_k)
    spec = {"input_ids": Field((n,), np.int32), "segment_ids": Field((n,), np.int32)}
    if cached_teacher(cfg):
        spec.update({topk.LOGPROBS: Field((n, k), np.float16), topk.IDS: Field((n, k), np.int32),
                     topk.REST: Field((n,), np.float16), teacher_lib.MASK: Field((n,), np.float32)})
    return spec


def _targets(ids: jax.Array, seg: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Each position's next token, and where one exists in the same sequence."""
    return jnp.concatenate([ids[:, 1:], jnp.zeros_like(ids[:, :1])], 1), segment_mask(seg)


def make_loss(kd: ml_collections.ConfigDict):
    """(student, teacher, batch, rngs) -> (CE + alpha KD + w_hidden MSE, terms). An online teacher runs in the step
    (frozen); a cached one is in the batch."""
    alpha, kind, beta = float(kd.alpha), str(kd.kind), float(kd.beta)
    temperature, chunk, rest = float(kd.temperature), int(kd.chunk_tokens), bool(kd.rest)
    w_hidden = float(kd.hidden.weight)
    op = kd.on_policy
    lam = float(op.fraction)

    def outputs(m, ids, seg, **kw):
        """(logits, None, hidden states), or with chunk_tokens (final hidden states, head matrix, ...): no (tokens x
        vocabulary) array."""
        out = m(ids, segment_ids=seg, logits=not chunk, output_hidden_states=w_hidden > 0, **kw)
        x, head = (out["logits"], None) if not chunk else (out["last_hidden_state"], m.head_kernel())
        return x, head, out.get("hidden_states")

    def loss_fn(model, teacher, batch, rngs):
        ids, seg = batch["input_ids"], batch["segment_ids"]
        x, head, hidden = outputs(model.lm, ids, seg, deterministic=False, rngs=rngs)
        targets, mask = _targets(ids, seg)
        ce = token_cross_entropy(x, targets, mask, head=head, chunk_tokens=chunk)
        terms = {"ce": ce, "tokens": mask.sum()}
        loss = ce
        if alpha > 0 and topk.IDS in batch:  # the cached teacher's top-k, at the student's tokens
            kd_mask = mask * batch[teacher_lib.MASK]
            terms["kd"] = sparse_token_kd(x, batch[topk.LOGPROBS], batch[topk.IDS], kd_mask, kind=kind, beta=beta,
                                          temperature=temperature, rest=rest, chunk_tokens=chunk, student_head=head,
                                          teacher_rest=batch[topk.REST])
            terms["kd_tokens"] = kd_mask.sum()
            loss = loss + alpha * terms["kd"]
        elif teacher is not None and (alpha > 0 or w_hidden > 0):
            t, t_head, t_hidden = outputs(teacher, ids, seg)
            if alpha > 0:
                div = dict(kind=kind, beta=beta, temperature=temperature, chunk_tokens=chunk)
                terms["kd"] = token_kd(x, t, mask, student_head=head, teacher_head=t_head, **div)
                kd_total = terms["kd"]
                if lam > 0:  # GKD: the divergence on the student's own samples, weighted lambda
                    seq, attn, counted = on_policy.sample(
                        model.lm, ids, seg, rngs.dropout(), prompt_tokens=int(op.prompt_tokens),
                        max_new_tokens=int(op.max_new_tokens), temperature=float(op.temperature),
                        eos_token_id=model.lm.cfg.eos_token_id)
                    xs, hs, predicts = on_policy.score(model.lm, seq, attn, counted, chunked=bool(chunk),
                                                       deterministic=False, rngs=rngs)
                    xt, ht, _ = on_policy.score(teacher, seq, attn, counted, chunked=bool(chunk))
                    terms["kd_on_policy"] = token_kd(xs, xt, predicts, student_head=hs, teacher_head=ht, **div)
                    terms["sampled_tokens"] = counted.sum()
                    kd_total = (1 - lam) * terms["kd"] + lam * terms["kd_on_policy"]
                loss = loss + alpha * kd_total
            if w_hidden > 0:  # every real token's mapped hidden states, projected onto the teacher's width
                pairs = layer_map(str(kd.hidden.layer_map), model.lm.cfg.num_hidden_layers,
                                  teacher.cfg.num_hidden_layers, key="kd.hidden.layer_map")
                real = (seg > 0).astype(jnp.float32)
                terms["hidden"] = sum(mse(model.project(i, hidden[si]), jax.lax.stop_gradient(
                    t_hidden[ti]).astype(jnp.float32), weights=real) for i, (si, ti) in enumerate(pairs)) / len(pairs)
                loss = loss + w_hidden * terms["hidden"]
        return loss, terms

    return loss_fn


def predict_fn(model, batch) -> dict[str, jax.Array]:
    """Per row: the summed negative log-likelihood of its next-token targets and their count (logits one row at a
    time: an evaluation batch of a large vocabulary never holds them all)."""
    lm = model.lm
    ids, seg = batch["input_ids"], batch["segment_ids"]
    h = lm(ids, segment_ids=seg, logits=False)["last_hidden_state"]
    targets, mask = _targets(ids, seg)

    def row(args):
        x, t = args
        logp = jax.nn.log_softmax(lm.project(x), -1)
        return -jnp.take_along_axis(logp, t[:, None], -1)[:, 0]

    nll = jax.lax.map(row, (h, targets))
    return {"nll": (nll * mask).sum(-1), "tokens": mask.sum(-1)}


def evaluate(preds: dict[str, np.ndarray], split: str) -> dict[str, float]:
    nll = float(np.sum(preds["nll"]) / max(float(np.sum(preds["tokens"])), 1.0))
    return {"nll": nll, "perplexity": math.exp(min(nll, 50.0))}


def build(cfg: ml_collections.ConfigDict, workdir: str) -> Task:
    d = cfg.data
    docs = data_lib.documents(d)
    texts = data_lib.split(docs, tuple(d.fractions), data_lib.split_seed(cfg))
    tok = data_lib.tokenizer(cfg, texts["train"], workdir)
    stok = data_lib.student_tokenizer(cfg, texts["train"], workdir, tok)
    in_step = teacher_in_step(cfg)
    teacher = build_teacher(cfg, tok) if in_step else None
    lazy_teacher = functools.cache(lambda: teacher if teacher is not None else build_teacher(cfg, tok))
    student = build_student(cfg, stok, teacher)
    if teacher is not None and student.lm.cfg.vocab_size != teacher.cfg.vocab_size:
        raise ValueError(f"student vocabulary {student.lm.cfg.vocab_size} != teacher's {teacher.cfg.vocab_size}: "
                         "teachers with another tokenizer are read from their top-k cache (kd.source='topk')")
    alpha = float(cfg.kd.alpha)
    extras = None
    teacher_info = teachers.describe(teachers.ONLINE, checkpoint=cfg.teacher.checkpoint or "random") \
        if in_step else {"kind": "none"}
    if bool(cfg.kd.sequence.enabled):  # sequence-level KD: the teacher's continuations join the training documents
        gen_dir = paths.join(cfg.teacher.cache.dir or workdir, "teacher_generations")
        generated, gen_stats = teacher_lib.generations(cfg, lazy_teacher, tok, texts["train"], gen_dir)
        texts["train"] = texts["train"] + generated
    if cached_teacher(cfg):  # the teacher's top-k once per training document; the step runs only the student
        cache_dir = paths.join(cfg.teacher.cache.dir or workdir, f"teacher_{cfg.kd.source}")
        cache, stats = teacher_lib.write_cache(cfg, lazy_teacher, tok, texts["train"], cache_dir)
        extras = teacher_lib.student_fields(cache, texts["train"], tok, stok)
        teacher_info = teachers.describe(teachers.CACHED, cache, stats, checkpoint=cfg.teacher.checkpoint or "random",
                                         top_k=int(cfg.kd.top_k), selection=str(cfg.kd.source),
                                         bytes_per_token=topk.bytes_per_token(
                                             int(cfg.kd.top_k)), same_tokenizer=stok is tok)
    rows = {k: data_lib.rows(stok, v, int(d.length), extras if k == "train" else None, {topk.IDS: -1})
            for k, v in texts.items()}
    info = {"corpus": data_lib.describe(d, docs), "documents": {k: len(v) for k, v in texts.items()}, "rows": {k: len(v) for k, v in rows.items()},
            "target_tokens": {k: data_lib.target_tokens(v) for k, v in rows.items()},
            "vocab": len(stok), "student": {"layers": student.lm.cfg.num_hidden_layers,
                                            "hidden": student.lm.cfg.hidden_size},
            "teacher": teacher_info,
            "kd": {"alpha": alpha, "kind": cfg.kd.kind, "temperature": float(cfg.kd.temperature),
                   "source": cfg.kd.source, "hidden_weight": float(cfg.kd.hidden.weight),
                   "hidden_pairs": hidden_pairs(cfg, student.lm.cfg.num_hidden_layers,
                                                teacher.cfg.num_hidden_layers) if teacher is not None else [],
                   "hidden_projection": student.hidden_proj is not None}}
    if bool(cfg.kd.sequence.enabled):
        info["kd"]["sequence"] = {"documents": len(generated), "written": gen_stats,
                                  "example": generated[0] if generated else ""}
    if extras is not None:
        info["kd"]["aligned_tokens"] = int(sum(r[teacher_lib.MASK].sum() for r in rows["train"]))
    return Task(model=student, loss_fn=make_loss(cfg.kd), predict_fn=predict_fn,
                train_data=grain.MapDataset.source(rows["train"]),
                eval_data={"dev": grain.MapDataset.source(rows["validation"]),
                           "test": grain.MapDataset.source(rows["test"])},
                evaluate=evaluate, logical_axes=STUDENT_AXES,
                teacher=teacher, teacher_logical_axes=llama_lib.LOGICAL_AXES, info=info,
                batch_spec=batch_spec(cfg), table_scale=1.0)


def abstract_task(cfg: ml_collections.ConfigDict) -> tuple[Task, dict]:
    """Abstract student and teacher of the configs' `random` architectures (vocabulary `aot.vocab_size`)."""
    vocab = int(cfg.aot.vocab_size)

    def student_():
        lm = llama(cfg.student.random, vocab, 0, **student_overrides(cfg))
        pairs = hidden_pairs(cfg, lm.cfg.num_hidden_layers, int(cfg.teacher.random["num_hidden_layers"]))
        return Student(lm, int(cfg.teacher.random["hidden_size"]), len(pairs), rngs=nnx.Rngs(2))

    student = nnx.eval_shape(student_)
    teacher = nnx.eval_shape(lambda: llama(cfg.teacher.random, vocab, 1))
    b = int(cfg.train.batch_size)
    online = teacher_in_step(cfg)
    task = task_lib.abstract(student, make_loss(cfg.kd), b, logical_axes=STUDENT_AXES,
                             teacher=teacher if online else None, teacher_logical_axes=llama_lib.LOGICAL_AXES)
    return task, abstract_batch(batch_spec(cfg), b)
