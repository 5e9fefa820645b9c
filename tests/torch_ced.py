"""A PyTorch CED written from the documented architecture (../shared/reference/ced.md), as the reference
for kdjax's parity tests and benchmark. The CED package itself cannot be installed offline.

Module names reproduce the released state dicts (ced_state_dicts.json), including the front end's
buffers, so a kdjax `save_pretrained` directory loads here with strict=True. The mel filterbank comes
from librosa (HTK, unnormalised), independently of kdjax.audio.
"""

from __future__ import annotations

import librosa
import torch
from torch import nn

SIZES = {"ced_tiny": (192, 3), "ced_mini": (256, 4), "ced_small": (384, 6), "ced_base": (768, 12)}


class Spectrogram(nn.Module):
    def __init__(self, n_fft=512, win_length=512, hop_length=160):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop_length
        self.register_buffer("window", torch.hann_window(win_length))

    def forward(self, x):
        spec = torch.stft(x, self.n_fft, self.hop, window=self.window, center=True, pad_mode="reflect",
                          return_complex=True)
        return spec.abs() ** 2


class MelScale(nn.Module):
    def __init__(self, sr=16000, n_fft=512, n_mels=64, f_min=0.0, f_max=8000.0):
        super().__init__()
        fb = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max, htk=True, norm=None)
        self.register_buffer("fb", torch.tensor(fb.T, dtype=torch.float32))

    def forward(self, spec):  # (b, freq, frames) -> (b, mel, frames)
        return torch.matmul(spec.transpose(-1, -2), self.fb).transpose(-1, -2)


class MelSpectrogram(nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.spectrogram = Spectrogram()
        self.mel_scale = MelScale(**kw)

    def forward(self, x):
        return self.mel_scale(self.spectrogram(x))


class ToDB(nn.Module):
    """10*log10(max(x, 1e-10)) clamped at max - top_db; the max over the whole batch when `batch`
    (torchaudio's AmplitudeToDB on 3-D input), else per example."""

    def __init__(self, top_db=120.0, batch=False):
        super().__init__()
        self.top_db, self.batch = top_db, batch

    def forward(self, x):
        db = 10.0 * torch.log10(torch.clamp(x, min=1e-10))
        peak = db.amax() if self.batch else db.amax(dim=(-2, -1), keepdim=True)
        return torch.maximum(db, peak - self.top_db)


class Swap(nn.Module):
    def forward(self, x):  # b c f t <-> b f c t
        return x.transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5
        out = attn.softmax(-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class SplitAttention(Attention):
    """LOAE's CED attention (models/ced/audiotransformer.py, "Changed by Li"): separate q/k/v projections."""

    def __init__(self, dim, heads):
        nn.Module.__init__(self)
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = (p(x).reshape(b, n, self.heads, d // self.heads).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        attn = (q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5
        out = attn.softmax(-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc1 = nn.Linear(dim, dim * 4)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(dim * 4, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, attention=Attention):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Conv2d(1, dim, 16, 16)

    def forward(self, x):
        return self.proj(x)


class TorchCED(nn.Module):
    def __init__(self, size="ced_tiny", num_classes=527, target_length=1012, batch_top_db=False,
                 chunk_mode="mean", split_qkv=False, depth=12):
        super().__init__()
        dim, heads = SIZES[size]
        self.target_length, self.chunk_mode = target_length, chunk_mode
        self.front_end = nn.Sequential(MelSpectrogram(), ToDB(batch=batch_top_db))
        self.init_bn = nn.Sequential(Swap(), nn.BatchNorm2d(64, momentum=0.01), Swap())
        self.patch_embed = PatchEmbed(dim)
        self.time_pos_embed = nn.Parameter(torch.randn(1, dim, 1, target_length // 16) * 0.02)
        self.freq_pos_embed = nn.Parameter(torch.randn(1, dim, 4, 1) * 0.02)
        attention = SplitAttention if split_qkv else Attention  # split: LOAE's copy of CED
        self.blocks = nn.Sequential(*[Block(dim, heads, attention) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.outputlayer = (nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes)) if num_classes
                            else None)

    def forward_features(self, x):  # (b, 1, f, t) -> tokens (b, f*t, d)
        x = self.patch_embed(x)
        t = x.shape[-1]
        x = x + self.time_pos_embed[..., :t] + self.freq_pos_embed
        x = x.flatten(2).transpose(1, 2)  # (b, d, f, t) -> (b, f*t, d): token = f * T + t
        return self.norm(self.blocks(x))

    def forward(self, wave):
        x = self.front_end(wave).unsqueeze(1)  # (b, 1, mel, frames)
        x = self.init_bn(x)
        b, frames = x.shape[0], x.shape[-1]
        if frames <= self.target_length:
            tokens = self.forward_features(x)
            out = {"last_hidden_state": tokens, "pooler_output": tokens.mean(1)}
            if self.outputlayer is not None:
                out["logits"] = self.outputlayer(tokens.mean(1))
            return out
        splits = list(x.split(self.target_length, -1))
        if splits[-1].shape[-1] < self.target_length:
            splits[-1] = nn.functional.pad(splits[-1], (0, self.target_length - splits[-1].shape[-1]))
        n = len(splits)
        tokens = self.forward_features(torch.cat(splits, 0))
        tokens = tokens.reshape(n, b, *tokens.shape[1:])
        logits = self.outputlayer(tokens.mean(2)).mean(0) if self.outputlayer is not None else None
        if self.chunk_mode == "mean":
            out = {"last_hidden_state": tokens.mean(0), "pooler_output": tokens.mean(2).mean(0)}
        else:
            cat = tokens.transpose(0, 1).reshape(b, -1, tokens.shape[-1])
            out = {"last_hidden_state": cat, "pooler_output": cat.mean(1)}
        if logits is not None:
            out["logits"] = logits
        return out
