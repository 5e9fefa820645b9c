"""Multi2Cap's export: the trained captioner in the pieces PyTorch users load (PEFT adapters, the CED state dict, a
Blip2QFormerModel directory, the projector and prompt), with the code that reassembles them
(kdjax/convert/pytorch/modeling_multi2cap.py)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
from flax import nnx

_README = """# Multi2Cap captioner exported by kdjax

From the kdjax workdir `{workdir}` (checkpoint `{checkpoint}`).

| piece | what | PyTorch |
|---|---|---|
| `ced/model.safetensors` | CED ({ced_arch}, depth {ced_depth}, no head), its LoRA merged | the original CED code's model, `load_state_dict(strict=True)` |
| `qformer/` | the Q-Former ({windows}) | `transformers.Blip2QFormerModel.from_pretrained` |
| `projector.safetensors` | the projector onto the LLaMA's width, and the learned query tokens | `torch.nn.Linear` |
| `llama_lora/` | the LLaMA's LoRA adapters | `peft.PeftModel.from_pretrained(base, DIR/llama_lora)` |
| {base_row} |
| {merged_row}
| `tokenizer/` | the LLaMA's tokenizer | `transformers.AutoTokenizer` |
| `multi2cap.json` | prompt ids ({prompt!r}), windowing, CED framing, caption settings | |

```python
import sys, torch
sys.path.insert(0, "{out}")
from modeling_multi2cap import Multi2CapTorch
ced = ...   # the original CED code's {ced_arch} with num_classes=0{ced_depth_note}
model, tok = Multi2CapTorch.from_export("{out}", ced)
wave = torch.zeros(1, {samples})                  # 16 kHz mono, {clip_seconds} s as kdjax captions them
tokens = model.caption(wave, torch.ones(1, {samples}, dtype=torch.bool))
print(tok.batch_decode(tokens, skip_special_tokens=True))
```

