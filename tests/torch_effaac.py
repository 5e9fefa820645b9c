"""EffAAC's student in PyTorch from stock parts: efficientnet_pytorch's EfficientNet-B2 (one input channel)
and torch.nn.TransformerDecoderLayer (post-LN). The independent reference for kdjax.models.effaac (parity
tests) and its PyTorch counterpart in benchmarks/effaac_cost.py. The layout is kdjax.convert.effaac's."""

from __future__ import annotations

import math

import torch
from efficientnet_pytorch import EfficientNet
from torch import nn


def sinusoid(t: int, d: int) -> torch.Tensor:
    pos = torch.arange(t, dtype=torch.float32)[:, None]
    inv = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(t, d)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * inv), torch.cos(pos * inv)
    return pe


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
        x = self.dropout(self.word_embedding(ids) * math.sqrt(self.d) + sinusoid(t, self.d))
        mem = self.memory_proj(memory)
        causal = nn.Transformer.generate_square_subsequent_mask(t)
        pad = None if memory_mask is None else ~memory_mask
        for layer in self.layers:
            x = layer(x, mem, tgt_mask=causal, memory_key_padding_mask=pad)
        return x @ self.word_embedding.weight.T


class EffNetTrm(nn.Module):
    def __init__(self, vocab: int, enc_proj_dim: int = 0, **decoder_kw):
        super().__init__()
        self.encoder = EfficientNet.from_name("efficientnet-b2", in_channels=1)
        c = self.encoder._conv_head.out_channels
        self.enc_proj = nn.Linear(c, enc_proj_dim) if enc_proj_dim else None
        self.decoder = CaptionDecoder(vocab, enc_proj_dim or c, **decoder_kw)

    def encode(self, mel, frame_mask=None):
        """mel (b, n_mels, frames) -> (b, frames/32, C) features and their mask."""
        feats = self.encoder.extract_features(mel[:, None]).mean(dim=2).transpose(1, 2)
        mask = None
        if frame_mask is not None:
            t = feats.shape[1]
            n = frame_mask.shape[1]
            pad = (-n) % 32
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
        ids = torch.full((mel.shape[0], 1), bos, dtype=torch.long)
        for _ in range(steps):
            nxt = self.decoder(feats, mask, ids)[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
        return ids[:, 1:]
