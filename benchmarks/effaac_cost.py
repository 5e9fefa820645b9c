"""EffAAC's efficiency figures (seed 002, Table 3) on this CPU: parameters, GFLOPs and captioning latency of
the student against a teacher, and the student's latency against its PyTorch counterpart.

Setup (the paper's): one 10-s clip at 16 kHz and 20 output tokens, batch 1.
The measurements are kdjax's own (kdjax/metrics/cost.py, what `kdjax.main --mode=cost` and the Table 3
experiment, configs/experiments/effaac_table3.py, report); this script adds the PyTorch comparison.
- GFLOPs: XLA's cost analysis of the compiled forward plus the scanned layers it counts once (multiply-adds
  counted as 2): the student's encoder on the clip plus its decoder teacher-forced over 20 tokens; the
  teacher's audio encoder, Q-Former and LLaMA decoder over its prompt (prefix, audio tokens, suffix) plus
  20 caption tokens. Generation with a KV cache does the same arithmetic as that forward.
- Teacher shapes: Multi2Cap-base (CED-base, 2-layer BERT-base Q-Former, LLaMA-2-7B; configs/multi2cap.py:base),
  compiled from abstract shapes (no weights: 7B float32 parameters do not fit this machine's memory), so it
  gives parameters and GFLOPs but no latency. Latency is measured against the teacher this machine can run,
  Multi2Cap-smoke (CED-tiny, SmolLM2-135M when installed), and reported separately.
- Latency: warm, jitted `caption` (beam 3, min = max = 20 new tokens so every model emits 20 tokens), median
  of repeated calls (the smoke teacher's: the mean of 3, as --mode=cost gives it). PyTorch counterpart: the same student in PyTorch (kdjax/convert/pytorch/modeling_effaac.py:
  efficientnet_pytorch B2 + torch.nn.TransformerDecoderLayer), greedy decoding that re-runs the prefix
  each step (stock nn.TransformerDecoder has no KV cache), against kdjax's greedy decoding (KV cache), both
  20 tokens, `torch.set_num_threads(2)`, the two taking turns (benchmarks.common.interleaved). The encoders
  alone are compared too (kdjax from the waveform, front end included; PyTorch from the precomputed log-mel).

Prints one JSON line.

    python benchmarks/effaac_cost.py [--rounds 5] [--skip_base_teacher] [--device gpu --dtype bfloat16]

--device=gpu runs the student's latencies on the GPU (kdjax with compute dtype --dtype, the PyTorch student under
autocast) and adds each side's model FLOPs utilisation for the teacher-forced forward over a 10-s clip and 20
tokens (greedy latency per forward: a lower bound of the true utilisation); --device=tpu runs kdjax alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import (add_device_args, device_fields, interleaved, round_ratio, timed,  # noqa: E402
                               torch_autocast, torch_device, torch_sync, use_device)

SECONDS, TOKENS, SR = 10.0, 20, 16000


def student_side(vocab: int = 4981, dtype: str = "float32"):
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from kdjax.metrics import cost
    from kdjax.models.caption_decoder import CaptionDecoderConfig
    from kdjax.models.effaac import EffAAC, EffAACConfig
    from kdjax.models.efficientnet import EfficientNetConfig
    from kdjax.models.generate import GenerateConfig

    model = EffAAC(EffAACConfig(encoder=EfficientNetConfig.from_name("efficientnet-b2", dtype=jnp.dtype(dtype)),
                                decoder=CaptionDecoderConfig(vocab_size=vocab, dtype=jnp.dtype(dtype))),
                   rngs=nnx.Rngs(0))
    n = int(SECONDS * SR)
    wave = jnp.asarray(np.random.default_rng(0).standard_normal((1, n)) * 0.1, jnp.float32)
    mask = jnp.ones((1, n), bool)
    fwd, state = cost.teacher_forced(model)
    gflops = cost.forward_gflops(fwd, state, wave, mask, jnp.ones((1, TOKENS), jnp.int32))
    gdef = nnx.graphdef(model)
    encode = jax.jit(lambda s, w, m: nnx.merge(gdef, s).encode(w, m)["last_hidden_state"])

    def encoder():
        jax.block_until_ready(encode(state, wave, mask))

    def captioner(beams: int):
        cfg = GenerateConfig(max_new_tokens=TOKENS, min_new_tokens=TOKENS, num_beams=beams, eos_token_id=2)
        run = jax.jit(lambda s, w, m: nnx.merge(gdef, s).caption(w, m, cfg)[0])
        return lambda: jax.block_until_ready(run(state, wave, mask))

    return model, cost.param_count(model), gflops, captioner, encoder


def torch_student(model, args, vocab: int = 4981):
    """The PyTorch student with the kdjax student's weights on args.device, and its 20-token greedy captioner;
    (None, None) on a TPU."""
    import jax.numpy as jnp
    import torch

    from kdjax import convert
    from kdjax.convert.pytorch.modeling_effaac import EffNetTrm

    dev = torch_device(args)
    if dev is None:
        return None, None
    torch.set_num_threads(2)
    tm = EffNetTrm(vocab).eval()
    sd = convert.effaac_tensors(model)
    missing, unexpected = tm.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in sd.items()}, strict=False)
    assert not unexpected and all(k.startswith("encoder._fc") or k.endswith("num_batches_tracked")
                                  for k in missing), (missing, unexpected)
    n = int(SECONDS * SR)
    wave = np.random.default_rng(0).standard_normal((1, n)).astype(np.float32) * 0.1
    mel = torch.from_numpy(np.array(model.cfg.front_end.mel(jnp.asarray(wave)), np.float32)).to(dev)
    tm = tm.to(dev)

    def encode():
        with torch.no_grad(), torch_autocast(args, dev):
            tm.encode(mel)
        torch_sync(dev)

    def greedy():
        with torch_autocast(args, dev):
            tm.greedy(mel, bos=1, steps=TOKENS)
        torch_sync(dev)

    return greedy, encode


def base_teacher_cost() -> dict:
    """Multi2Cap-base's parameters and forward GFLOPs from abstract shapes (nothing allocated)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from configs import multi2cap as m2c_config
    from kdjax.metrics import cost
    from kdjax.systems import multi2cap
    from kdjax.train.task import ShapeTokenizer

    cfg = m2c_config.get_config("base")
    cfg.decoder.remat = False
    for node in (cfg.audio, cfg.decoder, cfg.teacher):
        node.checkpoint = ""
    model = nnx.eval_shape(lambda: multi2cap.build_model(cfg, ShapeTokenizer(int(cfg.aot.vocab_size))).audio_only())
    n = int(SECONDS * SR)
    fwd, state = cost.teacher_forced(model)
    gflops = cost.forward_gflops(fwd, state, jax.ShapeDtypeStruct((1, n), jnp.float32),
                                 jax.ShapeDtypeStruct((1, n), jnp.bool_), jax.ShapeDtypeStruct((1, TOKENS), jnp.int32))
    return {"params": cost.param_count(model), "gflops": gflops}


