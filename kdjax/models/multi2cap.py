"""Multi2Cap (thesis ch. 3) / LOAE: CED audio encoder -> Q-Former -> linear projector -> LLaMA decoder.

The decoder reads   [prompt prefix] [audio tokens] [prompt suffix] [caption]   as input embeddings (LOAE's
template: BOS + "Describe the detail of this audio:", the projected Q-Former outputs, "\\n---\\nDetailed: ").
Only caption positions are projected to the vocabulary (the hidden state before caption token j predicts
it), so L_cap never materialises prompt logits; in training the caption's last token is not fed, since it
predicts nothing. Position ids count real tokens only, in training and in
generation alike, so audio windows that are all padding leave no gap.

The cross-modal feature distillation heads (`cfd_audio`, `cfd_image`) map an audio feature and the frozen
image teacher's feature to a shared space (thesis eq. 3.1); they exist only for training, and
`audio_only()` drops them for inference and export.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from kdjax.models.ced import CED
from kdjax.models.generate import GenerateConfig, generate
from kdjax.models.llama import LlamaForCausalLM
from kdjax.models.qformer import QFormer

AUDIO_FEATURES = ("encoder_mean", "qformer_mean")


@dataclasses.dataclass(frozen=True)
class Multi2CapConfig:
    prompt_prefix: tuple[int, ...]  # token ids, BOS included
    prompt_suffix: tuple[int, ...]
    audio_feature: str = "encoder_mean"  # which audio feature CFD compares (see AUDIO_FEATURES)
    cfd_dim: int = 0  # shared CFD space; 0 = no heads (LOAE, lambda = 0)
    image_dim: int = 0  # the image teacher's feature width
    share_prefix: bool = True  # training: the prompt prefix runs once per step, not once per row (exact)


def masked_mean(x: jax.Array, mask: jax.Array | None) -> jax.Array:
    if mask is None:
        return x.mean(axis=1)
    m = mask.astype(x.dtype)[..., None]
    return (x * m).sum(axis=1) / jnp.maximum(m.sum(axis=1), 1.0)


class Multi2Cap(nnx.Module):
    def __init__(self, cfg: Multi2CapConfig, audio_encoder: CED, qformer: QFormer, decoder: LlamaForCausalLM, *,
                 rngs: nnx.Rngs):
        if cfg.audio_feature not in AUDIO_FEATURES:
            raise ValueError(f"audio_feature must be one of {AUDIO_FEATURES}, got {cfg.audio_feature!r}")
        self.cfg = cfg
        self.audio_encoder, self.qformer, self.decoder = audio_encoder, qformer, decoder
        self.projector = nnx.Linear(qformer.cfg.hidden_size, decoder.cfg.hidden_size, rngs=rngs)
        if cfg.cfd_dim:
            audio_dim = (audio_encoder.cfg.embed_dim if cfg.audio_feature == "encoder_mean"
                         else qformer.cfg.hidden_size)
            self.cfd_audio = nnx.Linear(audio_dim, cfg.cfd_dim, rngs=rngs)
            self.cfd_image = nnx.Linear(cfg.image_dim, cfg.cfd_dim, rngs=rngs)
        else:
            self.cfd_audio = self.cfd_image = None

    def encode_audio(self, wave: jax.Array, mask: jax.Array | None, *, deterministic: bool = True,
                     rngs: nnx.Rngs | None = None) -> dict[str, jax.Array]:
        kw = dict(deterministic=deterministic, rngs=rngs)
        enc = self.audio_encoder(wave, mask, **kw)
        q = self.qformer(enc["last_hidden_state"], enc["token_mask"], **kw)
        tokens = self.projector(q["last_hidden_state"]).astype(jnp.dtype(self.decoder.cfg.dtype))
        feature = (enc["pooler_output"] if self.cfg.audio_feature == "encoder_mean"
                   else masked_mean(q["last_hidden_state"], q["token_mask"]))
        return {"audio_tokens": tokens, "audio_mask": q["token_mask"], "audio_feature": feature}

    def prompt(self, audio_tokens: jax.Array, audio_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(embeddings, mask) of prefix + audio tokens + suffix."""
        b = audio_tokens.shape[0]
        embed = lambda ids: jnp.broadcast_to(self.decoder.embed(jnp.asarray(ids, jnp.int32))[None],
                                             (b, len(ids), audio_tokens.shape[-1]))
        pre, suf = self.cfg.prompt_prefix, self.cfg.prompt_suffix
        x = jnp.concatenate([embed(pre), audio_tokens.astype(embed(pre).dtype), embed(suf)], axis=1)
        m = jnp.concatenate([jnp.ones((b, len(pre)), bool), audio_mask.astype(bool), jnp.ones((b, len(suf)), bool)],
                            axis=1)
        return x, m

    def __call__(self, wave: jax.Array, mask: jax.Array | None, caption_ids: jax.Array, caption_mask: jax.Array, *,
                 deterministic: bool = True, rngs: nnx.Rngs | None = None) -> dict[str, Any]:
        """Teacher-forced captioning: logits (b, L, vocab) where logits[:, j] predicts caption_ids[:, j]."""
        a = self.encode_audio(wave, mask, deterministic=deterministic, rngs=rngs)
        x, m = self.prompt(a["audio_tokens"], a["audio_mask"])
        p, length = x.shape[1], caption_ids.shape[1]
        # the last caption token is input to nothing: its logits would predict past the caption and, under
        # causal attention, no earlier position reads its keys/values, so it is left out (exact)
        x = jnp.concatenate([x, self.decoder.embed(caption_ids[:, :-1])], axis=1)
        m = jnp.concatenate([m, caption_mask[:, :-1].astype(bool)], axis=1)
        positions = jnp.maximum(jnp.cumsum(m, axis=1) - 1, 0)
        shared = len(self.cfg.prompt_prefix) if self.cfg.share_prefix and p > len(self.cfg.prompt_prefix) else 0
        prefix = x[:1, :shared] if shared else None  # every row's prefix is the same tokens
        out = self.decoder(inputs_embeds=x[:, shared:], attention_mask=m[:, shared:],
                           position_ids=positions[:, shared:], prefix_embeds=prefix, logits=False,
                           deterministic=deterministic, rngs=rngs)
        h = out["last_hidden_state"][:, p - shared - 1:p - shared - 1 + length]
        return {"logits": self.decoder.project(h), "audio_feature": a["audio_feature"],
                "audio_mask": a["audio_mask"]}

    def cfd_embeddings(self, audio_feature: jax.Array, image_feature: jax.Array) -> tuple[jax.Array, jax.Array]:
        if self.cfd_audio is None:
            raise ValueError("this model has no CFD heads (cfd_dim = 0)")
        return self.cfd_audio(audio_feature), self.cfd_image(image_feature.astype(audio_feature.dtype))

    def caption(self, wave: jax.Array, mask: jax.Array | None, cfg: GenerateConfig) -> tuple[jax.Array, jax.Array]:
        """Generated caption tokens (b, max_new_tokens) and lengths; audio only."""
        a = self.encode_audio(wave, mask)
        x, m = self.prompt(a["audio_tokens"], a["audio_mask"])
        return generate(self.decoder, x, m, cfg)

    def audio_only(self) -> "Multi2Cap":
        """The inference model: the same modules without the CFD heads (in place; returns self)."""
        self.cfd_audio = self.cfd_image = None
        return self
