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


# ------------------------------------------------------------------------------------- load / save
def load_qformer(tensors, hf_cfg: dict, *, hf_prefix: str = "qformer.", query_tokens: str = "query_tokens",
                 source: str = "", seed: int = 0, **overrides):
    """A kdjax Q-Former from HF-named tensors: a Blip2Model's `qformer.*` + `query_tokens` (the defaults), or a
    bare Blip2QFormerModel's (hf_prefix="", query tokens under any name). `hf_cfg` is the Blip2QFormerConfig
    dict; overrides set e.g. window=17. Returns (model, LoadReport)."""
    import dataclasses

    import numpy as np
    from flax import nnx

    from kdjax.convert.common import load_family
    from kdjax.models.qformer import QFormer

    cfg = QFormerConfig.from_hf(hf_cfg, **overrides)
    if query_tokens in tensors and "num_query_tokens" not in overrides:
        cfg = dataclasses.replace(cfg, num_query_tokens=int(np.shape(tensors[query_tokens])[1]))
    skip = IGNORE + (("vision_model.*", "language_model.*", "language_projection.*") if hf_prefix else ())
    return load_family(tensors, lambda: QFormer(cfg, rngs=nnx.Rngs(seed)), rules(cfg, hf_prefix, query_tokens),
                       skip, source)


def qformer_tensors(model, *, hf_prefix: str = "qformer.", query_tokens: str = "query_tokens"):
    """The Q-Former's parameters under transformers' names (the inverse of `load_qformer`)."""
    from kdjax.convert.common import host_flat
    from kdjax.convert.param_map import flax_to_hf

    return flax_to_hf(host_flat(model), rules(model.cfg, hf_prefix, query_tokens))


def load(path: str, *, seed: int = 0, **overrides):
    """A BLIP-2 checkpoint's Q-Former (model_type blip-2), or a Blip2QFormerModel directory written by `save`
    (its query tokens stored beside the Q-Former's tensors as `query_tokens`; kdjax's window in config.json)."""
    from kdjax.convert.checkpoint_io import LazyTensors, read_config

    hf_cfg = read_config(path)
    if hf_cfg.get("model_type") == "blip-2":
        return load_qformer(LazyTensors(path), hf_cfg.get("qformer_config", {}), source=path, seed=seed, **overrides)
    kdjax = {"window": hf_cfg["kdjax_window"]} if "kdjax_window" in hf_cfg else {}
    return load_qformer(LazyTensors(path), hf_cfg, hf_prefix="", source=path, seed=seed, **{**kdjax, **overrides})


def save(model, out_dir: str, **_) -> None:
    """A Blip2QFormerModel directory (transformers' Blip2QFormerModel.from_pretrained reads it; the learned query
    tokens, which BLIP-2 keeps outside that class, are the extra tensor `query_tokens`)."""
    from kdjax.convert.common import write_dir

    write_dir(out_dir, qformer_tensors(model, hf_prefix=""), {**model.cfg.to_hf(),
                                                              "architectures": ["Blip2QFormerModel"]})


def _register():
    from kdjax.convert import registry
    from kdjax.models.qformer import QFormer

    registry.register(registry.Family(
        "qformer", ("blip-2", "blip_2_qformer"), (QFormer,),
        lambda path, *, task=None, arch=None, seed=0, mesh=None, **kw: load(path, seed=seed, **kw), save))


_register()
