"""On-policy distillation (GKD, Agarwal et al. 2024): the student continues prompts by sampling, the frozen teacher
scores what the student wrote, and the divergence between their next-token distributions is taken on the student's
own tokens, so the student learns where its own mistakes take it rather than only on the corpus's text.

GKD draws, per batch, the student's samples with probability lambda and the corpus's tokens otherwise; distill_lm
takes both every step, weighted (1 - lambda) and lambda (`kd.on_policy.fraction`): the same objective in expectation
and no random branch in the compiled step. The prompts are the first `prompt_tokens` tokens of each packed row's
first sequence (left-padded when that sequence is shorter); the samples get no gradient (GKD's stop-gradient through
sampling), the student's distributions on them do.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from kdjax.models import generate


def prompts(ids: jax.Array, seg: jax.Array, prompt_tokens: int) -> tuple[jax.Array, jax.Array]:
    """(prompt ids (b, P), mask (b, P)): each row's first sequence's first P tokens, left-padded."""
    p = prompt_tokens
    real = (seg[:, :p] == 1).sum(-1)  # the first sequence's tokens within the first P
    src = jnp.arange(p)[None, :] - (p - real)[:, None]  # slot j holds token j - (P - real)
    mask = src >= 0
    return jnp.where(mask, jnp.take_along_axis(ids, jnp.maximum(src, 0), -1), 0), mask.astype(jnp.int32)


def sample(student_lm, ids: jax.Array, seg: jax.Array, key: jax.Array, *, prompt_tokens: int, max_new_tokens: int,
           temperature: float, eos_token_id: int | None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The student's continuations of each row's prompt: (sequence ids (b, P + N), attention mask (b, P + N), mask of
    the sampled positions that count (b, P + N): generated tokens up to and including EOS)."""
    prompt, pmask = prompts(ids, seg, prompt_tokens)
    gdef, state = nnx.split(student_lm)
    frozen = nnx.merge(gdef, jax.lax.stop_gradient(state))  # no gradient through sampling
    cfg = generate.GenerateConfig(max_new_tokens=max_new_tokens, eos_token_id=-1 if eos_token_id is None
                                  else int(eos_token_id), pad_token_id=0)
    out, lengths = generate.greedy(frozen, frozen.embed(prompt), pmask, cfg, key=key, temperature=temperature)
    new = jnp.arange(max_new_tokens)[None, :] < lengths[:, None]
    seq = jnp.concatenate([prompt, out], 1)
    attn = jnp.concatenate([pmask, new.astype(jnp.int32)], 1)
    counted = jnp.concatenate([jnp.zeros_like(pmask), new.astype(jnp.int32)], 1)
    return jax.lax.stop_gradient(seq), attn, counted


def score(lm, seq: jax.Array, attn: jax.Array, counted: jax.Array, *, chunked: bool = False, **kw
          ) -> tuple[jax.Array, jax.Array | None, jax.Array]:
    """`lm` over the sampled sequences (left-padded prompts: positions count real tokens only): (logits (b, P + N, V),
    None) or, `chunked`, (final hidden states, the head matrix), and the mask of the positions that predict a
    counted token."""
    positions = jnp.maximum(jnp.cumsum(attn, 1) - 1, 0)
    out = lm(seq, attention_mask=attn, position_ids=positions, logits=not chunked, **kw)
    x, head = (out["last_hidden_state"], lm.head_kernel()) if chunked else (out["logits"], None)
    # position i predicts token i + 1: shift the mask of counted tokens one to the left
    predicts = jnp.concatenate([counted[:, 1:], jnp.zeros_like(counted[:, :1])], 1)
    return x, head, predicts.astype(jnp.float32)
