"""Multi2Cap's captioner reassembled in PyTorch from kdjax's export (`python -m kdjax.main --mode=export`, which
copies this file into the directory as `modeling_multi2cap.py`):

    ced/              the CED audio encoder, LoRA merged: the original CED code's state dict (strict)
    qformer/          transformers' Blip2QFormerModel
    projector.safetensors   projector.weight / projector.bias (Q-Former -> LLaMA width), query_tokens
    llama_lora/       the LLaMA's LoRA adapters as a PEFT directory
    llama_base/       the frozen LLaMA base as a transformers directory, when the run had no checkpoint for it
                      (random init); otherwise multi2cap.json's `decoder_checkpoint` names the one it used
    tokenizer/        the LLaMA's tokenizer
    multi2cap.json    prompt token ids, the Q-Former's windowing, the CED's framing, caption settings

    import sys; sys.path.insert(0, DIR)
    from modeling_multi2cap import Multi2CapTorch
    ced = ...  # the original CED code's model for multi2cap.json's `ced.arch` (num_classes=0), any module whose
               # forward(wave) returns {"last_hidden_state": (b, tokens, d)} in CED's (f t) token order
    model, tok = Multi2CapTorch.from_export(DIR, ced)
    tokens = model.caption(wave, sample_mask)          # wave (b, samples) at 16 kHz; mask marks real samples
    texts = tok.batch_decode(tokens, skip_special_tokens=True)

Needs torch, transformers, peft and safetensors; never kdjax.
"""

from __future__ import annotations

import json
import math
import os

import torch
from torch import nn


class Multi2CapTorch(nn.Module):
    def __init__(self, ced: nn.Module, qformer: nn.Module, projector: nn.Linear, query_tokens: torch.Tensor,
                 llama: nn.Module, settings: dict):
        super().__init__()
        self.ced, self.qformer, self.projector, self.llama = ced, qformer, projector, llama
        self.query_tokens = nn.Parameter(query_tokens, requires_grad=False)
        self.settings = settings

    @classmethod
    def from_export(cls, path: str, ced: nn.Module, llama_dir: str | None = None, dtype=torch.float32):
        """(captioner in eval mode, LLaMA tokenizer). `ced` gets DIR/ced/model.safetensors (strict); the LLaMA base is
        `llama_dir`, else DIR/llama_base, else the checkpoint the run used (multi2cap.json), with DIR/llama_lora."""
        from peft import PeftModel
        from safetensors.torch import load_file
        from transformers import AutoModelForCausalLM, AutoTokenizer, Blip2QFormerModel

        with open(os.path.join(path, "multi2cap.json")) as f:
            settings = json.load(f)
        ced.load_state_dict(load_file(os.path.join(path, "ced", "model.safetensors")), strict=True)
        qformer = Blip2QFormerModel.from_pretrained(os.path.join(path, "qformer"))
        extra = load_file(os.path.join(path, "projector.safetensors"))
        projector = nn.Linear(*extra["projector.weight"].shape[::-1])
        projector.load_state_dict({"weight": extra["projector.weight"], "bias": extra["projector.bias"]}, strict=True)
        base = llama_dir or (os.path.join(path, "llama_base") if os.path.isdir(os.path.join(path, "llama_base"))
                             else settings["decoder_checkpoint"])
        kw = {"torch_dtype": dtype}
        if base.endswith(".gguf"):  # a GGUF file: transformers dequantises it
            kw["gguf_file"] = os.path.basename(base)
            base = os.path.dirname(base)
        llama = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, **kw),
                                          os.path.join(path, "llama_lora"))
        model = cls(ced, qformer, projector, extra["query_tokens"], llama, settings)
        return model.eval(), AutoTokenizer.from_pretrained(os.path.join(path, "tokenizer"))

    def token_mask(self, sample_mask: torch.Tensor, n_tokens: int) -> torch.Tensor:
        """CED tokens that see a real frame (kdjax's CED token_mask): frame i is centred on sample i * hop, a
        token's time column covers `patch_size` frames, chunks of `target_length` frames as the CED encodes them."""
        c = self.settings["ced"]
        frames = sample_mask.shape[1] // c["hop_length"] + 1
        idx = torch.clamp(torch.arange(frames) * c["hop_length"], max=sample_mask.shape[1] - 1)
        fm = sample_mask.bool()[:, idx]
        chunk = c["target_length"] if frames > c["target_length"] else frames
        n = math.ceil(frames / chunk)
        fm = nn.functional.pad(fm, (0, n * chunk - frames)).reshape(len(fm), n, chunk)
        cols = math.ceil(chunk / c["patch_size"])  # the patch convolution keeps whole patches only
        fm = nn.functional.pad(fm, (0, cols * c["patch_size"] - chunk)).reshape(len(fm), n, cols, -1).any(-1)
        fm = fm[:, :, :chunk // c["patch_size"]]
        per_chunk = fm[:, :, None, :].expand(-1, -1, c["freq_patches"], -1).reshape(len(fm), n, -1)
        if n == 1 or c["chunk_mode"] == "concat":
            out = per_chunk.reshape(len(fm), -1)
        else:  # "mean": a token is real if it is in any chunk
            out = per_chunk.any(1)
        if out.shape[1] != n_tokens:
            raise ValueError(f"the CED gave {n_tokens} tokens, its framing says {out.shape[1]}: is it the exported "
                             "architecture (multi2cap.json's ced)?")
        return out

    def audio_tokens(self, wave: torch.Tensor, sample_mask: torch.Tensor | None = None):
        """(b, windows * queries, LLaMA width) audio tokens and their mask: CED -> windowed Q-Former -> projector."""
        q = self.settings["qformer"]
        tokens = self.ced(wave)["last_hidden_state"]
        b, n, d = tokens.shape
        mask = (torch.ones(b, n, dtype=torch.bool) if sample_mask is None
                else self.token_mask(sample_mask, n))
        k = q["window"] or n
        w = n // k
        enc, emask = tokens[:, :w * k].reshape(b * w, k, d), mask[:, :w * k].reshape(b * w, k)
        out = self.qformer(query_embeds=self.query_tokens.expand(b * w, -1, -1).to(enc.dtype),
                           encoder_hidden_states=enc, encoder_attention_mask=emask.long()).last_hidden_state
        nq = self.query_tokens.shape[1]
        ok = emask.any(1).repeat_interleave(nq).reshape(b, w * nq)
        return self.projector(out.reshape(b, w * nq, -1)), ok

    @torch.no_grad()
    def caption(self, wave: torch.Tensor, sample_mask: torch.Tensor | None = None, **overrides) -> torch.Tensor:
        """Generated token ids (b, new tokens) with transformers' generate and the run's caption settings (greedy or
        beam search, the minimum length, EOS); `overrides` replace settings (e.g. num_beams=1)."""
        s = self.settings
        audio, ok = self.audio_tokens(wave, sample_mask)
        embed = self.llama.get_input_embeddings()
        b = audio.shape[0]
        pre = embed(torch.tensor(s["prompt_prefix"])).expand(b, -1, -1)
        suf = embed(torch.tensor(s["prompt_suffix"])).expand(b, -1, -1)
        x = torch.cat([pre, audio.to(pre.dtype), suf], 1)
        m = torch.cat([torch.ones(b, pre.shape[1], dtype=torch.long), ok.long(),
                       torch.ones(b, suf.shape[1], dtype=torch.long)], 1)
        gen = {**s["generate"], **overrides}
        return self.llama.generate(inputs_embeds=x, attention_mask=m, do_sample=False, **gen)
