"""Parameter map between EffAAC's student (kdjax.models.effaac) and its PyTorch layout, used both ways.

The PyTorch layout is the student built from stock parts (kdjax/convert/pytorch/modeling_effaac.py builds it):

    encoder.*                       efficientnet_pytorch EfficientNet, in_channels=1 (`encoder._fc` unused)
    enc_proj.{weight,bias}          MSE variant: per-frame projection to the teacher's width
    decoder.memory_proj.*           encoder width -> d_model
    decoder.word_embedding.weight   also the output layer (tied, no bias)
    decoder.layers.{i}.*            torch.nn.TransformerDecoderLayer (post-LN): self_attn, multihead_attn
                                    (in_proj_weight/in_proj_bias fused q|k|v, out_proj), linear1, linear2,
                                    norm1-3
    student_proj.*, teacher_proj.*, logit_scale   contrastive-KD heads (training only; exported if present)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from kdjax.convert import efficientnet as eff_map
from kdjax.convert.param_map import ConversionError, Entry, TensorRule, expand
from kdjax.models.caption_decoder import CaptionDecoderConfig
from kdjax.models.effaac import EffAACConfig

IGNORE = ("encoder.*num_batches_tracked", "encoder._fc.*")


def decoder_entries(prefix: str = "decoder.") -> list[Entry]:
    layer = prefix + "layers.{i}"
    out = [Entry(prefix + "memory_proj", "memory_proj", "linear"), Entry(prefix + "word_embedding", "embed", "embed")]
    for hf, fx in (("self_attn", "self_attn"), ("multihead_attn", "cross_attn")):
        out += [Entry(f"{layer}.{hf}", f"layers.{{i}}.{fx}.{{part}}", "mha_in", ("query", "key", "value")),
                Entry(f"{layer}.{hf}.out_proj", f"layers.{{i}}.{fx}.out", "linear")]
    out += [Entry(f"{layer}.{n}", f"layers.{{i}}.{n}", k) for n, k in
            (("linear1", "linear"), ("linear2", "linear"), ("norm1", "layernorm"), ("norm2", "layernorm"),
             ("norm3", "layernorm"))]
    return out


def rules(cfg: EffAACConfig) -> list[TensorRule]:
    out = eff_map.rules(cfg.encoder, "encoder.")
    out = [dataclasses.replace(r, flax="encoder." + r.flax) for r in out]
    dec = expand(decoder_entries(), cfg.decoder.num_layers)
    out += [dataclasses.replace(r, flax="decoder." + r.flax) for r in dec]
    heads = []
    if cfg.enc_proj_dim:
        heads.append(Entry("enc_proj", "enc_proj", "linear"))
    if cfg.contra_dim:
        heads += [Entry("student_proj", "student_proj", "linear"), Entry("teacher_proj", "teacher_proj", "linear"),
                  Entry("logit_scale", "logit_scale", "tensor")]
    return out + expand(heads)


def infer_config(tensors: Mapping[str, np.ndarray], *, encoder: str = "efficientnet-b2", num_heads: int = 4,
                 **decoder_overrides) -> EffAACConfig:
    """Widths, depth, vocabulary and heads from the tensors; the attention head count is not recorded in
    a state dict (`num_heads`, 4 in the paper)."""
    need = "decoder.word_embedding.weight"
    if need not in tensors:
        raise ConversionError(f"no '{need}': not an EffAAC student state dict")
    shape = lambda k: tuple(np.shape(tensors[k]))
    vocab, d = shape(need)
    layers = len({k.split(".")[2] for k in tensors if k.startswith("decoder.layers.")})
    enc = eff_map.infer_config(tensors, encoder, "encoder.")
    enc_proj = shape("enc_proj.weight")[0] if "enc_proj.weight" in tensors else 0
    contra = shape("student_proj.weight")[0] if "student_proj.weight" in tensors else 0
    teacher = shape("teacher_proj.weight")[1] if "teacher_proj.weight" in tensors else 0
    dcfg = CaptionDecoderConfig(vocab_size=vocab, d_model=d, num_heads=num_heads, num_layers=layers,
                                ffn_dim=shape("decoder.layers.0.linear1.weight")[0],
                                memory_dim=shape("decoder.memory_proj.weight")[1], **decoder_overrides)
    return EffAACConfig(encoder=enc, decoder=dcfg, enc_proj_dim=enc_proj, contra_dim=contra, teacher_dim=teacher)


# ------------------------------------------------------------------------------------- load / save
def load_effaac(tensors, *, source: str = "", seed: int = 0, num_heads: int = 4, **decoder_overrides):
    """EffAAC's student (EfficientNet encoder + Transformer caption decoder) from its PyTorch state dict."""
    from flax import nnx

    from kdjax.convert.common import load_family
    from kdjax.models.effaac import EffAAC

    cfg = infer_config(tensors, num_heads=num_heads, **decoder_overrides)
    return load_family(tensors, lambda: EffAAC(cfg, rngs=nnx.Rngs(seed)), rules(cfg), IGNORE, source)


def effaac_tensors(model):
    """The student's parameters and BatchNorm statistics under the PyTorch names (inverse of `load_effaac`)."""
    from flax import nnx

    from kdjax.convert.common import host_flat
    from kdjax.convert.param_map import flax_to_hf

    return flax_to_hf(host_flat(model, nnx.Param, nnx.BatchStat), rules(model.cfg))


def load(path: str, *, seed: int = 0, **overrides):
    """A directory written by `save` (config.json with the kdjax config, model.safetensors)."""
    from flax import nnx

    from kdjax.convert.checkpoint_io import LazyTensors, read_config
    from kdjax.convert.common import config_from_json, load_family
    from kdjax.models.effaac import EffAAC

    cfg = config_from_json(EffAACConfig, {**read_config(path)["effaac"], **overrides})
    return load_family(LazyTensors(path), lambda: EffAAC(cfg, rngs=nnx.Rngs(seed)), rules(cfg), IGNORE, path)


def save(model, out_dir: str, **_) -> None:
    """model.safetensors in the PyTorch student's names (kdjax/convert/pytorch/modeling_effaac.py; BatchNorm statistics included,
    the encoder's unused ImageNet classifier absent) and config.json with the kdjax config."""
    from kdjax.convert.common import config_to_json, with_batch_counts, write_dir

    if getattr(model, "external_encoder", None) is not None:
        raise ValueError("this student reads the teacher's encoder (student.memory='teacher'): its EfficientNet is "
                         "not trained; export the teacher's encoder with the teacher")
    write_dir(out_dir, with_batch_counts(effaac_tensors(model)),
              {"model_type": "kdjax_effaac", "effaac": config_to_json(model.cfg)})


def _register():
    from kdjax.convert import registry
    from kdjax.models.effaac import EffAAC

    registry.register(registry.Family(
        "effaac", ("kdjax_effaac",), (EffAAC,),
        lambda path, *, task=None, arch=None, seed=0, mesh=None, **kw: load(path, seed=seed, **kw), save))


_register()
