"""EffAAC's student in PyTorch from stock parts: efficientnet_pytorch's EfficientNet (one input channel) and
torch.nn.TransformerDecoderLayer (post-LN), with the log-mel front end in torch. The independent reference for
kdjax.models.effaac (parity tests), its PyTorch counterpart in benchmarks/effaac_cost.py, and the code kdjax's export
ships (`python -m kdjax.main --mode=export`, copied into the directory as `modeling_effaac.py`):

    from modeling_effaac import EffNetTrm
    model, tok, gen = EffNetTrm.from_export(DIR)          # strict load of DIR/model.safetensors
    tokens = model.caption(wave, **gen)                    # wave: (b, samples) float at gen["sample_rate"]
    captions = [decode(tok, t, gen["eos_token_id"]) for t in tokens]

Needs torch, efficientnet_pytorch==0.7.1, safetensors and transformers; never kdjax. The layout is
kdjax.convert.effaac's."""

from __future__ import annotations

import json
import math
import os

import torch
from efficientnet_pytorch import EfficientNet
from torch import nn


def decode(tok, tokens: list[int], eos_token_id: int) -> str:
    """A caption's text: cut at EOS, special tokens dropped (as kdjax's evaluation decodes)."""
    if eos_token_id in tokens:
        tokens = tokens[:tokens.index(eos_token_id)]
    return tok.decode([t for t in tokens if t != tok.pad_token_id], skip_special_tokens=True).strip()


def sinusoid(t: int, d: int) -> torch.Tensor:
    pos = torch.arange(t, dtype=torch.float32)[:, None]
    inv = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(t, d)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * inv), torch.cos(pos * inv)
    return pe


class LogMel(nn.Module):
    """(b, samples) -> (b, n_mels, frames) dB: torchaudio's MelSpectrogram (periodic Hann, centred reflect padding,
    power 2, HTK mel scale, no filter normalisation) + AmplitudeToDB with top_db per example."""

    def __init__(self, sample_rate=16000, n_fft=512, win_length=512, hop_length=160, n_mels=64, f_min=0.0,
                 f_max=None, top_db=120.0, amin=1e-10):
        super().__init__()
        self.n_fft, self.win_length, self.hop_length, self.top_db, self.amin = n_fft, win_length, hop_length, top_db, amin
        f_max = sample_rate / 2 if f_max is None else f_max
        mel = lambda f: 2595.0 * torch.log10(1.0 + f / 700.0)  # noqa: E731
        hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)  # noqa: E731
        freqs = torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
        edges = hz(torch.linspace(float(mel(torch.tensor(f_min, dtype=torch.float64))),
                                  float(mel(torch.tensor(f_max, dtype=torch.float64))), n_mels + 2,
                                  dtype=torch.float64))
        slopes = edges[None, :] - freqs[:, None]
        width = edges[1:] - edges[:-1]
        fb = torch.clamp(torch.minimum(-slopes[:, :-2] / width[:-1], slopes[:, 2:] / width[1:]), min=0.0)
        self.register_buffer("fb", fb.float(), persistent=False)
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wave, self.n_fft, self.hop_length, self.win_length, self.window, center=True,
                          pad_mode="reflect", return_complex=True)
        power = spec.real ** 2 + spec.imag ** 2  # (b, freq, frames)
        db = 10.0 * torch.log10(torch.clamp(torch.einsum("bft,fm->bmt", power, self.fb), min=self.amin))
        if self.top_db is not None:
            db = torch.maximum(db, db.amax(dim=(-2, -1), keepdim=True) - self.top_db)
        return db


class CaptionDecoder(nn.Module):
    def __init__(self, vocab: int, memory_dim: int, d: int = 256, heads: int = 4, ffn: int = 1024, layers: int = 2,
                 dropout: float = 0.2):
        super().__init__()
        self.d = d
        self.memory_proj = nn.Linear(memory_dim, d)
        self.word_embedding = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList([nn.TransformerDecoderLayer(d, heads, ffn, dropout, batch_first=True)
                                     for _ in range(layers)])
        self.dropout = nn.Dropout(dropout)

    def forward(self, memory, memory_mask, ids):
        t = ids.shape[1]
        x = self.dropout(self.word_embedding(ids) * math.sqrt(self.d) + sinusoid(t, self.d).to(ids.device))
        mem = self.memory_proj(memory)
        causal = nn.Transformer.generate_square_subsequent_mask(t)
        pad = None if memory_mask is None else ~memory_mask
        for layer in self.layers:
            x = layer(x, mem, tgt_mask=causal, memory_key_padding_mask=pad)
        return x @ self.word_embedding.weight.T


