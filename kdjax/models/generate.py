"""Batched greedy and beam-search decoding with a KV cache, as pure functions for `jax.jit`.

Both follow transformers' `generate` rules, so the same model and settings give the same tokens:
- greedy: argmax each step; a finished row emits `pad_token_id`; stops when every row has finished or
  after `max_new_tokens`; EOS is forbidden for the first `min_new_tokens` tokens.
- beam search (transformers >= 4.50 semantics): log-softmax scores accumulated per beam; the best
  2*num_beams continuations are kept each step; those ending in EOS (or reaching the maximum length)
  among the top num_beams become finished hypotheses scored by sum log p / length ** length_penalty
  (length counts generated tokens, EOS included); the rest continue. With early_stopping=False, a batch
  row stops once no running beam can beat its worst finished hypothesis at the current length.

The prompt is given as embeddings (`inputs_embeds`, (b, p, d)) so that non-text tokens (audio) can be
spliced in; `attention_mask` (b, p) marks real prompt positions (left padding is allowed). Outputs are
generated tokens only: (b, max_new_tokens) padded with `pad_token_id`, and the lengths (EOS included).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

NEG = -1.0e9


@dataclasses.dataclass(frozen=True)
class GenerateConfig:
    max_new_tokens: int = 30
    min_new_tokens: int = 0
    num_beams: int = 1  # 1 = greedy
    length_penalty: float = 1.0
    early_stopping: bool = False
    eos_token_id: int = 2
    pad_token_id: int = 0


def _prefill(model, inputs_embeds, attention_mask, total):
    """Run the prompt through the model into a cache of `total` slots; returns (last logits, cache,
    slot mask (b, total), position of the first generated token (b,))."""
    b, p = inputs_embeds.shape[:2]
    mask = attention_mask.astype(bool)
    positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0)  # left padding: count real tokens only
    slot_mask = jnp.concatenate([mask, jnp.ones((b, total - p), bool)], axis=1)
    cache = model.init_cache(b, total)
    out = model(inputs_embeds=inputs_embeds, attention_mask=slot_mask, position_ids=positions, cache=cache,
                cache_index=0)
    return out["logits"][:, -1], out["cache"], slot_mask, mask.sum(axis=1)


def _step(model, tokens, cache, slot_mask, index, positions):
    out = model(tokens[:, None], attention_mask=slot_mask, position_ids=positions[:, None], cache=cache,
                cache_index=index)
    return out["logits"][:, -1], out["cache"]


def _forbid_eos(logp, t, cfg):
    return jnp.where((t < cfg.min_new_tokens) & (jnp.arange(logp.shape[-1]) == cfg.eos_token_id), -jnp.inf, logp)


def greedy(model, inputs_embeds: jax.Array, attention_mask: jax.Array, cfg: GenerateConfig,
           key: jax.Array | None = None, temperature: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """Greedy decoding; with `key`, ancestral sampling from softmax(logits / temperature) instead (one key per
    step, split from `key`): what on-policy distillation draws from the student."""
    b, p = inputs_embeds.shape[:2]
    n = cfg.max_new_tokens
    logits, cache, slot_mask, next_pos = _prefill(model, inputs_embeds, attention_mask, p + n)
    out = jnp.full((b, n), cfg.pad_token_id, jnp.int32)

    def cond(s):
        t, _, _, done, _, _ = s
        return (t < n) & ~jnp.all(done)

    def body(s):
        t, logits, cache, done, out, lengths = s
        scores = _forbid_eos(logits, t, cfg)
        if key is None:
            tok = jnp.argmax(scores, axis=-1).astype(jnp.int32)
        else:
            tok = jax.random.categorical(jax.random.fold_in(key, t), scores / temperature, axis=-1).astype(jnp.int32)
        tok = jnp.where(done, cfg.pad_token_id, tok)
        out = out.at[:, t].set(tok)
        lengths = jnp.where(done, lengths, t + 1)
        done = done | (tok == cfg.eos_token_id)
        logits, cache = jax.lax.cond(
            (t + 1 < n) & ~jnp.all(done),
            lambda: _step(model, tok, cache, slot_mask, p + t, next_pos + t),
            lambda: (logits, cache))
        return t + 1, logits, cache, done, out, lengths

    init = (jnp.int32(0), logits, cache, jnp.zeros((b,), bool), out, jnp.zeros((b,), jnp.int32))
    _, _, _, _, out, lengths = jax.lax.while_loop(cond, body, init)
    return out, lengths


def _gather(x, idx):
    """x (b, k, ...) indexed along k by idx (b, j)."""
    return jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=1)


def beam_search(model, inputs_embeds: jax.Array, attention_mask: jax.Array, cfg: GenerateConfig
                ) -> tuple[jax.Array, jax.Array]:
    b, p = inputs_embeds.shape[:2]
    k, n, lp = cfg.num_beams, cfg.max_new_tokens, cfg.length_penalty
    k2 = 2 * k
    logits, cache, slot_mask, next_pos = _prefill(model, inputs_embeds, attention_mask, p + n)
    # every beam starts from the same prompt: repeat the prefilled cache per beam
    rep = lambda x: jnp.repeat(x, k, axis=0)
    logits, cache, slot_mask, next_pos = rep(logits), jax.tree.map(rep, cache), rep(slot_mask), rep(next_pos)
    vocab = logits.shape[-1]
    state = {
        "t": jnp.int32(0), "logits": logits, "cache": cache,
        "run_tok": jnp.full((b, k, n), cfg.pad_token_id, jnp.int32),
        "run_score": jnp.tile(jnp.array([0.0] + [NEG] * (k - 1), jnp.float32), (b, 1)),
        "fin_tok": jnp.full((b, k, n), cfg.pad_token_id, jnp.int32),
        "fin_score": jnp.full((b, k), NEG, jnp.float32),
        "fin_len": jnp.zeros((b, k), jnp.int32),
        "finished": jnp.zeros((b, k), bool),
        "improvable": jnp.ones((b,), bool),
        "all_hit": jnp.array(False),
    }

    def cond(s):
        go = jnp.any(s["improvable"]) & ~s["all_hit"]
        if cfg.early_stopping:
            go &= ~jnp.all(s["finished"])
        return go & (s["t"] < n)

    def body(s):
        t = s["t"]
        logp = _forbid_eos(jax.nn.log_softmax(s["logits"].astype(jnp.float32), axis=-1), t, cfg)
        acc = (logp.reshape(b, k, vocab) + s["run_score"][:, :, None]).reshape(b, k * vocab)
        top, idx = jax.lax.top_k(acc, k2)
        origin, tok = idx // vocab, (idx % vocab).astype(jnp.int32)
        cand = _gather(s["run_tok"], origin).at[:, :, t].set(tok)
        hit = (tok == cfg.eos_token_id) | (t + 1 >= n)
        # continuing beams: the best k candidates that did not stop
        run_top, run_idx = jax.lax.top_k(top + hit * NEG, k)
        run_tok, run_origin = _gather(cand, run_idx), _gather(origin, run_idx)
        # finished hypotheses: stopping candidates among the top k, length-penalised, merged with the old
        score = top / ((t + 1).astype(jnp.float32) ** lp)
        if cfg.early_stopping:
            score += jnp.all(s["finished"], axis=1, keepdims=True) * NEG
        score += (~s["improvable"])[:, None] * NEG
        just = hit & (jnp.arange(k2) < k)[None]
        score += (~just) * NEG
        m_score = jnp.concatenate([s["fin_score"], score], axis=1)
        m_tok = jnp.concatenate([s["fin_tok"], cand], axis=1)
        m_len = jnp.concatenate([s["fin_len"], jnp.full((b, k2), t + 1, jnp.int32)], axis=1)
        m_fin = jnp.concatenate([s["finished"], just], axis=1)
        fin_score, sel = jax.lax.top_k(m_score, k)
        # reorder the cache to the continuing beams' origins and feed their last tokens
        rows = (jnp.arange(b)[:, None] * k + run_origin).reshape(-1)
        cache = jax.tree.map(lambda x: x[rows], s["cache"])
        t1 = t + 1
        best = run_top[:, 0] / (t1.astype(jnp.float32) ** lp)
        fin = _gather(m_fin, sel)
        worst = jnp.where(fin, jnp.min(fin_score, axis=1, keepdims=True), NEG)
        improvable = s["improvable"] & jnp.any(best[:, None] > worst, axis=1)
        all_hit = jnp.all(hit)
        logits, cache = jax.lax.cond(
            (t1 < n) & jnp.any(improvable) & ~all_hit,
            lambda: _step(model, run_tok[:, :, t].reshape(-1), cache, slot_mask, p + t, next_pos + t),
            lambda: (s["logits"], cache))
        return {"t": t1, "logits": logits, "cache": cache, "run_tok": run_tok, "run_score": run_top,
                "fin_tok": _gather(m_tok, sel), "fin_score": fin_score, "fin_len": _gather(m_len, sel),
                "finished": fin, "improvable": improvable, "all_hit": all_hit}

    s = jax.lax.while_loop(cond, body, state)
    tokens, lengths = s["fin_tok"][:, 0], s["fin_len"][:, 0]
    # the best hypothesis's tokens past its length are other beams' history: blank them
    tokens = jnp.where(jnp.arange(n)[None] < lengths[:, None], tokens, cfg.pad_token_id)
    return tokens, lengths


def generate(model, inputs_embeds: jax.Array, attention_mask: jax.Array | None = None,
             cfg: GenerateConfig = GenerateConfig()) -> tuple[jax.Array, jax.Array]:
    """(tokens (b, max_new_tokens), lengths (b,)); greedy when cfg.num_beams == 1."""
    if attention_mask is None:
        attention_mask = jnp.ones(inputs_embeds.shape[:2], jnp.int32)
    if cfg.num_beams == 1:
        return greedy(model, inputs_embeds, attention_mask, cfg)
    return beam_search(model, inputs_embeds, attention_mask, cfg)


def config_from(d: Any) -> GenerateConfig:
    """GenerateConfig from a mapping (e.g. an ml_collections node); unknown keys are an error."""
    d = dict(d)
    names = {f.name for f in dataclasses.fields(GenerateConfig)}
    unknown = set(d) - names
    if unknown:
        raise KeyError(f"unknown generation settings {sorted(unknown)}; known: {sorted(names)}")
    return GenerateConfig(**d)
