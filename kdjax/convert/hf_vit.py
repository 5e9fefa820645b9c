"""Parameter map between transformers' ViTModel and kdjax.models.vit.ViT (timm-style block names)."""

from __future__ import annotations

from kdjax.convert.param_map import Entry, TensorRule, expand
from kdjax.models.vit import ViTConfig

IGNORE = ("embeddings.mask_token", "classifier.*")


def entries(cfg: ViTConfig, hf_prefix: str = "") -> list[Entry]:
    h = lambda n: f"{hf_prefix}{n}"
    layer = "encoder.layer.{i}."
    out = [Entry(h("embeddings.cls_token"), "cls_token", "tensor"),
           Entry(h("embeddings.position_embeddings"), "pos_embed", "tensor"),
           Entry(h("embeddings.patch_embeddings.projection"), "patch_embed", "conv"),
           Entry(h(layer + "layernorm_before"), "blocks.{i}.norm1", "layernorm"),
           Entry(h(layer + "attention.attention.query"), "blocks.{i}.attn.q_proj", "linear"),
           Entry(h(layer + "attention.attention.key"), "blocks.{i}.attn.k_proj", "linear"),
           Entry(h(layer + "attention.attention.value"), "blocks.{i}.attn.v_proj", "linear"),
           Entry(h(layer + "attention.output.dense"), "blocks.{i}.attn.proj", "linear"),
           Entry(h(layer + "layernorm_after"), "blocks.{i}.norm2", "layernorm"),
           Entry(h(layer + "intermediate.dense"), "blocks.{i}.mlp.fc1", "linear"),
           Entry(h(layer + "output.dense"), "blocks.{i}.mlp.fc2", "linear"),
           Entry(h("layernorm"), "norm", "layernorm")]
    if cfg.add_pooling_layer:
        out.append(Entry(h("pooler.dense"), "pooler", "linear"))
    return out


def rules(cfg: ViTConfig, hf_prefix: str = "") -> list[TensorRule]:
    return expand(entries(cfg, hf_prefix), cfg.num_hidden_layers)
