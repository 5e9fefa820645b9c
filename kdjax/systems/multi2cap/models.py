"""Multi2Cap's models: the decoder's tokenizer, the captioner (CED + LoRA, Q-Former, projector, LLaMA + LoRA)
and the frozen image teacher."""

from __future__ import annotations

import logging
import os

import ml_collections
import numpy as np
from flax import nnx

from kdjax import assets, paths
from kdjax.convert import from_pretrained
from kdjax.data import images as img_lib
from kdjax.data import tokenizers
from kdjax.models import ced as ced_lib
from kdjax.models import llama as llama_lib
from kdjax.models import lora
from kdjax.models import qformer as qformer_lib
from kdjax.models import resnet as resnet_lib
from kdjax.models import vit as vit_lib
from kdjax.models.multi2cap import Multi2Cap, Multi2CapConfig
from kdjax.systems import audio_tagging
from kdjax.train.sharding import scoped


# each family's rules under the module that holds it (LLaMA's `self_attn.q_proj` would also match CED's)
LOGICAL_AXES = (scoped("decoder", llama_lib.LOGICAL_AXES), scoped("qformer", qformer_lib.LOGICAL_AXES),
                scoped("audio_encoder", ced_lib.LOGICAL_AXES))
FROZEN = ("audio_encoder", "decoder")


def frozen(cfg: ml_collections.ConfigDict) -> tuple[str, ...]:
    """The modules whose base weights stay fixed: both (the paper's recipe), or only the decoder with
    `audio.train_base` (the audio encoder fully fine-tuned with the captioner)."""
    return ("decoder",) if cfg.audio.get("train_base", False) else FROZEN


def _lora_cfg(node) -> lora.LoraConfig:
    return lora.LoraConfig(targets=tuple(node.targets), rank=int(node.rank), alpha=float(node.alpha),
                           dropout=float(node.dropout))


def build_tokenizer(cfg: ml_collections.ConfigDict, texts: list[str] | None, workdir: str):
    """The decoder's tokenizer; a random-init decoder gets a word-level vocabulary of the training captions,
    saved in the workdir (so resuming and captioning reuse it), or the `init_from` workdir's."""
    d = cfg.decoder
    if d.checkpoint:
        return tokenizers.load(assets.model_dir(d.checkpoint))
    if cfg.get("init_from"):  # the pre-training stage's vocabulary: its decoder's rows
        return tokenizers.load(os.path.join(cfg.init_from, "tokenizer"))
    out = paths.join(workdir, "tokenizer")
    if texts is None and not paths.isfile(paths.join(out, "tokenizer.json")):
        raise FileNotFoundError(f"{out}: no tokenizer (train this workdir first)")
    return tokenizers.train_word_level(texts or [], out)


def build_model(cfg: ml_collections.ConfigDict, tok) -> Multi2Cap:
    rngs = nnx.Rngs(int(cfg.seed))
    a = cfg.audio
    overrides = {"num_classes": 0, "chunk_mode": a.chunk_mode, **dict(a.overrides)}
    if a.depth:
        overrides["depth"] = int(a.depth)
    if a.checkpoint:
        ced = audio_tagging.ced_encoder(assets.resolve(a.checkpoint), arch=a.arch or None, **overrides)
    else:
        ced = ced_lib.CED(ced_lib.CedConfig.preset(a.arch, **overrides), rngs=rngs)
    d = cfg.decoder
    dec_over = {"dtype": d.dtype, "param_dtype": d.param_dtype, "remat": bool(d.remat),
                "scan_layers": bool(d.get("scan_layers", False))}
    if d.checkpoint:
        decoder = from_pretrained(assets.model_dir(d.checkpoint), **dec_over)
        if d.num_layers:  # keep the first layers only (quick experiments on small machines)
            decoder.keep_layers(int(d.num_layers))
    else:
        lc = llama_lib.LlamaConfig(**{**dict(d.random), "vocab_size": len(tok), "bos_token_id": tok.bos_token_id,
                                      "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id,
                                      **dec_over})
        decoder = llama_lib.LlamaForCausalLM(lc, rngs=rngs)
    q = cfg.qformer
    qcfg = qformer_lib.QFormerConfig(encoder_hidden_size=ced.cfg.embed_dim, **dict(q))
    qformer = qformer_lib.QFormer(qcfg, rngs=rngs)
    if not a.get("train_base", False):  # a CED trained whole needs no adapters
        lora.apply(ced, _lora_cfg(a.lora), rngs)
    lora.apply(decoder, _lora_cfg(d.lora), rngs)
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    encode = lambda s: tok(s, add_special_tokens=False)["input_ids"]
    lam = float(cfg.cfd.weight)
    mcfg = Multi2CapConfig(prompt_prefix=tuple(bos + encode(cfg.prompt.prefix)),
                           prompt_suffix=tuple(encode(cfg.prompt.suffix)), audio_feature=cfg.cfd.audio_feature,
                           cfd_dim=int(cfg.cfd.dim) if lam > 0 else 0, image_dim=teacher_dim(cfg) if lam > 0 else 0,
                           share_prefix=bool(cfg.decoder.get("share_prefix", True)))
    return Multi2Cap(mcfg, ced, qformer, decoder, rngs=rngs)


def build_teacher(cfg: ml_collections.ConfigDict) -> nnx.Module | None:
    t = cfg.teacher
    if t.kind == "none" or float(cfg.cfd.weight) == 0:
        return None
    if t.checkpoint:
        return from_pretrained(assets.resolve(t.checkpoint), **({"feature": t.feature} if t.kind == "vit" else {}))
    rngs = nnx.Rngs(int(cfg.seed) + 7)
    logging.warning("teacher.checkpoint is empty: the image teacher is randomly initialised (smoke runs only)")
    if t.kind == "vit":
        return vit_lib.ViT(vit_lib.ViTConfig(image_size=int(cfg.data.image_size), feature=t.feature, **dict(t.random)),
                           rngs=rngs)
    if t.kind == "resnet":
        return resnet_lib.ResNet(resnet_lib.ResNetConfig(**dict(t.random)), rngs=rngs)
    raise ValueError(f"teacher.kind must be vit, resnet or none, got {t.kind!r}")


def teacher_normalization(cfg: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray, float]:
    """(mean, std, rescale) of the image teacher's pictures: what its checkpoint's preprocessor config says."""
    t = cfg.teacher
    return img_lib.normalization(assets.resolve(t.checkpoint) if t.checkpoint else None, t.kind)


def teacher_dim(cfg: ml_collections.ConfigDict) -> int:
    t = cfg.teacher
    if t.checkpoint:
        from kdjax.convert.checkpoint_io import read_config

        c = read_config(assets.resolve(t.checkpoint))
        return int(c["hidden_sizes"][-1] if t.kind == "resnet" else c["hidden_size"])
    if t.kind == "vit":
        return int(dict(t.random).get("hidden_size", vit_lib.ViTConfig.hidden_size))
    return int(tuple(dict(t.random).get("hidden_sizes", resnet_lib.ResNetConfig.hidden_sizes))[-1])
