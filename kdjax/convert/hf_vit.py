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


# ------------------------------------------------------------------------------------- load / save
def load_tensors(tensors, hf_cfg: dict, *, source: str = "", seed: int = 0, **overrides):
    """ViTModel / ViTForImageClassification tensors (the classifier is ignored) -> (kdjax ViT, LoadReport)."""
    from flax import nnx

    from kdjax.convert.common import load_family
    from kdjax.models.vit import ViT

    prefix = "vit." if any(k.startswith("vit.") for k in tensors) else ""
    has_pooler = any(k.endswith("pooler.dense.weight") for k in tensors)
    cfg = ViTConfig.from_hf(hf_cfg, **{"add_pooling_layer": has_pooler, **overrides})
    return load_family(tensors, lambda: ViT(cfg, rngs=nnx.Rngs(seed)), rules(cfg, prefix), IGNORE, source)


def load(path: str, *, seed: int = 0, **overrides):
    from kdjax.convert.checkpoint_io import LazyTensors, read_config

    return load_tensors(LazyTensors(path), read_config(path), source=path, seed=seed, **overrides)


def save(model, out_dir: str, **_) -> None:
    """A ViTModel directory."""
    from kdjax.convert.common import host_flat, write_dir
    from kdjax.convert.param_map import HFView

    write_dir(out_dir, HFView(host_flat(model), rules(model.cfg)), model.cfg.to_hf())


def _register():
    from kdjax.convert import registry
    from kdjax.models.vit import ViT

    registry.register(registry.Family(
        "vit", ("vit",), (ViT,), lambda path, *, task=None, arch=None, seed=0, mesh=None, **kw: load(path, seed=seed,
                                                                                                      **kw), save))


_register()
