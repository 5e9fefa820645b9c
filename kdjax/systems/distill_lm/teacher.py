"""distill_lm's cached teacher outputs, computed once per training document on issue 9's cache:

- top-k (`kd.source='topk'`): the teacher's top-k next-token log-probabilities (`kdjax.teachers.topk`), moved to the
  student's tokens, so the step runs only the student and the teacher may use another tokenizer; or, in the same
  form, k draws from its distribution (`kd.source='sampled'`: the distinct tokens drawn and their frequencies);
- generations (`kd.sequence`): sequence-level KD (Kim & Rush 2016): the teacher continues each document's opening
  and the continuation, as text, becomes one more training document (in any student tokenizer).

The teacher reads each document as its own tokenizer encodes it (BOS, tokens, EOS), in windows of `data.length`
tokens from the document's start: with a shared tokenizer these are exactly the pieces packing cuts, so the cached
loss is the online one up to the top-k and float16. A window's last position and the document's last predict
nothing the teacher has seen (id -1). With two tokenizers the top-k is moved to the student's tokens by
`kdjax.data.token_alignment` (positions where both tokenizations start the same span; the teacher's tokens mapped to
the student's vocabulary by text).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from kdjax.data import packing, token_alignment
from kdjax.teachers import cache as cache_lib
from kdjax.teachers import topk

MASK = "topk_mask"


def encode(tok, text: str) -> tuple[np.ndarray, np.ndarray]:
    """A document's ids (BOS and EOS where the tokenizer has them, as `data.encode`) and their character offsets
    ((0, 0) for BOS and EOS)."""
    e = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
    ids = np.asarray(bos + list(e["input_ids"]) + eos, np.int64)
    offsets = np.zeros((len(ids), 2), np.int64)
    offsets[len(bos):len(bos) + len(e["input_ids"])] = np.asarray(e["offset_mapping"]).reshape(-1, 2)
    return ids, offsets


def fingerprint(cfg: ml_collections.ConfigDict, texts: list[str]) -> dict[str, Any]:
    t = cfg.teacher
    ck = t.checkpoint
    return {"teacher": os.path.abspath(ck) if ck and "://" not in ck and not ck.startswith("pkg:") else ck
            or f"random init (seed {int(cfg.seed) + 1}) {dict(t.random)}",
            "tokenizer": cfg.tokenizer, "window": int(cfg.data.length),
            "documents_sha256": hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()}


def _runner(teacher_fn: Callable[[], nnx.Module], make: Callable):
    """`make(graphdef, state)` -> a jitted function of (state, ...), built with the teacher on first use: a cache that
    is already complete never loads the teacher."""
    built: list = []

    def call(*args):
        if not built:
            gdef, state = nnx.split(teacher_fn())
            built.append((make(gdef), state))
        fn, state = built[0]
        return fn(state, *args)

    return call


def write_cache(cfg: ml_collections.ConfigDict, teacher_fn: Callable[[], nnx.Module], tok, texts: list[str],
                cache_dir: str) -> tuple[cache_lib.OutputCache, dict]:
    """The teacher's top-k (k = `kd.top_k`; with kd.source='sampled', k draws, or its top kd.sampled_head and draws
    from the rest: `topk.sampled`) at every position of every document, in fixed-shape batches of
    `teacher.cache.batch_size` rows of `data.length` tokens (windows packed several to a row); resumable. Returns the
    cache and what writing it took."""
    k, length, size = int(cfg.kd.top_k), int(cfg.data.length), int(cfg.teacher.cache.batch_size)
    sampled, head = str(cfg.kd.source) == "sampled", int(cfg.kd.get("sampled_head", 0))

    def select(logits, key):
        return topk.sampled(logits, k, key, head) if sampled else topk.top_k(logits, k)

    run = _runner(teacher_fn, lambda gdef: jax.jit(
        lambda s, ids, seg, key: select(nnx.merge(gdef, s)(ids, segment_ids=seg)["logits"], key)))

    def compute(doc_ids: list[str]) -> list[dict]:
        encoded = {i: encode(tok, texts[int(i)])[0] for i in doc_ids}
        # the documents' windows, packed several to a row (segments keep them apart): short documents would
        # otherwise fill a batch with padding
        wins = [(i, s, ids[s:s + length]) for i, ids in encoded.items() for s in range(0, len(ids), length)]
        rows = packing.layout([len(w) for _, _, w in wins], length)
        lp = {i: np.zeros((len(ids), k), np.float32) for i, ids in encoded.items()}
        idx = {i: np.full((len(ids), k), -1, np.int32) for i, ids in encoded.items()}
        rest = {i: np.zeros((len(ids),), np.float32) for i, ids in encoded.items()}
        for b0 in range(0, len(rows), size):
            part = rows[b0:b0 + size]
            ids = np.zeros((size, length), np.int32)
            seg = np.zeros((size, length), np.int32)
            for j, pieces in enumerate(part):
                at = 0
                for n, (w, _, _) in enumerate(pieces, start=1):
                    ids[j, at:at + len(wins[w][2])], seg[j, at:at + len(wins[w][2])] = wins[w][2], n
                    at += len(wins[w][2])
            # the draws of a sampled cache: fixed by the batch's first document and row, so a rewrite draws the same
            # (a top-k cache keeps its fingerprint of before draws existed, so caches already written stay valid)
            key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(0), int(doc_ids[0])), b0)
            v, x, r = (np.asarray(a) for a in run(jnp.asarray(ids), jnp.asarray(seg), key))
            for j, pieces in enumerate(part):
                at = 0
                for w, _, _ in pieces:
                    i, s, win = wins[w]
                    n = len(win) - 1  # the window's last position predicts a token it has not seen
                    lp[i][s:s + n], idx[i][s:s + n], rest[i][s:s + n] = v[j, at:at + n], x[j, at:at + n], \
                        r[j, at:at + n]
                    at += len(win)
        return [topk.row(i, lp[i], idx[i], rest[i]) for i in doc_ids]

    ids = [str(i) for i in range(len(texts))]
    stats = topk.fill(cache_dir, ids, compute, k, batch_size=16 * size, shard_size=64 * size,
                      teacher=f"distill_lm teacher {cfg.teacher.checkpoint or 'random init'}",
                      fingerprint={**fingerprint(cfg, texts), **({"selection": "sampled"} if sampled else {}),
                                   **({"head": head} if head else {})})  # a cache without a head keeps its print
    cache = cache_lib.OutputCache(cache_dir)
    cache.check(ids)
    return cache, stats


def student_fields(cache: cache_lib.OutputCache, texts: list[str], teacher_tok, student_tok
                   ) -> list[dict[str, np.ndarray]]:
    """Per document, the cached top-k at the student's tokens (as `data.encode` gives them): topk_logprobs
    (tokens, k) float16, topk_ids (tokens, k) int32 in the student's vocabulary (-1 absent), topk_rest (tokens,)
    float16 and topk_mask (tokens,), 1 where the teacher's distribution is there."""
    same = teacher_tok is student_tok
    if not same:
        vmap = token_alignment.vocab_map(teacher_tok, student_tok)
        starts = token_alignment.word_starts(student_tok)
    out = []
    for n, text in enumerate(texts):
        row = cache.get(str(n))
        lp, ids, rest = row[topk.LOGPROBS], row[topk.IDS], row[topk.REST]
        if same:
            out.append({topk.LOGPROBS: lp, topk.IDS: ids, topk.REST: rest, MASK: (ids[:, 0] >= 0).astype(np.float32)})
            continue
        _, t_off = encode(teacher_tok, text)
        s_ids, s_off = encode(student_tok, text)
        moved = token_alignment.student_topk(text, t_off, s_off, s_ids, lp.astype(np.float32), ids, vmap, starts,
                                             rest.astype(np.float32))
        for name in (topk.LOGPROBS, topk.REST):
            moved[name] = moved[name].astype(np.float16)
        out.append(moved)
    return out


