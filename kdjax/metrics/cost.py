"""What a captioner costs to run (EffAAC, seed 002, Table 3): parameters, forward GFLOPs and captioning latency.

The paper's setup is the default: one 10-s clip, 20 predicted tokens, batch 1, the latency averaged over 10 runs
(on a Raspberry Pi 4 there; on whatever host runs `--mode=cost` here: run it on the device you deploy to).
- GFLOPs: the compiled forward (the audio encoder on the clip, the decoder teacher-forced over `tokens` tokens;
  Multi2Cap's decoder over its prompt too), counted by XLA plus the scanned layers it counts once
  (kdjax.train.flops); a multiply-add is 2 FLOPs. Generation with a KV cache does the same arithmetic.
- Latency: the warm, jitted `caption` with the config's beams and exactly `tokens` new tokens (min = max, so a
  model that would stop early still pays for every token, as the paper's fixed length does).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import platform
import time
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class CostSetup:
    clip_seconds: float = 10.0
    tokens: int = 20
    repeats: int = 10
    beams: int = 3

    def __post_init__(self):
        for key in ("clip_seconds", "tokens", "repeats", "beams"):
            if not getattr(self, key) > 0:
                raise ValueError(f"cost setup: {key} must be > 0, got {getattr(self, key)!r}")


def param_count(model: Any) -> int:
    """Every parameter of `model` (frozen bases and LoRA factors included): what a deployment holds."""
    import jax
    from flax import nnx

    return int(sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


def forward_gflops(fn: Any, *args: Any) -> float:
    """GFLOPs of one call of the jitted `fn` on `args` (arrays or ShapeDtypeStructs: nothing runs)."""
    from kdjax.train.flops import program_flops

    traced = fn.trace(*args)
    return program_flops(traced, traced.lower().compile()) / 1e9


def teacher_forced(model: Any):
    """(state, wave, mask, ids) -> logits for either captioner: Multi2Cap also takes the caption's mask."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    gdef, state = nnx.split(model)
    takes_mask = "caption_mask" in inspect.signature(type(model).__call__).parameters

    def fwd(s, w, m, i):
        extra = (jnp.ones(i.shape, jnp.int32),) if takes_mask else ()
        return nnx.merge(gdef, s)(w, m, i, *extra)["logits"]

    return jax.jit(fwd), state


def measure(model: Any, sample_rate: int, setup: CostSetup, eos_token_id: int = 2,
            pad_token_id: int = 0) -> dict[str, Any]:
    """Parameters (millions), forward GFLOPs and mean/std captioning latency (seconds) of `model`, a captioner
    with `caption(wave, mask, GenerateConfig)`, on a clip of noise (the arithmetic does not depend on it)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from kdjax.models.generate import GenerateConfig

    n = int(round(setup.clip_seconds * sample_rate))
    wave = jnp.asarray(np.random.default_rng(0).standard_normal((1, n)) * 0.1, jnp.float32)
    mask = jnp.ones((1, n), bool)
    fwd, state = teacher_forced(model)
    gflops = forward_gflops(fwd, state, wave, mask, jnp.ones((1, setup.tokens), jnp.int32))
    gen = GenerateConfig(max_new_tokens=setup.tokens, min_new_tokens=setup.tokens, num_beams=setup.beams,
                         eos_token_id=eos_token_id, pad_token_id=pad_token_id)
    gdef = nnx.graphdef(model)
    run = jax.jit(lambda s, w, m: nnx.merge(gdef, s).caption(w, m, gen)[0])
    t = time.perf_counter()
    jax.block_until_ready(run(state, wave, mask))
    compile_s = time.perf_counter() - t
    times = []
    for _ in range(setup.repeats):
        t = time.perf_counter()
        jax.block_until_ready(run(state, wave, mask))
        times.append(time.perf_counter() - t)
    return {"params_m": param_count(model) / 1e6, "gflops": gflops,
            "latency_s": float(np.mean(times)), "latency_std_s": float(np.std(times)),
            "first_call_s": compile_s, **dataclasses.asdict(setup), "sample_rate": int(sample_rate),
            "host": {"device": jax.devices()[0].device_kind, "platform": jax.default_backend(),
                     "machine": platform.machine(), "cpus": os.cpu_count()}}


def write_report(workdir: str, system: str, cfg: Any, result: dict[str, Any]) -> str:
    """`workdir/report.json` with the measurement under metrics.cost (where the experiment runner's tables read
    it), written whole or not at all."""
    import json

    from kdjax import paths

    path = paths.join(workdir, "report.json")
    report = {"mode": "cost", "system": system, "metrics": {"cost": result},
              "config": cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)}
    paths.write_text(path, json.dumps(report, indent=2, default=str))
    return path
