"""PyTorch references for kdjax's token-level KD losses (kdjax.losses.token_kd), float64 and written independently
of kdjax: the KLs through torch.nn.KLDivLoss's elementwise form, generalised JSD and the top-k forms written out. Read
by tests/test_token_kd.py and benchmarks/token_kd_parity.py."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def divergence(log_t: torch.Tensor, log_s: torch.Tensor, kind: str, beta: float) -> torch.Tensor:
    """Per token, float64: the KLs through torch.nn.KLDivLoss's elementwise form, JSD written out."""
    if kind == "forward_kl":
        return torch.nn.KLDivLoss(reduction="none", log_target=True)(log_s, log_t).sum(-1)
    if kind == "reverse_kl":
        return torch.nn.KLDivLoss(reduction="none", log_target=True)(log_t, log_s).sum(-1)
    p, q = log_t.exp(), log_s.exp()
    m = beta * p + (1 - beta) * q
    return (beta * (p * (log_t - m.log())).sum(-1) + (1 - beta) * (q * (log_s - m.log())).sum(-1))


def dense_loss(s, t, mask, kind: str, beta: float, temperature: float) -> tuple[float, np.ndarray]:
    """The masked mean divergence of softmax(t / T) and softmax(s / T), times T^2, and its gradient in s."""
    s = torch.tensor(s, dtype=torch.float64, requires_grad=True)
    log_s = F.log_softmax(s / temperature, -1)
    log_t = F.log_softmax(torch.tensor(t, dtype=torch.float64) / temperature, -1)
    m = torch.tensor(mask, dtype=torch.float64)
    loss = temperature ** 2 * (divergence(log_t, log_s, kind, beta) * m).sum() / m.sum()
    loss.backward()
    return float(loss.detach()), s.grad.numpy()


def sparse_loss(s, lp, idx, mask, kind: str, beta: float, temperature: float, rest: bool
                ) -> tuple[float, np.ndarray]:
    """The top-k forms: over the k entries renormalised, or (rest) the k entries and one bucket for the rest."""
    s = torch.tensor(s, dtype=torch.float64, requires_grad=True)
    lp, idx = torch.tensor(lp, dtype=torch.float64), torch.tensor(idx, dtype=torch.int64)
    if not rest:
        log_t = F.log_softmax(lp / temperature, -1)
        log_s = F.log_softmax(torch.gather(s / temperature, -1, idx), -1)
    else:
        full = F.log_softmax(s, -1)
        in_k = torch.gather(full, -1, idx)
        q_rest = 1 - in_k.exp().sum(-1, keepdim=True)  # written the other way round from kdjax's logsumexp
        log_s = torch.cat([in_k, q_rest.log()], -1)
        log_t = torch.cat([lp, (1 - lp.exp().sum(-1, keepdim=True)).log()], -1)
    m = torch.tensor(mask, dtype=torch.float64)
    loss = temperature ** 2 * (divergence(log_t, log_s, kind, beta) * m).sum() / m.sum()
    loss.backward()
    return float(loss.detach()), s.grad.numpy()
