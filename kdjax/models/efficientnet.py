"""EfficientNet (Tan & Le 2019) as a Flax NNX module, laid out as the `efficientnet_pytorch` package's model.

EffAAC's student encoder is efficientnet_pytorch's `efficientnet-b2` with one input channel over the log-mel
image (seed 002; ../shared/reference/effaac.md). Each convolution sits with its BatchNorm (`blocks.3.depthwise`
holds the package's `_blocks.3._depthwise_conv` and `_blocks.3._bn1`); kdjax.convert.efficientnet maps them.

Two details of that package matter for parity and are kept:
- "Same" padding is static: each convolution's padding is computed once from the model's nominal
  `image_size` (260 for B2) as the image shrinks through the strides, not from the input actually given.
  A (64 mel x T frames) input therefore gets the padding a 260 x 260 image would. `image_size=None` gives
  TensorFlow's dynamic SAME padding instead (the package's Conv2dDynamicSamePadding).
- Drop connect (stochastic depth) drops whole samples of a residual branch with a rate growing linearly
  with the block index, in training only.

Inputs are channels-last (b, H, W, C). BatchNorm trains on batch statistics when `deterministic=False`;
running statistics are updated with flax's biased batch variance (PyTorch uses the unbiased one: a factor
n / (n - 1), with n = batch x H x W elements per channel).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from kdjax.models.layers import depthwise_conv2d

# efficientnet_pytorch's block strings (repeats, kernel, stride, expansion, filters in/out, squeeze ratio)
BLOCKS = ("r1_k3_s11_e1_i32_o16_se0.25", "r2_k3_s22_e6_i16_o24_se0.25", "r2_k5_s22_e6_i24_o40_se0.25",
          "r3_k3_s22_e6_i40_o80_se0.25", "r3_k5_s11_e6_i80_o112_se0.25", "r4_k5_s22_e6_i112_o192_se0.25",
          "r1_k3_s11_e6_i192_o320_se0.25")
# name -> (width, depth, image size, dropout), as efficientnet_pytorch.utils.efficientnet_params
VARIANTS = {f"efficientnet-b{i}": v for i, v in enumerate([
    (1.0, 1.0, 224, 0.2), (1.0, 1.1, 240, 0.2), (1.1, 1.2, 260, 0.3), (1.2, 1.4, 300, 0.3),
    (1.4, 1.8, 380, 0.4), (1.6, 2.2, 456, 0.4), (1.8, 2.6, 528, 0.5), (2.0, 3.1, 600, 0.5)])}

@dataclasses.dataclass(frozen=True)
class BlockArgs:
    num_repeat: int
    kernel_size: int
    stride: int
    expand_ratio: int
    input_filters: int
    output_filters: int
    se_ratio: float | None

    @classmethod
    def parse(cls, s: str) -> "BlockArgs":
        opts = dict(re.match(r"([a-z]+)(\d.*)", op).groups() for op in s.split("_"))
        return cls(int(opts["r"]), int(opts["k"]), int(opts["s"][0]), int(opts["e"]), int(opts["i"]),
                   int(opts["o"]), float(opts["se"]) if "se" in opts else None)


@dataclasses.dataclass(frozen=True)
class EfficientNetConfig:
    width_coefficient: float = 1.1
    depth_coefficient: float = 1.2
    image_size: int | None = 260  # the static-padding reference size; None = dynamic SAME padding
    in_channels: int = 1
    blocks: tuple[str, ...] = BLOCKS
    batch_norm_epsilon: float = 1e-3
    batch_norm_momentum: float = 0.99  # flax convention (PyTorch momentum 0.01)
    drop_connect_rate: float = 0.2
    depth_divisor: int = 8
    dtype: Any = jnp.float32

    @classmethod
    def from_name(cls, name: str, **overrides) -> "EfficientNetConfig":
        if name not in VARIANTS:
            raise ValueError(f"unknown EfficientNet {name!r}; known: {sorted(VARIANTS)}")
        w, d, size, _ = VARIANTS[name]
        return cls(**{"width_coefficient": w, "depth_coefficient": d, "image_size": size, **overrides})

    def filters(self, n: int) -> int:
        """efficientnet_pytorch.utils.round_filters."""
        n_scaled = n * self.width_coefficient
        out = max(self.depth_divisor, int(n_scaled + self.depth_divisor / 2) // self.depth_divisor * self.depth_divisor)
        return out + self.depth_divisor if out < 0.9 * n_scaled else out

    def repeats(self, n: int) -> int:
        return int(math.ceil(self.depth_coefficient * n))

    @property
    def out_channels(self) -> int:
        return self.filters(1280)

    def block_list(self) -> list[tuple[BlockArgs, int | None]]:
        """Every MBConv block's arguments with the image size its depthwise padding is computed for."""
        out, size = [], None if self.image_size is None else -(-self.image_size // 2)  # after the stem
        for s in self.blocks:
            a = BlockArgs.parse(s)
            a = dataclasses.replace(a, input_filters=self.filters(a.input_filters),
                                    output_filters=self.filters(a.output_filters), num_repeat=self.repeats(a.num_repeat))
            out.append((a, size))
            size = None if size is None else -(-size // a.stride)
            rest = dataclasses.replace(a, input_filters=a.output_filters, stride=1)
            out += [(rest, size)] * (a.num_repeat - 1)
        return out


def _padding(k: int, stride: int, size: int | None):
    if size is None:
        return "SAME"
    total = max((-(-size // stride) - 1) * stride + k - size, 0)
    return [(total // 2, total - total // 2)] * 2


class ConvBN(nnx.Module):
    """Convolution without bias + BatchNorm (+ swish), efficientnet_pytorch's conv/bn pairs."""

    def __init__(self, n_in: int, n_out: int, k: int, stride: int, size: int | None, cfg: EfficientNetConfig,
                 rngs: nnx.Rngs, groups: int = 1, act: bool = True):
        self.conv = nnx.Conv(n_in, n_out, (k, k), strides=(stride, stride), padding=_padding(k, stride, size),
                             feature_group_count=groups, use_bias=False, dtype=cfg.dtype, rngs=rngs)
        self.bn = nnx.BatchNorm(n_out, momentum=cfg.batch_norm_momentum, epsilon=cfg.batch_norm_epsilon,
                                dtype=cfg.dtype, rngs=rngs)
        self.act = act
        self.depthwise = groups > 1 and groups == n_in == n_out
        self.stride, self.padding = stride, _padding(k, stride, size)

    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        if self.depthwise:  # the conv's kernel, computed by the CPU-friendly depthwise routine
            x = depthwise_conv2d(x.astype(self.conv.dtype), self.conv.kernel[...], self.stride, self.padding)
        else:
            x = self.conv(x)
        x = self.bn(x, use_running_average=deterministic)
        return jax.nn.silu(x) if self.act else x


class MBConv(nnx.Module):
    """Mobile inverted bottleneck: 1x1 expand, depthwise k x k, squeeze-excitation, 1x1 project, residual."""

    def __init__(self, a: BlockArgs, size: int | None, cfg: EfficientNetConfig, rngs: nnx.Rngs):
        self.args = a
        mid = a.input_filters * a.expand_ratio
        self.expand = ConvBN(a.input_filters, mid, 1, 1, size, cfg, rngs) if a.expand_ratio != 1 else None
        self.depthwise = ConvBN(mid, mid, a.kernel_size, a.stride, size, cfg, rngs, groups=mid)
        if a.se_ratio is not None and 0 < a.se_ratio <= 1:
            squeezed = max(1, int(a.input_filters * a.se_ratio))
            self.se_reduce = nnx.Conv(mid, squeezed, (1, 1), dtype=cfg.dtype, rngs=rngs)
            self.se_expand = nnx.Conv(squeezed, mid, (1, 1), dtype=cfg.dtype, rngs=rngs)
        else:
            self.se_reduce = self.se_expand = None
        self.project = ConvBN(mid, a.output_filters, 1, 1, size, cfg, rngs, act=False)

    def __call__(self, inputs: jax.Array, drop_rate: float, deterministic: bool, rngs: nnx.Rngs | None) -> jax.Array:
        x = inputs if self.expand is None else self.expand(inputs, deterministic)
        x = self.depthwise(x, deterministic)
        if self.se_reduce is not None:
            s = x.mean(axis=(1, 2), keepdims=True)
            x = jax.nn.sigmoid(self.se_expand(jax.nn.silu(self.se_reduce(s)))) * x
        x = self.project(x, deterministic)
        a = self.args
        if a.stride == 1 and a.input_filters == a.output_filters:
            if drop_rate and not deterministic:
                if rngs is None:
                    raise ValueError("drop connect in training needs rngs")
                keep = jax.random.bernoulli(rngs.dropout(), 1.0 - drop_rate, (x.shape[0], 1, 1, 1))
                x = jnp.where(keep, x / (1.0 - drop_rate), 0.0)
            x = x + inputs
        return x


class EfficientNet(nnx.Module):
    """Returns `last_hidden_state` (b, H/32, W/32, C): the head's swish(bn(conv 1x1)) feature map, which is
    efficientnet_pytorch's `extract_features` in channels-last layout."""

    def __init__(self, cfg: EfficientNetConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.stem = ConvBN(cfg.in_channels, cfg.filters(32), 3, 2, cfg.image_size, cfg, rngs)
        blocks = cfg.block_list()
        self.blocks = nnx.List([MBConv(a, size, cfg, rngs) for a, size in blocks])
        last = blocks[-1][0].output_filters
        self.head = ConvBN(last, cfg.out_channels, 1, 1, None, cfg, rngs)

    def __call__(self, x: jax.Array, *, deterministic: bool = True, rngs: nnx.Rngs | None = None) -> dict[str, Any]:
        x = self.stem(x.astype(self.cfg.dtype), deterministic)
        n = len(self.blocks)
        for i, block in enumerate(self.blocks):
            x = block(x, self.cfg.drop_connect_rate * i / n, deterministic, rngs)
        return {"last_hidden_state": self.head(x, deterministic)}
