"""Parameter map between the released CED PyTorch state dicts and kdjax's CED.

The names are those of the released checkpoints (../shared/reference/ced_state_dicts.json): the fused
`attn.qkv` is split into q/k/v (and fused again on save). LOAE's CED copy (`models/ced/audiotransformer.py`)
holds separate `attn.q_proj`/`k_proj`/`v_proj` instead: such a state dict (a LOAE-trained encoder) loads too,
and `save` writes either layout (`layout="fused"`, the released one, or `"split"`, LOAE's). Position
embeddings move from channels-first to channels-last, and the front end's buffers (Hann window, mel
filterbank) are checked against the config on load and written back on save so the result loads into the
PyTorch model with strict=True.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping

import jax
import numpy as np

from kdjax.audio.features import hann_window, mel_filterbank
from kdjax.convert.param_map import ConversionError, Entry, TensorRule, expand
from kdjax.models.ced import SIZES, CedConfig

ARCHS = tuple(SIZES)

LAYOUTS = {  # the attention's input projections: the released fused qkv, or LOAE's three linears
    "fused": [Entry("blocks.{i}.attn.qkv", "blocks.{i}.attn.{part}", "linear", parts=("q_proj", "k_proj", "v_proj"))],
    "split": [Entry(f"blocks.{{i}}.attn.{p}", f"blocks.{{i}}.attn.{p}", "linear")
              for p in ("q_proj", "k_proj", "v_proj")],
}
_BLOCK = [
    Entry("blocks.{i}.norm1", "blocks.{i}.norm1", "layernorm"),
    Entry("blocks.{i}.attn.proj", "blocks.{i}.attn.proj", "linear"),
    Entry("blocks.{i}.norm2", "blocks.{i}.norm2", "layernorm"),
    Entry("blocks.{i}.mlp.fc1", "blocks.{i}.mlp.fc1", "linear"),
    Entry("blocks.{i}.mlp.fc2", "blocks.{i}.mlp.fc2", "linear"),
]
_STEM = [
    Entry("time_pos_embed", "time_pos_embed", "pos_embed"),
    Entry("freq_pos_embed", "freq_pos_embed", "pos_embed"),
    Entry("init_bn.1", "init_bn", "batchnorm"),
    Entry("patch_embed.proj", "patch_embed.proj", "conv"),
    Entry("norm", "norm", "layernorm"),
]
_HEAD = [Entry("outputlayer.0", "outputlayer.layers.0", "layernorm"),
         Entry("outputlayer.1", "outputlayer.layers.1", "linear")]

WINDOW, FILTERBANK, BN_COUNT = ("front_end.0.spectrogram.window", "front_end.0.mel_scale.fb",
                                "init_bn.1.num_batches_tracked")
# Buffers the state dict carries that are not parameters: checked (front end) or not needed.
IGNORE = (WINDOW, FILTERBANK, BN_COUNT)


def rules(cfg: CedConfig, layout: str = "fused") -> list[TensorRule]:
    if layout not in LAYOUTS:
        raise ValueError(f"CED layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    return expand(_STEM + LAYOUTS[layout] + _BLOCK + (_HEAD if cfg.num_classes else []), cfg.depth)


def layout_of(tensors) -> str:
    """'split' for a state dict with LOAE's separate q/k/v projections, else 'fused' (the released CED)."""
    return "split" if "blocks.0.attn.q_proj.weight" in tensors else "fused"


def infer_config(tensors, arch: str | None = None, **overrides) -> CedConfig:
    """Config from a state dict's shapes (size, depth, head, mel bins), or the named `arch`."""
    if arch is not None:
        base = CedConfig.preset(arch)
    else:
        if "patch_embed.proj.weight" not in tensors:
            raise ConversionError("not a CED state dict: no patch_embed.proj.weight")
        dim = int(tensors["patch_embed.proj.weight"].shape[0])
        by_dim = {d: name for name, (d, _) in SIZES.items()}
        if dim not in by_dim and "num_heads" not in overrides:
            raise ConversionError(f"CED width {dim} is not a released size; pass num_heads=")
        base = CedConfig.preset(by_dim[dim]) if dim in by_dim else CedConfig(embed_dim=dim)
    found: dict = {}
    depth = len({k.split(".")[1] for k in tensors if k.startswith("blocks.")})
    if depth:
        found["depth"] = depth
    found["num_classes"] = (int(tensors["outputlayer.1.weight"].shape[0])
                            if "outputlayer.1.weight" in tensors else 0)
    if FILTERBANK in tensors:
        n_freq, n_mels = tensors[FILTERBANK].shape
        found.update(n_mels=int(n_mels), n_fft=int(2 * (n_freq - 1)))
    return dataclasses.replace(base, **{**found, **overrides})


