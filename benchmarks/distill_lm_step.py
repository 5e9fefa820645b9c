"""distill_lm's train step (issue 26 part 4): the student alone, logit KD from the top-k cache, and logit KD from the
dense teacher in the step, on the setting of configs/experiments/distill_lm_smollm2.py (SmolLM2-135M-Instruct's
real weights into its first 4 layers, rows of 128 tokens, batch 8), in one process on this machine.

Each row is built by `kdjax.systems.distill_lm.build` (the path `python -m kdjax.main` takes) on a small share of the
docstring corpus (--fraction of the documents, so that the top-k cache is quick to write), and its jitted step is
timed, the three rows taking turns round by round (`benchmarks.common.interleaved`: the machine's drifting load falls
on all of them). The cache's own cost is reported per training token (its writing time over the tokens it covers),
with its bytes per token. Prints one JSON line.

    python benchmarks/distill_lm_step.py [--rounds 5] [--fraction 0.03] [--top_k 64]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import interleaved  # noqa: E402


def config(source: str, fraction: float, top_k: int):
    from configs.distill_lm import get_config
    from configs.experiments.distill_lm_smollm2 import SMOLLM2

    c = get_config("tiny")
    c.data.update({"source": "docstrings", "length": 128, "split_seed": 0,
                   "fractions": (fraction, (1 - fraction) / 2, (1 - fraction) / 2)})
    c.teacher.checkpoint = SMOLLM2
    c.student.from_teacher_layers = 4
    c.train.update({"steps": 1000, "batch_size": 8})
    c.eval.update({"every": 0, "final": False})
    c.kd.update({"alpha": 0.0 if source == "alone" else 1.0, "source": "online" if source == "alone" else source,
                 "top_k": top_k, "rest": True})
    return c


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--fraction", type=float, default=0.03, help="share of the documents to train on (and cache)")
    p.add_argument("--top_k", type=int, default=64)
    args = p.parse_args()

    from absl import flags

    flags.FLAGS(sys.argv[:1])  # grain and kdjax's logging read absl flags
    from kdjax.systems import distill_lm
    from kdjax.train import sharding as shd
    from kdjax.train.trainer import Trainer

    steps, out = {}, {}
    cache_dir = tempfile.mkdtemp()
    for name in ("alone", "topk", "online"):
        cfg = config(name, args.fraction, args.top_k)
        cfg.teacher.cache.dir = cache_dir  # the alone row writes nothing; topk writes it once
        wd = tempfile.mkdtemp()
        trainer = Trainer(cfg, distill_lm.build(cfg, wd), wd)
        batch = shd.global_batch(next(trainer.train_iterator()), trainer.mesh)
        state = {"s": trainer.state}

        def step(trainer=trainer, batch=batch, state=state):
            state["s"], m = trainer.train_step(state["s"], trainer.frozen_state, trainer.teacher_state, batch)
            m["loss"].block_until_ready()

        steps[name] = step
        info = trainer.task.info
        if name == "topk":
            t = info["teacher"]
            written = t.get("written") or {}
            tokens = int(info["target_tokens"]["train"])
            out["cache"] = {"bytes_per_token": t.get("bytes_per_token"), "train_tokens": tokens,
                            "seconds": written.get("seconds"),
                            "ms_per_token": (round(1e3 * written["seconds"] / tokens, 3)
                                             if written.get("seconds") else None)}
    times = interleaved(steps, args.rounds, warmup=2)
    med = {k: float(np.median(v)) for k, v in times.items()}
    out.update({"bench": "distill_lm_step", "rows": 8, "tokens_per_row": 128, "top_k": args.top_k,
                "s_per_step": {k: round(v, 3) for k, v in med.items()},
                "online_over_topk": round(float(np.median(np.asarray(times["online"]) / np.asarray(times["topk"]))), 3),
                "topk_over_alone": round(float(np.median(np.asarray(times["topk"]) / np.asarray(times["alone"]))), 3)})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