def smoke_teacher() -> dict:
    """Multi2Cap-smoke as `kdjax.main --mode=cost` measures it (SmolLM2-135M when installed): params, GFLOPs and
    the mean latency of 20-token beam-3 captions."""
    from configs import multi2cap as m2c_config
    from kdjax.metrics import cost
    from kdjax.systems import multi2cap

    cfg = m2c_config.get_config("smoke")
    model, tok = multi2cap.cost_model(cfg)
    setup = cost.CostSetup(SECONDS, TOKENS, repeats=3, beams=3)
    out = cost.measure(model, int(cfg.data.sample_rate), setup, tok.eos_token_id or 2, tok.pad_token_id or 0)
    return {**out, "decoder": cfg.decoder.checkpoint or "random"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5, help="rounds of turns (kdjax and PyTorch alternate)")
    ap.add_argument("--skip_base_teacher", "--skip-base-teacher", action="store_true",
                    help="no full-size abstract compile (minutes)")
    add_device_args(ap)
    a = ap.parse_args()
    use_device(a)

    model, s_params, s_gflops, captioner, encoder = student_side(dtype=a.dtype)
    beam3, greedy = captioner(3), captioner(1)
    teacher = smoke_teacher()
    t_params, t_gflops, t_lat = teacher["params_m"] * 1e6, teacher["gflops"], teacher["latency_s"]
    s_lat = timed(beam3, reps=5)
    t_greedy, t_encode = torch_student(model, a)
    sides = {"kdjax": greedy, "kdjax_enc": encoder}
    if t_greedy is not None:
        sides.update({"torch": t_greedy, "torch_enc": t_encode})
    times = interleaved(sides, rounds=a.rounds, reps=2)
    med = lambda k: round(float(np.median(times[k])), 3) if k in times else None  # noqa: E731
    ratio = lambda slow, fast: round(round_ratio(times, slow, fast), 3) if slow in times else None  # noqa: E731
    out = {
        "benchmark": "effaac_cost", "clip_s": SECONDS, "tokens": TOKENS,
        "student_params_m": round(s_params / 1e6, 2), "student_gflops": round(s_gflops, 2),
        "student_beam3_latency_s": round(s_lat, 3),
        "smoke_teacher": {"decoder": teacher["decoder"], "params_m": round(t_params / 1e6, 1), "gflops": round(t_gflops, 1),
                          "beam3_latency_s": round(t_lat, 3)},
        "smoke_teacher_over_student": {"params": round(t_params / s_params, 1), "gflops": round(t_gflops / s_gflops, 1),
                                       "latency": round(t_lat / s_lat, 1)},
        "student_greedy_latency_s": {"kdjax": med("kdjax"), "torch": med("torch")},
        "student_speedup_vs_torch": ratio("torch", "kdjax"),
        "encoder_latency_s": {"kdjax": med("kdjax_enc"), "torch": med("torch_enc")},
        "encoder_speedup_vs_torch": ratio("torch_enc", "kdjax_enc"),
        **device_fields(a, s_gflops * 1e9, med("kdjax"), med("torch")),
    }
    if not a.skip_base_teacher:
        base = base_teacher_cost()
        out["base_teacher"] = {"params_m": round(base["params"] / 1e6, 1), "gflops": round(base["gflops"], 1)}
        out["base_teacher_over_student"] = {"params": round(base["params"] / s_params, 1),
                                            "gflops": round(base["gflops"] / s_gflops, 1)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
