"""Token-level distillation for decoders: divergences between the teacher's and the student's next-token
distributions, dense or over the teacher's top-k (issue 26).

For each token position with teacher distribution P and student distribution Q (both softmax(logits / T)):

- forward KL, KL(P || Q) = sum_v P log(P / Q): word-level KD (Hinton et al. 2015; Kim & Rush 2016, eq. 3), what
  `torch.nn.KLDivLoss(log_target=True)(log Q, log P)` computes;
- reverse KL, KL(Q || P): mode-seeking (MiniLLM, Gu et al. 2024);
- generalised JSD(beta) = beta KL(P || M) + (1 - beta) KL(Q || M), M = beta P + (1 - beta) Q (GKD, Agarwal et al.
  2024, eq. 1 and 2), for 0 < beta < 1 (its limits are degenerate: use the KLs).

Each is multiplied by T^2 (Hinton et al.: the gradients keep their scale as T changes) and averaged over the tokens
`mask` keeps (padding and prompt tokens out; with `segment_ids`, packed sequences' segment ends too: `segment_mask`).
The vocabulary is never materialised for every token at once in float32: the tokens are taken `chunk_tokens` at a
time (each chunk recomputed in the backward pass), and with `student_head` / `teacher_head` the inputs are final
hidden states whose logits are computed chunk by chunk, so a 150k vocabulary costs chunk x vocabulary floats, not
batch x sequence x vocabulary.

Sparse forms (`sparse_token_kd`) read the teacher as its top-k log-probabilities and their indices (a top-k cache):
either both distributions renormalised over those k tokens, or k + 1 buckets, the k tokens and the "rest" (the
probability mass outside them: exact for the student, 1 - sum of the k for the teacher, both floored at float32's
smallest normal; temperature 1 only, as the cached log-probabilities fix the teacher's temperature).
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

DIVERGENCES = ("forward_kl", "reverse_kl", "jsd")
_TINY = float(np.finfo(np.float32).tiny)
_LOG_TINY = math.log(_TINY)  # numpy and math, not jnp: importing a loss must not start a JAX backend
_ABSENT = -1e30  # the log-probability of an absent top-k entry (index < 0): exp underflows to exactly 0


def _kl(log_p: jax.Array, log_q: jax.Array) -> jax.Array:
    """sum_v p (log p - log q) over the last axis; 0 log 0 = 0 (a bucket with no mass, e.g. an empty "rest")."""
    p = jnp.exp(log_p)
    safe = jnp.where(p > 0, log_p - log_q, 0.0)
    return jnp.sum(jnp.where(p > 0, p * safe, 0.0), -1)


def divergence(log_t: jax.Array, log_s: jax.Array, kind: str = "forward_kl", beta: float = 0.5) -> jax.Array:
    """Per-row divergence between teacher and student log-probabilities over the same support (last axis)."""
    if kind == "forward_kl":
        return _kl(log_t, log_s)
    if kind == "reverse_kl":
        return _kl(log_s, log_t)
    if kind == "jsd":
        if not 0.0 < beta < 1.0:
            raise ValueError(f"generalised JSD needs 0 < beta < 1, got {beta}; beta 0 and 1 are the KLs")
        log_m = jnp.logaddexp(jnp.log(beta) + log_t, jnp.log1p(-beta) + log_s)
        return beta * _kl(log_t, log_m) + (1.0 - beta) * _kl(log_s, log_m)
    raise ValueError(f"unknown divergence {kind!r}; use one of {', '.join(DIVERGENCES)}")


def _chunked_mean(per_token: Callable[..., jax.Array], mask: jax.Array, chunk_tokens: int, *inputs: jax.Array
                  ) -> jax.Array:
    """Masked mean over tokens of per_token(*chunk_of_each_input) -> (chunk,), `chunk_tokens` tokens at a time (0: all
    at once). Inputs are (tokens, ...) arrays; the last chunk is padded with masked-out rows."""
    n = mask.shape[0]
    m = mask.astype(jnp.float32)
    if not chunk_tokens or chunk_tokens >= n:
        return jnp.sum(per_token(*inputs) * m) / jnp.maximum(m.sum(), 1.0)
    c = -(-n // chunk_tokens)
    pad = c * chunk_tokens - n

    def split(x, mode="edge"):  # inputs padded with copies of the last row (a valid one); the mask with zeros
        x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1), mode=mode)
        return x.reshape(c, chunk_tokens, *x.shape[1:])

    @jax.checkpoint  # the backward pass recomputes a chunk's logits instead of keeping every chunk's
    def one(args):
        *xs, mk = args
        return jnp.sum(per_token(*xs) * mk)

    total = jnp.sum(jax.lax.map(one, (*map(split, inputs), split(m, "constant"))))
    return total / jnp.maximum(m.sum(), 1.0)


def segment_mask(segment_ids: jax.Array) -> jax.Array:
    """The tokens of packed sequences (..., length) whose next token is in the same segment (0: padding): the
    positions a causal LM's targets exist for. A segment's last token predicts the next segment's first, which its
    own context (attention kept within the segment) says nothing about, and the sequence's last token has no next."""
    nxt = jnp.concatenate([segment_ids[..., 1:], jnp.zeros_like(segment_ids[..., :1])], -1)
    return ((segment_ids > 0) & (nxt == segment_ids)).astype(jnp.float32)