def check_front_end(tensors, cfg: CedConfig, source: str) -> None:
    """The checkpoint's window and filterbank must be the ones the config computes."""
    want = {WINDOW: hann_window(cfg.win_length, cfg.n_fft),
            FILTERBANK: mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max)}
    for name, ref in want.items():
        if name in tensors:
            got = np.asarray(tensors[name], np.float32)
            if got.shape != ref.shape or not np.allclose(got, ref, atol=1e-5):
                raise ConversionError(
                    f"{source}: {name} {got.shape} differs from the configured front end (sample_rate="
                    f"{cfg.sample_rate}, n_fft={cfg.n_fft}, win_length={cfg.win_length}, n_mels={cfg.n_mels},"
                    f" f_min={cfg.f_min}, f_max={cfg.f_max}); pass the checkpoint's settings as overrides")


def _resize(x: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Channels-first (1, D, h, w) position embedding to `grid`: truncate a longer axis, bilinearly
    interpolate a shorter one (half-pixel centres, as torch's align_corners=False)."""
    h, w = x.shape[2:]
    x = x[:, :, :min(h, grid[0]), :min(w, grid[1])]
    if x.shape[2:] != grid:
        x = np.asarray(jax.image.resize(x.astype(np.float32), (*x.shape[:2], *grid), "bilinear",
                                        antialias=False))
    return x


def adapt_position_embeddings(tensors, cfg: CedConfig) -> Mapping:
    """The checkpoint's tensors with its position embeddings fitted to the config's patch grid; the
    others stay lazy (read on access)."""
    fitted = {}
    for name, grid in (("time_pos_embed", (1, cfg.time_patches)), ("freq_pos_embed", (cfg.freq_patches, 1))):
        if name in tensors:
            value = np.asarray(tensors[name])
            if tuple(value.shape[2:]) != grid:
                fitted[name] = _resize(value, grid)
    return collections.ChainMap(fitted, tensors)


def extra_tensors(cfg: CedConfig) -> dict[str, np.ndarray]:
    """Buffers the PyTorch model expects in its state dict besides the mapped parameters."""
    return {WINDOW: hann_window(cfg.win_length, cfg.n_fft),
            FILTERBANK: mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max),
            BN_COUNT: np.asarray(0, np.int64)}


# ------------------------------------------------------------------------------------- load / save
def load(path: str, *, arch: str | None = None, seed: int = 0, **overrides):
    """A released CED state dict (.pt/.pth/.safetensors file), or a directory written by `save`; `arch` one of
    ced_tiny/mini/small/base (inferred from the shapes when omitted)."""
    import os

    from flax import nnx

    from kdjax.convert.checkpoint_io import LazyTensors, read_config
    from kdjax.convert.common import load_family
    from kdjax.models.ced import CED

    tensors = LazyTensors(path)
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json")) and arch is None:
        cfg = CedConfig.from_json({**read_config(path)["ced"], **overrides})
    else:
        cfg = infer_config(tensors, arch, **overrides)
    check_front_end(tensors, cfg, path)
    tensors = adapt_position_embeddings(tensors, cfg)
    ignore = IGNORE + (() if cfg.num_classes else ("outputlayer.*",))
    # depth < the checkpoint's keeps its first blocks (a truncated encoder); the rest are reported ignored
    ignore += tuple(f"blocks.{i}.*" for i in range(cfg.depth, 64))
    return load_family(tensors, lambda: CED(cfg, rngs=nnx.Rngs(seed)), rules(cfg, layout_of(tensors)), ignore, path)


def save(model, out_dir: str, *, layout: str = "fused", **_) -> None:
    """model.safetensors holding the released PyTorch state dict (names, fused qkv, front-end buffers), which the
    PyTorch CED loads with strict=True, or with `layout="split"` LOAE's CED's (separate q/k/v projections); and a
    config.json for kdjax."""
    from flax import nnx

    from kdjax.convert.common import host_flat, write_dir
    from kdjax.convert.param_map import flax_to_hf

    flat = {k: np.asarray(v) for k, v in host_flat(model, nnx.Param, nnx.BatchStat).items()}
    tensors = {**flax_to_hf(flat, rules(model.cfg, layout)), **extra_tensors(model.cfg)}
    write_dir(out_dir, tensors, {"model_type": "kdjax_ced", "ced": model.cfg.to_json()})


def _register():
    from kdjax.convert import registry
    from kdjax.models.ced import CED

    def _load(path, *, task=None, arch=None, seed=0, mesh=None, **kw):
        return load(path, arch=arch if arch in ARCHS else None, seed=seed, **kw)

    registry.register(registry.Family("ced", ARCHS + ("ced", "kdjax_ced"), (CED,), _load, save, files=True))


_register()
