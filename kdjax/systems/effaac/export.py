"""EffAAC's export: the trained EffNet-Trm student for PyTorch (kdjax/convert/pytorch/modeling_effaac.py,
shipped with it)."""

from __future__ import annotations

import json
import os
import shutil

from kdjax.errors import InputError

_README = """# EffAAC student (EffNet-Trm) exported by kdjax

From the kdjax workdir `{workdir}` (checkpoint `{checkpoint}`). `model.safetensors` is the student's PyTorch state
dict (efficientnet_pytorch's EfficientNet with one input channel, torch.nn.TransformerDecoderLayer), loaded strictly
by `modeling_effaac.py` in this directory; `config.json` holds the architecture (`pytorch.model`) and kdjax's
caption settings (`pytorch.generate`).

```python
import sys, torch, soundfile
sys.path.insert(0, "{out}")
from modeling_effaac import EffNetTrm, decode

model, tok, gen = EffNetTrm.from_export("{out}")
wave, sr = soundfile.read("clip.wav", dtype="float32")   # mono, at gen["sample_rate"] ({sample_rate} Hz)
tokens = model.caption(torch.from_numpy(wave)[None], **gen)
print(decode(tok, tokens[0], gen["eos_token_id"]))
```

Needs: torch, efficientnet_pytorch==0.7.1, safetensors, transformers. kdjax captions clips of
{clip_seconds} s (longer ones cropped by training's rule); give the model clips of that length for kdjax's captions.
"""


def export(workdir: str, out: str) -> list[str]:
    """`out`: the student without its training-only heads, its word tokenizer, the PyTorch code and a README."""
    from kdjax.convert import save_pretrained
    from kdjax.convert.pytorch_code import PYTORCH_CODE
    from kdjax.systems.effaac.student import load_trained
    from kdjax.train.restore import trained_checkpoint, workdir_config

    cfg = workdir_config(workdir)
    if cfg.student.memory == "teacher":
        raise InputError(f"{workdir}: student.memory='teacher' (Table 1): this student's decoder reads the teacher's "
                         "encoder, which is not exported; export runs whose student has its own EfficientNet")
    model, tok = load_trained(cfg, workdir)
    c = model.cfg
    d = c.decoder
    if (d.activation, d.scale_embedding, d.layer_norm_eps) != ("relu", True, 1e-5):
        raise InputError(f"{workdir}: student.decoder activation={d.activation!r}, scale_embedding="
                         f"{d.scale_embedding}, layer_norm_eps={d.layer_norm_eps}: the PyTorch student is "
                         "torch.nn.TransformerDecoderLayer's (relu, scaled embeddings, eps 1e-5)")
    save_pretrained(model, out)
    tok.save_pretrained(out)
    e, f = c.encoder, c.front_end
    gen = dict(cfg.eval.generate)
    pytorch = {
        "model": {"vocab": d.vocab_size, "enc_proj_dim": c.enc_proj_dim, "encoder": "efficientnet-b0",
                  "encoder_overrides": {"width_coefficient": e.width_coefficient,
                                        "depth_coefficient": e.depth_coefficient, "image_size": e.image_size,
                                        "batch_norm_epsilon": e.batch_norm_epsilon,
                                        "batch_norm_momentum": e.batch_norm_momentum,
                                        "drop_connect_rate": e.drop_connect_rate, "depth_divisor": e.depth_divisor},
                  "front_end": {"sample_rate": f.sample_rate, "n_fft": f.n_fft, "win_length": f.win_length,
                                "hop_length": f.hop_length, "n_mels": f.n_mels, "f_min": f.f_min, "f_max": f.f_max,
                                "top_db": f.top_db},
                  "d": d.d_model, "heads": d.num_heads, "ffn": d.ffn_dim, "layers": d.num_layers,
                  "dropout": d.dropout},
        "generate": {"bos_token_id": d.bos_token_id, "eos_token_id": tok.eos_token_id,
                     "max_new_tokens": int(gen.get("max_new_tokens", 30)),
                     "min_new_tokens": int(gen.get("min_new_tokens", 0)), "num_beams": int(gen.get("num_beams", 1)),
                     "length_penalty": float(gen.get("length_penalty", 1.0)),
                     "early_stopping": bool(gen.get("early_stopping", False)),
                     "sample_rate": int(cfg.data.sample_rate), "clip_seconds": float(cfg.data.clip_seconds)},
    }
    path = os.path.join(out, "config.json")
    with open(path, encoding="utf-8") as fh:
        config = json.load(fh)
    config["pytorch"] = pytorch
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(config, fh, indent=1)
    shutil.copy(os.path.join(PYTORCH_CODE, "modeling_effaac.py"), os.path.join(out, "modeling_effaac.py"))
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as fh:
        fh.write(_README.format(workdir=os.path.abspath(workdir), checkpoint=trained_checkpoint(workdir), out=out,
                                sample_rate=f.sample_rate, clip_seconds=cfg.data.clip_seconds))
    return sorted(os.path.join(out, n) for n in os.listdir(out))
