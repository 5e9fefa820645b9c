"""DSG-KD's losses (thesis eq. 2.3-2.9): span-pooled hidden-state and attention distillation and the total.

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


def teacher_hidden_targets(teacher_hidden: Sequence[jax.Array], teacher_word_ids: jax.Array, num_words: int,
                           layers: Sequence[int]) -> tuple[jax.Array, jax.Array]:
    """What L_hidn reads of the teacher (eq. 2.5's Avg.Pool of H^T): its hidden states of each of `layers`
    (hidden_states numbering) pooled over every domain word's tokens, batch first: ((b, n, k, d), counts (b, k)).
    A frozen teacher's targets can be computed once per example and cached."""
    oh_t = word_onehot(teacher_word_ids, num_words)
    pooled = [span_mean(jax.lax.stop_gradient(teacher_hidden[t]), oh_t)[0] for t in layers]
    return jnp.stack(pooled, axis=1), oh_t.sum(-1)


def hidden_loss_to(student_hidden: Sequence[jax.Array], student_word_ids: jax.Array, targets: jax.Array,
                   teacher_counts: jax.Array, num_words: int, student_layers: Sequence[int], project=None
                   ) -> jax.Array:
    """MSE(H^S, H^T) of eq. 2.4-2.5 (without alpha) against precomputed teacher targets (b, n, k, d)
    (`teacher_hidden_targets`), student layer student_layers[i] against target i.

    `project` maps student widths to the teacher's when they differ (a learned projection; the thesis
    assumes d = d'). A word counts only when it has tokens under both tokenizations. One mean over every
    valid entry of every mapped layer, as the reference code takes it."""
    oh_s = word_onehot(student_word_ids, num_words)
    ps = []
    for s in student_layers:
        hs, cs = span_mean(student_hidden[s], oh_s)
        ps.append(project(hs) if project is not None else hs)
    valid = (cs > 0) & (teacher_counts > 0)
    return masked_mse(jnp.stack(ps), jnp.swapaxes(targets, 0, 1), valid)


def hidden_loss(student_hidden: Sequence[jax.Array], teacher_hidden: Sequence[jax.Array],
                student_word_ids: jax.Array, teacher_word_ids: jax.Array, num_words: int,
                layer_map: Sequence[tuple[int, int]], project=None) -> jax.Array:
    """MSE(H^S, H^T) of eq. 2.4-2.5 (without alpha), over all mapped layers (embeddings included); the teacher's
    side computed here (`hidden_loss_to` takes it precomputed)."""
    targets, counts = teacher_hidden_targets(teacher_hidden, teacher_word_ids, num_words, [t for _, t in layer_map])
    return hidden_loss_to(student_hidden, student_word_ids, targets, counts, num_words, [s for s, _ in layer_map],
                          project)


def attention_pairs(layer_map: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The layer pairs L_attn compares: encoder layers >= 1 (eq. 2.8; hidden_states numbering)."""
    return [(s, t) for s, t in layer_map if s > 0]


def mean_heads(student_heads: int, teacher_heads: int, heads: str = "auto") -> bool:
    """Whether attention is averaged over heads before comparing: heads="mean", or "auto" with different head
    counts; "match" with different counts is an error."""
    if heads not in ("match", "mean", "auto"):
        raise ValueError(f"unknown attention head alignment {heads!r}; use 'match', 'mean' or 'auto'")
    if heads == "match" and student_heads != teacher_heads:
        raise ValueError(f"attention heads differ (student {student_heads}, teacher {teacher_heads}); use heads='mean'")
    return heads == "mean" or (heads == "auto" and student_heads != teacher_heads)


def _attention_rows(attn: jax.Array, onehot: jax.Array, keys: str, average_heads: bool) -> jax.Array:
    rows = pool_attention_rows(attn, onehot)
    if keys == "word":
        rows = pool_attention_keys(rows, onehot)
    elif keys != "index":
        raise ValueError(f"unknown attention key alignment {keys!r}; use 'word' or 'index'")
    return rows.mean(1, keepdims=True) if average_heads else rows


def teacher_attention_targets(teacher_attn: Sequence[jax.Array], teacher_word_ids: jax.Array, num_words: int,
                              layers: Sequence[int], keys: str = "word", average_heads: bool = False) -> jax.Array:
    """What L_attn reads of the teacher (eq. 2.7's pooled rows of A^T) for each of `layers` (hidden_states
    numbering, >= 1), batch first: (b, n, h, k, x); h is 1 when heads are averaged; x is k + 1 (keys pooled onto
    the words and the rest) or the teacher's sequence length (keys="index")."""
    oh_t = word_onehot(teacher_word_ids, num_words)
    rows = [_attention_rows(jax.lax.stop_gradient(teacher_attn[t - 1]), oh_t, keys, average_heads) for t in layers]
    return jnp.stack(rows, axis=1)


def attention_loss_to(student_attn: Sequence[jax.Array], student_word_ids: jax.Array, targets: jax.Array,
                      teacher_counts: jax.Array, num_words: int, student_layers: Sequence[int], keys: str = "word",
                      average_heads: bool = False) -> jax.Array:
    """MSE(A^S, A^T) of eq. 2.6-2.7 (without beta) against precomputed teacher targets (b, n, h, k, x)
    (`teacher_attention_targets`); student layer s reads attentions[s - 1]. With keys="index" the shorter key
    axis is zero-padded, as the reference code compares key positions."""
    if not student_layers:
        return jnp.zeros((), jnp.float32)
    oh_s = word_onehot(student_word_ids, num_words)
    ps, pt = [], []
    for i, s in enumerate(student_layers):
        rs, rt = _attention_rows(student_attn[s - 1], oh_s, keys, average_heads), targets[:, i]
        if keys == "index":
            pad = rt.shape[-1] - rs.shape[-1]
            if pad > 0:
                rs = jnp.pad(rs, [(0, 0)] * 3 + [(0, pad)])
            elif pad < 0:
                rt = jnp.pad(rt, [(0, 0)] * 3 + [(0, -pad)])
        # (b, h, w, x) -> (b, w, h, x) so that masked_mse sees (batch, word) leading axes.
        ps.append(jnp.swapaxes(rs, 1, 2))
        pt.append(jnp.swapaxes(rt, 1, 2))
    valid = (oh_s.sum(-1) > 0) & (teacher_counts > 0)
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
    pairs = attention_pairs(layer_map)
    if not pairs:
        return jnp.zeros((), jnp.float32)
    avg = mean_heads(student_attn[0].shape[1], teacher_attn[0].shape[1], heads)
    targets = teacher_attention_targets(teacher_attn, teacher_word_ids, num_words, [t for _, t in pairs], keys, avg)
    counts = word_onehot(teacher_word_ids, num_words).sum(-1)
    return attention_loss_to(student_attn, student_word_ids, targets, counts, num_words, [s for s, _ in pairs], keys,
                             avg)


LOSS_FORMS = ("code", "equations")


def layer_weights(form: str, alpha: float, beta: float, layer_map: Sequence[tuple[int, int]]
                  ) -> tuple[float, float]:
    """The factors that multiply the stacked-layer MSEs of L_hidn and L_attn (`hidden_loss_to`, `attention_loss_to`:
    one mean over every mapped layer) in L_total.

    "code" (the default): alpha and beta once, on one mean over all layers, as the reference code computes it (and
    as produced the thesis's numbers). "equations": eq. 2.3-2.8 as written: the per-layer losses are summed over
    layers (eq. 2.3; every layer holds the same valid words, so the sum is the number of layers times the mean:
    13x for hidden states, 12x for attention at BERT-base depth), and alpha and beta are applied twice, in
    eq. 2.4/2.6 and again in eq. 2.8 (alpha^2, beta^2)."""
    if form == "code":
        return alpha, beta
    if form == "equations":
        return alpha * alpha * len(layer_map), beta * beta * len(attention_pairs(layer_map))
    raise ValueError(f"unknown DSG-KD loss form {form!r}; use one of {', '.join(LOSS_FORMS)}")


def total_loss(logits: jax.Array, labels: jax.Array, student_hidden: Sequence[jax.Array] | None,
               student_attn: Sequence[jax.Array] | None, student_word_ids: jax.Array, teacher: dict[str, jax.Array],
               *, alpha: float, beta: float, num_words: int, layer_map: Sequence[tuple[int, int]], keys: str,
               average_heads: bool, project=None, form: str = "code",
               label_weights: jax.Array | None = None, ce_weight: float = 1.0
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """L_total = CE(S(x^S), y) + alpha * L_hidn + beta * L_attn (thesis eq. 2.3-2.9), from the student's outputs
    and the teacher's targets `teacher` = {"hidden" (b, n, k, d), "attn" (b, n', h, k, x), "counts" (b, k)}
    (`teacher_hidden_targets`, `teacher_attention_targets`: from the teacher in the step or from a cache).
    `form` scales the terms as the reference code does or as the equations write them (`layer_weights`); the
    logged "hidn" and "attn" are the stacked-layer MSEs either way. `label_weights` (b,): CE's weight per note (0 for a
    note without a label, which the KD terms still read). `ce_weight`: CE's factor (eq. 2.8: 1; 0 for a stage that
    distils the intermediate layers alone, a kdjax variant; CE is still logged). Returns (loss, its terms)."""
    from kdjax.losses.classification import cross_entropy

    w_hidn, w_attn = layer_weights(form, alpha, beta, layer_map)
    ce = cross_entropy(logits, labels, label_weights)
    loss, metrics = ce_weight * ce, {"ce": ce}
    if alpha > 0:
        h = hidden_loss_to(student_hidden, student_word_ids, teacher["hidden"], teacher["counts"], num_words,
                           [s for s, _ in layer_map], project)
        loss, metrics["hidn"] = loss + w_hidn * h, h
    if beta > 0:
        a = attention_loss_to(student_attn, student_word_ids, teacher["attn"], teacher["counts"], num_words,
                              [s for s, _ in attention_pairs(layer_map)], keys, average_heads)
        loss, metrics["attn"] = loss + w_attn * a, a
    return loss, metrics
