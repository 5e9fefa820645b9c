"""Parameter map between transformers' ResNetModel and kdjax.models.resnet (identity on module paths)."""

from __future__ import annotations

from kdjax.convert.param_map import Entry, TensorRule, expand
from kdjax.models.resnet import ResNetConfig

IGNORE = ("*num_batches_tracked", "classifier.*")


def _conv_bn(path: str) -> list[Entry]:
    return [Entry(f"{path}.convolution", f"{path}.convolution", "conv_nobias"),
            Entry(f"{path}.normalization", f"{path}.normalization", "batchnorm")]


def entries(cfg: ResNetConfig) -> list[Entry]:
    out = _conv_bn("embedder.embedder")
    ins = (cfg.embedding_size,) + tuple(cfg.hidden_sizes[:-1])
    convs = 3 if cfg.layer_type == "bottleneck" else 2
    for s, (n_in, n_out, depth) in enumerate(zip(ins, cfg.hidden_sizes, cfg.depths)):
        stride = (2 if cfg.downsample_in_first_stage else 1) if s == 0 else 2
        for j in range(depth):
            base = f"encoder.stages.{s}.layers.{j}"
            if j == 0 and (n_in != n_out or stride != 1):
                out += _conv_bn(f"{base}.shortcut")
            for k in range(convs):
                out += _conv_bn(f"{base}.layer.{k}")
    return out


def rules(cfg: ResNetConfig, hf_prefix: str = "") -> list[TensorRule]:
    return expand([Entry(hf_prefix + e.hf, e.flax, e.kind) for e in entries(cfg)])


# ------------------------------------------------------------------------------------- load / save
def load_tensors(tensors, hf_cfg: dict, *, source: str = "", seed: int = 0, **overrides):
    """ResNetModel / ResNetForImageClassification tensors (the classifier is ignored) -> (kdjax ResNet,
    LoadReport)."""
    from flax import nnx

    from kdjax.convert.common import load_family
    from kdjax.models.resnet import ResNet

    prefix = "resnet." if any(k.startswith("resnet.") for k in tensors) else ""
    cfg = ResNetConfig.from_hf(hf_cfg, **overrides)
    return load_family(tensors, lambda: ResNet(cfg, rngs=nnx.Rngs(seed)), rules(cfg, prefix), IGNORE, source)


def load(path: str, *, seed: int = 0, **overrides):
    from kdjax.convert.checkpoint_io import LazyTensors, read_config

    return load_tensors(LazyTensors(path), read_config(path), source=path, seed=seed, **overrides)


def save(model, out_dir: str, **_) -> None:
    """A ResNetModel directory (with the BatchNorm statistics)."""
    from flax import nnx

    from kdjax.convert.common import host_flat, write_dir
    from kdjax.convert.param_map import HFView

    write_dir(out_dir, HFView(host_flat(model, nnx.Param, nnx.BatchStat), rules(model.cfg)), model.cfg.to_hf())


def _register():
    from kdjax.convert import registry
    from kdjax.models.resnet import ResNet

    registry.register(registry.Family(
        "resnet", ("resnet",), (ResNet,), lambda path, *, task=None, arch=None, seed=0, mesh=None, **kw: load(
            path, seed=seed, **kw), save))


_register()
