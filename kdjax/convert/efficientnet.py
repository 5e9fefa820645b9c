"""Parameter map between the `efficientnet_pytorch` package's EfficientNet and kdjax.models.efficientnet.

efficientnet_pytorch names every module with a leading underscore and numbers BatchNorms per block
(`_bn0` after the expansion, `_bn1` after the depthwise convolution, `_bn2` after the projection); kdjax
groups each convolution with its BatchNorm. The map is used both ways (load a state dict, export one).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from kdjax.convert.param_map import ConversionError, Entry, TensorRule, expand
from kdjax.models.efficientnet import EfficientNetConfig

IGNORE = ("*num_batches_tracked", "_fc.*")  # the ImageNet classifier; the audio encoder uses features


def _conv_bn(hf_conv: str, hf_bn: str, flax: str) -> list[Entry]:
    return [Entry(hf_conv, f"{flax}.conv", "conv_nobias"), Entry(hf_bn, f"{flax}.bn", "batchnorm")]


def entries(cfg: EfficientNetConfig) -> list[Entry]:
    out = _conv_bn("_conv_stem", "_bn0", "stem")
    for i, (a, _) in enumerate(cfg.block_list()):
        hf, fx = f"_blocks.{i}", f"blocks.{i}"
        if a.expand_ratio != 1:
            out += _conv_bn(f"{hf}._expand_conv", f"{hf}._bn0", f"{fx}.expand")
        out += _conv_bn(f"{hf}._depthwise_conv", f"{hf}._bn1", f"{fx}.depthwise")
        if a.se_ratio is not None and 0 < a.se_ratio <= 1:
            out += [Entry(f"{hf}._se_reduce", f"{fx}.se_reduce", "conv"),
                    Entry(f"{hf}._se_expand", f"{fx}.se_expand", "conv")]
        out += _conv_bn(f"{hf}._project_conv", f"{hf}._bn2", f"{fx}.project")
    return out + _conv_bn("_conv_head", "_bn1", "head")


def rules(cfg: EfficientNetConfig, prefix: str = "") -> list[TensorRule]:
    return expand([Entry(prefix + e.hf, e.flax, e.kind) for e in entries(cfg)])


def infer_config(tensors: Mapping[str, np.ndarray], name: str = "efficientnet-b2", prefix: str = "",
                 **overrides) -> EfficientNetConfig:
    """The config of `name` with the input channels read from the stem; the block count is checked so a
    state dict of another width or depth fails here, naming what differs."""
    stem = tensors.get(prefix + "_conv_stem.weight")
    if stem is None:
        raise ConversionError(f"no '{prefix}_conv_stem.weight': not an efficientnet_pytorch state dict")
    cfg = EfficientNetConfig.from_name(name, **{"in_channels": int(np.shape(stem)[1]), **overrides})
    found = {int(k[len(prefix) + 8:].split(".")[0]) for k in tensors if k.startswith(prefix + "_blocks.")}
    if len(found) != len(cfg.block_list()) or np.shape(stem)[0] != cfg.filters(32):
        raise ConversionError(f"state dict has {len(found)} blocks and a {np.shape(stem)[0]}-channel stem; "
                              f"{name} has {len(cfg.block_list())} and {cfg.filters(32)}")
    return cfg


# ------------------------------------------------------------------------------------- load / save
def load_efficientnet(tensors, *, name: str = "efficientnet-b2", prefix: str = "", source: str = "", seed: int = 0,
                      **overrides):
    """An EfficientNet from an efficientnet_pytorch state dict (`prefix` strips an outer module's name)."""
    from flax import nnx

    from kdjax.convert.common import load_family
    from kdjax.models.efficientnet import EfficientNet

    cfg = infer_config(tensors, name, prefix, **overrides)
    return load_family(tensors, lambda: EfficientNet(cfg, rngs=nnx.Rngs(seed)), rules(cfg, prefix),
                       tuple(prefix + p for p in IGNORE), source)


def load(path: str, *, seed: int = 0, **overrides):
    """A directory written by `save` (config.json with the kdjax config, model.safetensors)."""
    from flax import nnx

    from kdjax.convert.checkpoint_io import LazyTensors, read_config
    from kdjax.convert.common import config_from_json, load_family
    from kdjax.models.efficientnet import EfficientNet

    cfg = config_from_json(EfficientNetConfig, {**read_config(path)["efficientnet"], **overrides})
    return load_family(LazyTensors(path), lambda: EfficientNet(cfg, rngs=nnx.Rngs(seed)), rules(cfg), IGNORE, path)


def save(model, out_dir: str, **_) -> None:
    """model.safetensors in efficientnet_pytorch's names (BatchNorm statistics included; the ImageNet classifier
    `_fc`, which kdjax's feature encoder has not, is absent) and config.json."""
    from flax import nnx

    from kdjax.convert.common import config_to_json, host_flat, with_batch_counts, write_dir
    from kdjax.convert.param_map import flax_to_hf

    tensors = with_batch_counts(flax_to_hf(host_flat(model, nnx.Param, nnx.BatchStat), rules(model.cfg)))
    write_dir(out_dir, tensors, {"model_type": "kdjax_efficientnet", "efficientnet": config_to_json(model.cfg)})


def _register():
    from kdjax.convert import registry
    from kdjax.models.efficientnet import EfficientNet

    registry.register(registry.Family(
        "efficientnet", ("kdjax_efficientnet",), (EfficientNet,),
        lambda path, *, task=None, arch=None, seed=0, mesh=None, **kw: load(path, seed=seed, **kw), save))


_register()