GENERATION = "text"


def generations(cfg: ml_collections.ConfigDict, teacher_fn: Callable[[], nnx.Module], tok, texts: list[str],
                cache_dir: str) -> tuple[list[str], dict]:
    """Sequence-level KD's documents: per training document, the teacher's continuation (`kd.sequence`: greedy or
    beam search, max_new_tokens) of its first prompt_tokens tokens, decoded with the opening as one text. Cached
    (resumable); returns the texts in document order and what writing them took."""
    from kdjax.models import generate

    sq = cfg.kd.sequence
    p, size = int(sq.prompt_tokens), int(cfg.teacher.cache.batch_size)
    gcfg = generate.GenerateConfig(max_new_tokens=int(sq.max_new_tokens), num_beams=int(sq.num_beams),
                                   eos_token_id=-1 if tok.eos_token_id is None else int(tok.eos_token_id),
                                   pad_token_id=0)
    run = _runner(teacher_fn, lambda gdef: jax.jit(lambda s, ids, mask: generate.generate(
        nnx.merge(gdef, s), nnx.merge(gdef, s).embed(ids), mask, gcfg)))

    def compute(doc_ids: list[str]) -> list[dict]:
        ids = np.zeros((size, p), np.int32)
        mask = np.zeros((size, p), np.int32)
        openings = []
        for j, i in enumerate(doc_ids):
            o = encode(tok, texts[int(i)])[0][:p]
            ids[j, p - len(o):], mask[j, p - len(o):] = o, 1  # left-padded prompts
            openings.append(o)
        out, lengths = (np.asarray(a) for a in run(jnp.asarray(ids), jnp.asarray(mask)))
        return [{"id": i, GENERATION: tok.decode(list(o) + list(out[j, :lengths[j]]), skip_special_tokens=True)}
                for j, (i, o) in enumerate(zip(doc_ids, openings))]

    ids = [str(i) for i in range(len(texts))]
    stats = cache_lib.fill(cache_dir, ids, compute, {GENERATION: cache_lib.field(cache_lib.STR)}, batch_size=size,
                           shard_size=size * 32, teacher=f"distill_lm teacher {cfg.teacher.checkpoint or 'random init'}",
                           fingerprint={**fingerprint(cfg, texts), **{k: sq[k] for k in sq}},
                           progress="teacher generations")
    cache = cache_lib.OutputCache(cache_dir)
    cache.check(ids)
    return [cache.get(i)[GENERATION] for i in ids], stats
