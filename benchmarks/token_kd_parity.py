"""How far kdjax's token-level KD losses (kdjax.losses.token_kd, float32) sit from PyTorch references in float64
(tests/torch_token_kd.py: torch.nn.KLDivLoss for the KLs, generalised JSD and the top-k forms written out), values
and gradients, over every setting tests/test_token_kd.py asserts to 1e-6 (issue 26 part 1), at the tests' size and at
SmolLM2's vocabulary. The largest absolute and relative errors per form; one JSON line.

    python benchmarks/token_kd_parity.py [--tokens=256 --vocab=49152]
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np


def _inputs(batch: int, length: int, vocab: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Student and teacher logits (std 2, as the tests) and a mask with padding."""
    rng = np.random.default_rng(seed)
    s = rng.normal(0, 2.0, (batch, length, vocab)).astype(np.float32)
    t = rng.normal(0, 2.0, (batch, length, vocab)).astype(np.float32)
    mask = (rng.random((batch, length)) > 0.3).astype(np.float32)
    return s, t, mask


def _errors(got: float, grad: np.ndarray, want: float, want_grad: np.ndarray) -> dict[str, float]:
    return {"value_abs": abs(got - want), "value_rel": abs(got - want) / max(abs(want), 1e-30),
            "grad_abs": float(np.abs(grad - want_grad).max()),
            "grad_rel": float(np.abs(grad - want_grad).max() / max(np.abs(want_grad).max(), 1e-30))}


def measure(batch: int, length: int, vocab: int, chunk: int, k: int) -> dict[str, dict[str, float]]:
    from kdjax.losses.token_kd import sparse_token_kd, token_kd, top_k_log_probs
    from tests.torch_token_kd import dense_loss, sparse_loss

    out: dict[str, dict[str, float]] = {}

    def keep(name: str, errs: dict[str, float]) -> None:
        worst = out.setdefault(name, {key: 0.0 for key in errs})
        for key, v in errs.items():
            worst[key] = max(worst[key], v)

    s, t, mask = _inputs(batch, length, vocab, 0)
    for kind, beta in (("forward_kl", 0.5), ("reverse_kl", 0.5), ("jsd", 0.1), ("jsd", 0.5), ("jsd", 0.9)):
        for temperature in (1.0, 2.0):
            want, want_grad = dense_loss(s, t, mask, kind, beta, temperature)
            for c in (0, chunk):
                fn = lambda x: token_kd(x, jnp.asarray(t), jnp.asarray(mask), kind=kind, beta=beta,  # noqa: E731
                                        temperature=temperature, chunk_tokens=c)
                got, grad = jax.value_and_grad(fn)(jnp.asarray(s))
                keep(f"dense {kind}", _errors(float(got), np.asarray(grad), want, want_grad))
    lp, idx = top_k_log_probs(jnp.asarray(t), k)
    lp16 = lp.astype(jnp.bfloat16)  # as a cache holds them; the reference reads the same rounded values
    for rest, temperature in ((False, 1.0), (False, 2.0), (True, 1.0)):
        for kind in ("forward_kl", "reverse_kl", "jsd"):
            want, want_grad = sparse_loss(s, np.asarray(lp16.astype(jnp.float32)), np.asarray(idx), mask, kind, 0.5,
                                          temperature, rest)
            fn = lambda x: sparse_token_kd(x, lp16, idx, jnp.asarray(mask), kind=kind,  # noqa: E731
                                           temperature=temperature, rest=rest, chunk_tokens=chunk)
            got, grad = jax.value_and_grad(fn)(jnp.asarray(s))
            keep(f"top-{k} {'rest' if rest else 'renormalised'} {kind}",
                 _errors(float(got), np.asarray(grad), want, want_grad))
    return {name: {key: float(f"{v:.3g}") for key, v in errs.items()} for name, errs in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=256, help="tokens of the large setting (2 rows)")
    ap.add_argument("--vocab", type=int, default=49152, help="vocabulary of the large setting (SmolLM2's)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    out = {"benchmark": "token_kd_parity", "reference": "torch float64 (tests/torch_token_kd.py)",
           "kdjax": "float32", "settings": {
               "tests (3 x 7 tokens, vocabulary 53, k 8)": measure(3, 7, 53, 4, 8),
               f"2 x {args.tokens // 2} tokens, vocabulary {args.vocab}, k 64":
                   measure(2, args.tokens // 2, args.vocab, 64, 64)}}
    out["worst"] = {key: max(e[key] for s in out["settings"].values() for e in s.values())
                    for key in ("value_abs", "value_rel", "grad_abs", "grad_rel")}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
