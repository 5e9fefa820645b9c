"""Span-pooled hidden-state and attention distillation (DSG-KD, thesis eq. 2.4-2.8).

Every function here is a pure function of arrays. `word_ids` is the knowledge mask M of eq. 2.1:
(batch, tokens) ints, k > 0 marks the tokens of domain word k, 0 everything else. Teacher and student
have their own masks (their tokenizers differ); word k is the same word in both.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp


def word_onehot(word_ids: jax.Array, num_words: int) -> jax.Array:
    """(b, l) word ids -> (b, k, l) float membership of token l in word k (1-based ids)."""
    return (word_ids[:, None, :] == jnp.arange(1, num_words + 1)[None, :, None]).astype(jnp.float32)


def span_mean(x: jax.Array, onehot: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Avg.Pool of eq. 2.5: mean of x over each word's tokens.

    x: (b, l, ...) with the token axis second; onehot (b, k, l). Returns ((b, k, ...), counts (b, k)).
    Words without tokens pool to zeros.
    """
    counts = onehot.sum(-1)
    pooled = jnp.einsum("bkl,bl...->bk...", onehot, x.astype(jnp.float32))
    denom = jnp.maximum(counts, 1.0).reshape(counts.shape + (1,) * (pooled.ndim - 2))
    return pooled / denom, counts


def pool_attention_rows(probs: jax.Array, onehot: jax.Array) -> jax.Array:
    """Eq. 2.7: (b, h, q, k) attention -> (b, h, words, k): mean over each word's query rows."""
    counts = jnp.maximum(onehot.sum(-1), 1.0)
    return jnp.einsum("bwq,bhqk->bhwk", onehot, probs.astype(jnp.float32)) / counts[:, None, :, None]


def pool_attention_keys(rows: jax.Array, onehot: jax.Array) -> jax.Array:
    """(b, h, w, k) word rows -> (b, h, w, w + 1): attention mass on each domain word's key tokens, and
    last the mass on everything else. Unlike raw key positions, this grid means the same thing under
    two different tokenizations."""
    on_words = jnp.einsum("bhwk,bvk->bhwv", rows, onehot)
    rest = rows.sum(-1, keepdims=True) - on_words.sum(-1, keepdims=True)
    return jnp.concatenate([on_words, rest], axis=-1)


def masked_mse(a: jax.Array, b: jax.Array, valid: jax.Array) -> jax.Array:
    """Mean squared error over the entries whose leading (b, k) position is valid.

    a, b: (n, b, k, ...) stacked over n layers; valid (b, k). Equals torch's MSELoss(mean) over the
    concatenation of the valid rows of every layer; 0 when nothing is valid.
    """
    w = valid.astype(jnp.float32).reshape((1,) + valid.shape + (1,) * (a.ndim - 3))
    per_row = a[0, 0, 0].size
    n = jnp.sum(valid) * a.shape[0] * per_row
    return jnp.sum(w * jnp.square(a - b)) / jnp.maximum(n, 1.0)


def uniform_layer_map(student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """Pairs (student index, teacher index) over hidden_states (0 = embeddings .. num_layers).

    Equal depths pair layer by layer; otherwise student layer s reads teacher layer
    round(s * teacher_layers / student_layers) (TinyBERT's uniform strategy)."""
    return [(s, int(round(s * teacher_layers / student_layers))) for s in range(student_layers + 1)]


def hidden_loss(student_hidden: Sequence[jax.Array], teacher_hidden: Sequence[jax.Array],
                student_word_ids: jax.Array, teacher_word_ids: jax.Array, num_words: int,
                layer_map: Sequence[tuple[int, int]], project=None) -> jax.Array:
    """MSE(H^S, H^T) of eq. 2.4-2.5 (without alpha), over all mapped layers (embeddings included).

    `project` maps student widths to the teacher's when they differ (a learned projection; the thesis
    assumes d = d'). A word counts only when it has tokens under both tokenizations.
    """
    oh_s, oh_t = word_onehot(student_word_ids, num_words), word_onehot(teacher_word_ids, num_words)
    ps, pt = [], []
    for s, t in layer_map:
        hs, cs = span_mean(student_hidden[s], oh_s)
        ht, ct = span_mean(jax.lax.stop_gradient(teacher_hidden[t]), oh_t)
        ps.append(project(hs) if project is not None else hs)
        pt.append(ht)
    valid = (cs > 0) & (ct > 0)
    return masked_mse(jnp.stack(ps), jnp.stack(pt), valid)


def attention_loss(student_attn: Sequence[jax.Array], teacher_attn: Sequence[jax.Array],
                   student_word_ids: jax.Array, teacher_word_ids: jax.Array, num_words: int,
                   layer_map: Sequence[tuple[int, int]], keys: str = "word", heads: str = "auto"
                   ) -> jax.Array:
    """MSE(A^S, A^T) of eq. 2.6-2.7 (without beta) over encoder layers >= 1 (eq. 2.8).

    layer_map uses hidden_states numbering; pairs with s == 0 (embeddings) are skipped, and layer s
    reads attentions[s - 1].
    keys:  "index" compares word rows key position by key position, as the reference code does (the
           shorter sequence is zero-padded); "word" first pools the key axis onto the domain words
           plus an "other" bucket (`pool_attention_keys`), which is comparable across tokenizers.
    heads: "match" compares head by head; "mean" averages heads first; "auto" = match when the head
           counts agree, else mean.
    """
    oh_s, oh_t = word_onehot(student_word_ids, num_words), word_onehot(teacher_word_ids, num_words)
    pairs = [(s, t) for s, t in layer_map if s > 0]
    if not pairs:
        return jnp.zeros((), jnp.float32)
    hs, ht = student_attn[0].shape[1], teacher_attn[0].shape[1]
    mean_heads = heads == "mean" or (heads == "auto" and hs != ht)
    if heads == "match" and hs != ht:
        raise ValueError(f"attention heads differ (student {hs}, teacher {ht}); use heads='mean'")
    ps, pt = [], []
    for s, t in pairs:
        rs = pool_attention_rows(student_attn[s - 1], oh_s)
        rt = pool_attention_rows(jax.lax.stop_gradient(teacher_attn[t - 1]), oh_t)
        if keys == "word":
            rs, rt = pool_attention_keys(rs, oh_s), pool_attention_keys(rt, oh_t)
        elif keys == "index":
            pad = rt.shape[-1] - rs.shape[-1]
            if pad > 0:
                rs = jnp.pad(rs, [(0, 0)] * 3 + [(0, pad)])
            elif pad < 0:
                rt = jnp.pad(rt, [(0, 0)] * 3 + [(0, -pad)])
        else:
            raise ValueError(f"unknown attention key alignment {keys!r}; use 'word' or 'index'")
        if mean_heads:
            rs, rt = rs.mean(1, keepdims=True), rt.mean(1, keepdims=True)
        # (b, h, w, x) -> (b, w, h, x) so that masked_mse sees (batch, word) leading axes.
        ps.append(jnp.swapaxes(rs, 1, 2))
        pt.append(jnp.swapaxes(rt, 1, 2))
    valid = (oh_s.sum(-1) > 0) & (oh_t.sum(-1) > 0)
    return masked_mse(jnp.stack(ps), jnp.stack(pt), valid)
