"""ResNet (He et al. 2016; v1.5: stride on the 3x3 convolution) as a Flax NNX module, named as transformers'
ResNetModel so the parameter map (kdjax.convert.hf_resnet) is the identity on module paths.

Images are channels-last (b, H, W, 3), already normalised. Returns last_hidden_state (b, h, w, C),
pooler_output and `features` (b, C): the global average, the pooled embedding a frozen image teacher
hands to distillation. As a teacher, BatchNorm always uses its running statistics.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from kdjax.models.layers import activation

LOGICAL_AXES = ((r"convolution\.kernel$", (None, None, None, "conv_out")),)


@dataclasses.dataclass(frozen=True)
class ResNetConfig:
    num_channels: int = 3
    embedding_size: int = 64
    hidden_sizes: tuple[int, ...] = (256, 512, 1024, 2048)
    depths: tuple[int, ...] = (3, 4, 6, 3)
    layer_type: str = "bottleneck"  # or "basic" (ResNet-18/34)
    hidden_act: str = "relu"
    downsample_in_first_stage: bool = False
    downsample_in_bottleneck: bool = False
    dtype: Any = jnp.float32

    @classmethod
    def from_hf(cls, d: dict[str, Any], **overrides) -> "ResNetConfig":
        names = {f.name for f in dataclasses.fields(cls)} - {"dtype"}
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names and v is not None}
        kw.update(overrides)
        return cls(**kw)

    def to_hf(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "dtype"}
        d.update(model_type="resnet", architectures=["ResNetModel"], hidden_sizes=list(self.hidden_sizes),
                 depths=list(self.depths))
        return d


class ConvLayer(nnx.Module):
    def __init__(self, n_in: int, n_out: int, k: int, stride: int, act: str | None, cfg: ResNetConfig,
                 rngs: nnx.Rngs):
        self.convolution = nnx.Conv(n_in, n_out, (k, k), strides=(stride, stride), padding=[(k // 2, k // 2)] * 2,
                                    use_bias=False, dtype=cfg.dtype, rngs=rngs)
        self.normalization = nnx.BatchNorm(n_out, momentum=0.9, epsilon=1e-5, use_running_average=True,
                                           dtype=cfg.dtype, rngs=rngs)
        self.act = activation(act) if act else None

    def __call__(self, x):
        x = self.normalization(self.convolution(x))
        return self.act(x) if self.act is not None else x


class ShortCut(nnx.Module):
    def __init__(self, n_in: int, n_out: int, stride: int, cfg: ResNetConfig, rngs: nnx.Rngs):
        self.convolution = nnx.Conv(n_in, n_out, (1, 1), strides=(stride, stride), padding="VALID", use_bias=False,
                                    dtype=cfg.dtype, rngs=rngs)
        self.normalization = nnx.BatchNorm(n_out, momentum=0.9, epsilon=1e-5, use_running_average=True,
                                           dtype=cfg.dtype, rngs=rngs)

    def __call__(self, x):
        return self.normalization(self.convolution(x))


class ResidualLayer(nnx.Module):
    """Bottleneck (1x1 reduce, 3x3, 1x1 expand) or basic (3x3, 3x3) residual layer."""

    def __init__(self, n_in: int, n_out: int, stride: int, cfg: ResNetConfig, rngs: nnx.Rngs):
        act = cfg.hidden_act
        self.shortcut = ShortCut(n_in, n_out, stride, cfg, rngs) if (n_in != n_out or stride != 1) else None
        if cfg.layer_type == "bottleneck":
            mid = n_out // 4
            s1, s2 = (stride, 1) if cfg.downsample_in_bottleneck else (1, stride)
            convs = [ConvLayer(n_in, mid, 1, s1, act, cfg, rngs), ConvLayer(mid, mid, 3, s2, act, cfg, rngs),
                     ConvLayer(mid, n_out, 1, 1, None, cfg, rngs)]
        elif cfg.layer_type == "basic":
            convs = [ConvLayer(n_in, n_out, 3, stride, act, cfg, rngs), ConvLayer(n_out, n_out, 3, 1, None, cfg, rngs)]
        else:
            raise ValueError(f"unknown ResNet layer_type {cfg.layer_type!r}")
        self.layer = nnx.List(convs)
        self.act = activation(act)

    def __call__(self, x):
        residual = x if self.shortcut is None else self.shortcut(x)
        for conv in self.layer:
            x = conv(x)
        return self.act(x + residual)


class Stage(nnx.Module):
    def __init__(self, n_in: int, n_out: int, stride: int, depth: int, cfg: ResNetConfig, rngs: nnx.Rngs):
        self.layers = nnx.List([ResidualLayer(n_in if i == 0 else n_out, n_out, stride if i == 0 else 1, cfg, rngs)
                                for i in range(depth)])


class Encoder(nnx.Module):
    def __init__(self, cfg: ResNetConfig, rngs: nnx.Rngs):
        ins = (cfg.embedding_size,) + tuple(cfg.hidden_sizes[:-1])
        self.stages = nnx.List([
            Stage(n_in, n_out, (2 if cfg.downsample_in_first_stage else 1) if i == 0 else 2, depth, cfg, rngs)
            for i, (n_in, n_out, depth) in enumerate(zip(ins, cfg.hidden_sizes, cfg.depths))])


class Embedder(nnx.Module):
    def __init__(self, cfg: ResNetConfig, rngs: nnx.Rngs):
        self.embedder = ConvLayer(cfg.num_channels, cfg.embedding_size, 7, 2, cfg.hidden_act, cfg, rngs)

    def __call__(self, x):
        x = self.embedder(x)
        return nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


class ResNet(nnx.Module):
    def __init__(self, cfg: ResNetConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embedder = Embedder(cfg, rngs)
        self.encoder = Encoder(cfg, rngs)

    def __call__(self, pixels: jax.Array, *, output_hidden_states: bool = False, **_) -> dict[str, Any]:
        if pixels.ndim != 4 or pixels.shape[-1] != self.cfg.num_channels:
            raise ValueError(f"ResNet expects (b, H, W, {self.cfg.num_channels}) images, got {pixels.shape}")
        x = self.embedder(pixels.astype(self.cfg.dtype))
        hidden = [x]
        for stage in self.encoder.stages:
            for layer in stage.layers:
                x = layer(x)
            hidden.append(x)
        pooled = x.mean(axis=(1, 2))
        out = {"last_hidden_state": x, "pooler_output": pooled, "features": pooled}
        if output_hidden_states:
            out["hidden_states"] = tuple(hidden)
        return out