def _logits(x: jax.Array, head: jax.Array | None, temperature: float) -> jax.Array:
    """float32 logits / T of a chunk: `x` are logits, or hidden states when `head` (hidden x vocabulary) is given."""
    z = x if head is None else jnp.dot(x, head, preferred_element_type=jnp.float32)
    return z.astype(jnp.float32) / temperature


def _mask(mask: jax.Array, segment_ids: jax.Array | None) -> jax.Array:
    m = mask.astype(jnp.float32)
    return (m if segment_ids is None else m * segment_mask(segment_ids)).reshape(-1)


def _flat(x: jax.Array, lead: int) -> jax.Array:
    return x.reshape(-1, *x.shape[lead:])


def token_kd(student: jax.Array, teacher: jax.Array, mask: jax.Array, *, kind: str = "forward_kl",
             beta: float = 0.5, temperature: float = 1.0, chunk_tokens: int = 0,
             student_head: jax.Array | None = None, teacher_head: jax.Array | None = None,
             segment_ids: jax.Array | None = None) -> jax.Array:
    """T^2 x the mean over kept tokens of the divergence `kind` between softmax(teacher / T) and softmax(student / T).

    `student`, `teacher`: (..., vocabulary) logits, or (..., hidden) final hidden states with `student_head` /
    `teacher_head` (hidden, vocabulary) given (the vocabularies must agree); `mask`: (...) 1 for a token that counts;
    `segment_ids` (packed sequences): also drop each segment's last token (`segment_mask`). The teacher gets no
    gradient."""
    lead = mask.ndim
    m = _mask(mask, segment_ids)

    def per_token(s, t):
        log_s = jax.nn.log_softmax(_logits(s, student_head, temperature), -1)
        log_t = jax.nn.log_softmax(jax.lax.stop_gradient(_logits(t, teacher_head, temperature)), -1)
        return divergence(log_t, log_s, kind, beta)

    return temperature ** 2 * _chunked_mean(per_token, m, chunk_tokens, _flat(student, lead), _flat(teacher, lead))


def token_cross_entropy(x: jax.Array, targets: jax.Array, mask: jax.Array, *, head: jax.Array | None = None,
                        chunk_tokens: int = 0) -> jax.Array:
    """Next-token cross-entropy, the mean over kept tokens of -log softmax(logits)[target], computed as the
    divergences are: `x` logits, or final hidden states with `head` (hidden, vocabulary), `chunk_tokens` at a time,
    so that a large vocabulary's logits exist for one chunk only. Equals `classification.cross_entropy` on logits."""
    lead = mask.ndim

    def per_token(h, t):
        z = _logits(h, head, 1.0)
        return jax.nn.logsumexp(z, -1) - jnp.take_along_axis(z, t[:, None], -1)[:, 0]

    return _chunked_mean(per_token, mask.astype(jnp.float32).reshape(-1), chunk_tokens, _flat(x, lead),
                         targets.reshape(-1))


