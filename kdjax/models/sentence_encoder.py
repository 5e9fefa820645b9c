"""Sentence embeddings as sentence-transformers computes them: a BERT encoder, token pooling, optional
L2 normalisation (Reimers & Gurevych 2019, sec. 3: MEAN pooling by default).

Pooling follows sentence-transformers' `Pooling` module: "mean" averages the token embeddings under the
attention mask (denominator clamped at 1e-9), "cls" takes the first token, "max" the masked maximum,
"mean_sqrt_len" divides the masked sum by sqrt(token count).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from kdjax.models.bert import BertModel

POOLING = ("mean", "cls", "max", "mean_sqrt_len")


def pool(tokens: jax.Array, mask: jax.Array, mode: str) -> jax.Array:
    m = mask.astype(tokens.dtype)[..., None]
    if mode == "cls":
        return tokens[:, 0]
    if mode == "max":
        return jnp.max(jnp.where(m > 0, tokens, -1e9), axis=1)
    total = jnp.sum(tokens * m, axis=1)
    count = jnp.maximum(jnp.sum(m, axis=1), 1e-9)
    if mode == "mean":
        return total / count
    if mode == "mean_sqrt_len":
        return total / jnp.sqrt(count)
    raise ValueError(f"pooling {mode!r}; expected one of {POOLING}")


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """torch.nn.functional.normalize(x, p=2, dim=-1): x / max(||x||, eps)."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


class SentenceEncoder(nnx.Module):
    """Returns `token_embeddings` (the encoder's last_hidden_state) and `sentence_embedding`."""

    def __init__(self, encoder: BertModel, pooling: str = "mean", normalize: bool = False):
        if pooling not in POOLING:
            raise ValueError(f"pooling {pooling!r}; expected one of {POOLING}")
        self.encoder, self.pooling, self.normalize = encoder, pooling, normalize

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array,
                 token_type_ids: jax.Array | None = None) -> dict[str, Any]:
        tokens = self.encoder(input_ids, attention_mask, token_type_ids)["last_hidden_state"]
        emb = pool(tokens.astype(jnp.float32), attention_mask, self.pooling)
        return {"token_embeddings": tokens, "sentence_embedding": l2_normalize(emb) if self.normalize else emb}