Needs torch, transformers, peft, safetensors.
"""


def base_checkpoint(cfg) -> str:
    """The run's LLaMA base as a path transformers loads: its checkpoint directory, or for a kdjax asset (`pkg:...`)
    or a GGUF file the Hugging Face directory kdjax converted it to (the weights kdjax trained on); "" for a random
    base (written into the export instead)."""
    from kdjax import assets

    return os.path.abspath(assets.model_dir(cfg.decoder.checkpoint)) if cfg.decoder.checkpoint else ""


def export(workdir: str, out: str, merge_lora: bool = False) -> list[str]:
    """`out`: the pieces of the README above; the CFD heads (training only) are left out. `merge_lora`: also the
    LLaMA with its LoRA merged (llama_merged/), a plain checkpoint that needs neither peft nor the base."""
    from safetensors.numpy import save_file

    from kdjax.convert import save_pretrained
    from kdjax.convert.peft import save_adapters
    from kdjax.convert.pytorch_code import PYTORCH_CODE
    from kdjax.models import lora
    from kdjax.models.state import flatten
    from kdjax.systems.multi2cap.task import load_trained
    from kdjax.train.restore import trained_checkpoint, workdir_config

    cfg = workdir_config(workdir)
    model, tok = load_trained(cfg, workdir)
    os.makedirs(out, exist_ok=True)
    ced = lora.merged_copy(model.audio_encoder)
    save_pretrained(ced, os.path.join(out, "ced"))
    save_pretrained(model.qformer, os.path.join(out, "qformer"))
    proj = flatten(nnx.state(model.projector, nnx.Param))
    save_file({"projector.weight": np.ascontiguousarray(np.asarray(proj["kernel"], np.float32).T),
               "projector.bias": np.asarray(proj["bias"], np.float32),
               "query_tokens": np.asarray(model.qformer.query_tokens[...], np.float32)},
              os.path.join(out, "projector.safetensors"))
    save_adapters(model.decoder, os.path.join(out, "llama_lora"), base_model=cfg.decoder.checkpoint)
    if not cfg.decoder.checkpoint:  # a random base (its seed's): nothing else holds it
        save_pretrained(lora.merged_copy(model.decoder, merge=False), os.path.join(out, "llama_base"))
    if merge_lora:
        save_pretrained(lora.merged_copy(model.decoder), os.path.join(out, "llama_merged"))
    tok.save_pretrained(os.path.join(out, "tokenizer"))
    c, q, m = ced.cfg, model.qformer.cfg, model.cfg
    gen = dict(cfg.eval.generate)
    settings = {
        "prompt_prefix": list(m.prompt_prefix), "prompt_suffix": list(m.prompt_suffix),
        "prompt_text": [cfg.prompt.prefix, cfg.prompt.suffix], "decoder_checkpoint": base_checkpoint(cfg),
        "decoder_checkpoint_spec": cfg.decoder.checkpoint,
        "qformer": {"window": q.window, "num_query_tokens": q.num_query_tokens},
        "ced": {"embed_dim": c.embed_dim, "num_heads": c.num_heads, "depth": c.depth, "hop_length": c.hop_length,
                "patch_size": c.patch_size, "freq_patches": c.freq_patches, "target_length": c.target_length,
                "chunk_mode": c.chunk_mode, "sample_rate": c.sample_rate, "top_db_scope": c.top_db_scope},
        "generate": {"max_new_tokens": int(gen.get("max_new_tokens", 30)),
                     "min_new_tokens": int(gen.get("min_new_tokens", 0)), "num_beams": int(gen.get("num_beams", 1)),
                     "length_penalty": float(gen.get("length_penalty", 1.0)),
                     "early_stopping": bool(gen.get("early_stopping", False)),
                     "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id},
        "clip_seconds": float(cfg.data.clip_seconds),
    }
    with open(os.path.join(out, "multi2cap.json"), "w", encoding="utf-8") as f:
        json.dump(settings, f, indent=1)
    shutil.copy(os.path.join(PYTORCH_CODE, "modeling_multi2cap.py"), os.path.join(out, "modeling_multi2cap.py"))
    from kdjax.models import ced as ced_lib

    arch = {v: k for k, v in ced_lib.SIZES.items()}.get((c.embed_dim, c.num_heads), "CED")
    base_row = ("`llama_base/` | the frozen LLaMA base (random init: the run had no checkpoint) | "
                "`transformers.AutoModelForCausalLM.from_pretrained`" if not cfg.decoder.checkpoint else
                f"(base) | the LLaMA checkpoint the run used, `{cfg.decoder.checkpoint}`, as the Hugging Face "
                f"directory `{base_checkpoint(cfg)}` on the machine that exported it (`--merge_lora` writes a "
                "self-contained LLaMA instead) | `transformers.AutoModelForCausalLM.from_pretrained`")
    merged_row = ("`llama_merged/` | the LLaMA with its LoRA merged (`--merge_lora`) | "
                  "`transformers.AutoModelForCausalLM.from_pretrained`, instead of base + adapters |" if merge_lora
                  else "(`llama_merged/`) | not written: `--merge_lora` writes the LLaMA with its LoRA merged | |")
    samples = int(round(float(cfg.data.clip_seconds) * c.sample_rate))
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
        f.write(_README.format(workdir=os.path.abspath(workdir), checkpoint=trained_checkpoint(workdir), out=out,
                               ced_arch=arch, ced_depth=c.depth, base_row=base_row, merged_row=merged_row,
                               ced_depth_note="" if c.depth == 12 else f" and its first {c.depth} blocks",
                               windows=f"one window of {q.window} CED tokens per {q.num_query_tokens} query"
                               if q.window else f"{q.num_query_tokens} queries over all CED tokens",
                               prompt=cfg.prompt.prefix + " <audio> " + cfg.prompt.suffix, samples=samples,
                               clip_seconds=cfg.data.clip_seconds))
    return sorted(os.path.join(out, n) for n in os.listdir(out))