def sparse_token_kd(student: jax.Array, teacher_logprobs: jax.Array, teacher_indices: jax.Array, mask: jax.Array, *,
                    kind: str = "forward_kl", beta: float = 0.5, temperature: float = 1.0, rest: bool = False,
                    chunk_tokens: int = 0, student_head: jax.Array | None = None,
                    segment_ids: jax.Array | None = None, teacher_rest: jax.Array | None = None) -> jax.Array:
    """token_kd with the teacher given as its top-k: `teacher_logprobs` (..., k) log-probabilities (any float dtype,
    e.g. a bfloat16 cache) and `teacher_indices` (..., k) their vocabulary ids.

    rest=False: both distributions renormalised over the k tokens (teacher softmax(logprobs / T), student the softmax
    of its k logits / T). rest=True: k + 1 buckets, the k tokens and everything else (temperature 1 only).

    An index below 0 marks an absent entry (a teacher token with no counterpart in the student's vocabulary, or
    padding: `kdjax.data.token_alignment`): neither distribution has that bucket, and with rest=True its teacher
    mass is in the teacher's rest. The present indices of a token must be distinct. `teacher_rest` (...): the log of
    the teacher's mass outside its present entries (`rest_log_prob`, as a cache stores it); without it, rest=True
    takes 1 - the sum of the k probabilities."""
    if rest and temperature != 1.0:
        raise ValueError("the 'rest' bucket needs temperature 1: the teacher's mass outside its top-k at another "
                         "temperature is not in its cached log-probabilities")
    lead = mask.ndim
    m = _mask(mask, segment_ids)

    def per_token(s, lp, idx, *t_rest):
        z = _logits(s, student_head, temperature)
        present = idx >= 0
        idx = jnp.where(present, idx, 0)
        # an absent bucket gets a finite log-probability whose exp is 0 in float32: no mass on either side, so it
        # adds nothing to a divergence, and a token with no present entry (renormalised form) compares two equal
        # uniforms (0, no gradient) instead of making NaNs
        absent = lambda x: jnp.where(present, x, _ABSENT)  # noqa: E731
        lp = absent(jax.lax.stop_gradient(lp.astype(jnp.float32)))
        if not rest:
            log_t = jax.nn.log_softmax(lp / temperature, -1)
            log_s = jax.nn.log_softmax(absent(jnp.take_along_axis(z, idx, -1)), -1)
            return divergence(log_t, log_s, kind, beta)
        log_q = jax.nn.log_softmax(z, -1)
        in_k = jnp.zeros(z.shape, bool).at[jnp.arange(z.shape[0])[:, None], idx].max(present)
        s_rest = jnp.maximum(jax.nn.logsumexp(jnp.where(in_k, -jnp.inf, log_q), -1, keepdims=True), _LOG_TINY)
        # both rests floored at float32's smallest normal: an empty one (all k = the vocabulary, a padded row)
        # would make a KL infinite
        if t_rest:
            t_rest = jnp.maximum(jax.lax.stop_gradient(t_rest[0].astype(jnp.float32)), _LOG_TINY)[:, None]
        else:
            t_rest = jnp.log(jnp.clip(1.0 - jnp.sum(jnp.exp(lp), -1, keepdims=True), _TINY, 1.0))
        log_t = jnp.concatenate([lp, t_rest], -1)
        log_s = jnp.concatenate([absent(jnp.take_along_axis(log_q, idx, -1)), s_rest], -1)
        return divergence(log_t, log_s, kind, beta)

    rest_in = () if teacher_rest is None or not rest else (teacher_rest.reshape(-1),)
    return temperature ** 2 * _chunked_mean(per_token, m, chunk_tokens, _flat(student, lead),
                                            _flat(teacher_logprobs, lead), _flat(teacher_indices, lead), *rest_in)


def top_k_log_probs(logits: jax.Array, k: int, temperature: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """The teacher's top-k log-probabilities (float32) and their ids (int32) under softmax(logits / T): what a top-k
    cache stores per token."""
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32) / temperature, -1)
    values, idx = jax.lax.top_k(log_p, k)
    return values, idx.astype(jnp.int32)


def rest_log_prob(logits: jax.Array, idx: jax.Array, temperature: float = 1.0) -> jax.Array:
    """log of the probability mass outside `idx` (..., k) under softmax(logits / T), summed over those tokens rather
    than taken as 1 - the top-k's sum, which float16 top-k values would make wrong by ~1e-3 (and a KL's rest bucket
    multiplies that error by log(rest / student's rest)); floored at float32's smallest normal."""
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32) / temperature, -1)
    lead = log_p.shape[:-1]
    flat, fidx = log_p.reshape(-1, log_p.shape[-1]), idx.reshape(-1, idx.shape[-1])
    in_k = jnp.zeros(flat.shape, bool).at[jnp.arange(flat.shape[0])[:, None], fidx].set(True)
    rest = jax.nn.logsumexp(jnp.where(in_k, -jnp.inf, flat), -1)
    return jnp.maximum(rest, _LOG_TINY).reshape(lead)
