"""Parameter map between transformers' BLIP-2 Q-Former (Blip2QFormerModel, plus Blip2Model's
`query_tokens`) and kdjax.models.qformer. HF calls the attention core `attention.attention`; kdjax reuses
BERT's layers, where it is `attention.self`."""

from __future__ import annotations

from kdjax.convert.param_map import Entry, TensorRule, expand
from kdjax.models.qformer import QFormerConfig

# Unused by a query-only Q-Former: the text branch of checkpoints made with text input.
IGNORE = ("*encoder.layer.*.intermediate.dense.*", "*encoder.layer.*.output.dense.*",
          "*encoder.layer.*.output.LayerNorm.*", "*embeddings.*")


def _attention(hf: str, fx: str) -> list[Entry]:
    return [Entry(f"{hf}.attention.{n}", f"{fx}.self.{n}", "linear") for n in ("query", "key", "value")] + [
        Entry(f"{hf}.output.dense", f"{fx}.output.dense", "linear"),
        Entry(f"{hf}.output.LayerNorm", f"{fx}.output.LayerNorm", "layernorm")]


def entries(cfg: QFormerConfig, hf_prefix: str = "qformer.", query_tokens: str = "query_tokens") -> list[Entry]:
    layer = "encoder.layer.{i}"
    out = [Entry(query_tokens, "query_tokens", "tensor"), Entry(f"{hf_prefix}layernorm", "layernorm", "layernorm")]
    out += _attention(f"{hf_prefix}{layer}.attention", f"{layer}.attention")
    out += [Entry(f"{hf_prefix}{layer}.intermediate_query.dense", f"{layer}.intermediate_query.dense", "linear"),
            Entry(f"{hf_prefix}{layer}.output_query.dense", f"{layer}.output_query.dense", "linear"),
            Entry(f"{hf_prefix}{layer}.output_query.LayerNorm", f"{layer}.output_query.LayerNorm", "layernorm")]
    for i in range(0, cfg.num_hidden_layers, cfg.cross_attention_frequency):
        out += _attention(f"{hf_prefix}encoder.layer.{i}.crossattention", f"encoder.layer.{i}.crossattention")
    return out


def rules(cfg: QFormerConfig, hf_prefix: str = "qformer.", query_tokens: str = "query_tokens") -> list[TensorRule]:
    return expand(entries(cfg, hf_prefix, query_tokens), cfg.num_hidden_layers)