class EffNetTrm(nn.Module):
    def __init__(self, vocab: int, enc_proj_dim: int = 0, encoder: str = "efficientnet-b2",
                 encoder_overrides: dict | None = None, front_end: dict | None = None, **decoder_kw):
        super().__init__()
        self.front_end = LogMel(**(front_end or {}))
        self.encoder = EfficientNet.from_name(encoder, in_channels=1, **(encoder_overrides or {}))
        self.encoder._fc = nn.Identity()  # the ImageNet classifier: extract_features never reads it
        c = self.encoder._conv_head.out_channels
        self.enc_proj = nn.Linear(c, enc_proj_dim) if enc_proj_dim else None
        self.decoder = CaptionDecoder(vocab, enc_proj_dim or c, **decoder_kw)

    @classmethod
    def from_export(cls, path: str) -> tuple["EffNetTrm", object, dict]:
        """(model in eval mode, its tokenizer, the caption settings) from a directory kdjax's export wrote; the
        state dict is loaded strictly."""
        from safetensors.torch import load_file
        from transformers import AutoTokenizer

        with open(os.path.join(path, "config.json")) as f:
            cfg = json.load(f)
        arch = cfg["pytorch"]
        model = cls(**arch["model"])
        state = load_file(os.path.join(path, "model.safetensors"))
        model.load_state_dict(state, strict=True)
        return model.eval(), AutoTokenizer.from_pretrained(path), arch["generate"]

    def encode(self, mel, frame_mask=None):
        """mel (b, n_mels, frames) -> (b, frames/32, C) features and their mask."""
        feats = self.encoder.extract_features(mel[:, None]).mean(dim=2).transpose(1, 2)
        mask = None
        if frame_mask is not None:
            t = feats.shape[1]
            pad = (-frame_mask.shape[1]) % 32
            m = torch.nn.functional.pad(frame_mask, (0, pad)).reshape(frame_mask.shape[0], -1, 32).any(-1)
            mask = torch.nn.functional.pad(m, (0, max(0, t - m.shape[1])))[:, :t]
        if self.enc_proj is not None:
            feats = self.enc_proj(feats)
        return feats, mask

    def forward(self, mel, frame_mask, ids):
        feats, mask = self.encode(mel, frame_mask)
        return self.decoder(feats, mask, ids)

    @torch.no_grad()
    def greedy(self, mel, bos: int, steps: int):
        """Greedy tokens without a cache (re-runs the prefix), for latency comparisons."""
        feats, mask = self.encode(mel)
        ids = torch.full((mel.shape[0], 1), bos, dtype=torch.long, device=mel.device)
        for _ in range(steps):
            nxt = self.decoder(feats, mask, ids)[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
        return ids[:, 1:]

    @torch.no_grad()
    def caption(self, wave: torch.Tensor, sample_mask: torch.Tensor | None = None, *, bos_token_id: int,
                eos_token_id: int, max_new_tokens: int, min_new_tokens: int = 0, num_beams: int = 1,
                length_penalty: float = 1.0, early_stopping: bool = False, **_) -> list[list[int]]:
        """Caption tokens of each clip, EOS included when it was generated. num_beams=1 is greedy; more is beam
        search as transformers' and kdjax.models.generate's: each step keeps the 2k best continuations, the k best
        that did not stop run on, those among the top k that stopped join the finished hypotheses scored
        sum(log p) / length ** length_penalty, until no running beam can beat the worst of k finished ones.
        `sample_mask` (b, samples) marks the real samples of padded clips."""
        mel = self.front_end(wave)
        fmask = None
        if sample_mask is not None:
            idx = torch.clamp(torch.arange(mel.shape[-1], device=mel.device) * self.front_end.hop_length,
                              max=sample_mask.shape[1] - 1)
            fmask = sample_mask.bool()[:, idx]
        feats, mask = self.encode(mel, fmask)
        return self.generate(feats, mask, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
                             max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, num_beams=num_beams,
                             length_penalty=length_penalty, early_stopping=early_stopping)

    @torch.no_grad()
    def generate(self, memory: torch.Tensor, memory_mask: torch.Tensor | None, *, bos_token_id: int,
                 eos_token_id: int, max_new_tokens: int, min_new_tokens: int, num_beams: int, length_penalty: float,
                 early_stopping: bool) -> list[list[int]]:
        """`caption` from the encoder's output (b, T, memory width) and its mask."""
        out = []
        for i in range(len(memory)):
            m = None if memory_mask is None else memory_mask[i:i + 1]
            step = lambda ids: torch.log_softmax(  # noqa: E731 - the next token's log-probabilities per row
                self.decoder(memory[i:i + 1].expand(len(ids), -1, -1),
                             None if m is None else m.expand(len(ids), -1),
                             torch.tensor(ids, dtype=torch.long, device=memory.device))[:, -1].float(), -1)
            args = (step, bos_token_id, eos_token_id, max_new_tokens, min_new_tokens)
            out.append(_greedy(*args) if num_beams == 1 else _beam(*args, num_beams, length_penalty, early_stopping))
        return out


def _greedy(step, bos, eos, n, min_new):
    ids = [bos]
    for t in range(n):
        logp = step([ids])[0]
        if t < min_new:
            logp[eos] = -math.inf
        ids.append(int(logp.argmax()))
        if ids[-1] == eos:
            break
    return ids[1:]


def _beam(step, bos, eos, n, min_new, k, lp, early_stopping):
    running = [([], 0.0)]  # (tokens, sum of log-probabilities)
    finished = []  # (score, tokens)
    for t in range(n):
        logp = step([[bos] + toks for toks, _ in running])
        if t < min_new:
            logp[:, eos] = -math.inf
        acc = (logp + torch.tensor([s for _, s in running], device=logp.device)[:, None]).reshape(-1)
        top, idx = torch.topk(acc, min(2 * k, acc.numel()))
        vocab = logp.shape[1]
        cands = [(float(v), running[i // vocab][0] + [i % vocab]) for v, i in zip(top.tolist(), idx.tolist())]
        hit = [toks[-1] == eos or t + 1 >= n for _, toks in cands]
        if not (early_stopping and len(finished) >= k):
            finished += [(v / (t + 1) ** lp, toks) for j, (v, toks) in enumerate(cands[:k]) if hit[j]]
            finished = sorted(finished, key=lambda f: -f[0])[:k]
        running = [(toks, v) for (v, toks), h in zip(cands, hit) if not h][:k]
        if not running or all(hit) or t + 1 >= n or (early_stopping and len(finished) >= k):
            break
        if len(finished) >= k and running[0][1] / (t + 1) ** lp <= finished[-1][0]:
            break  # no running beam can beat the worst kept hypothesis
    return finished[0][1]
