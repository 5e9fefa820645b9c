"""Audio encoder throughput: log-mel + CED-base forward on 10-s clips, kdjax against the PyTorch
reference (tests/torch_ced.py, the same architecture and weights) in the same run; and the front end
alone against librosa and torch. Prints one JSON line.

kdjax runs one jitted function (front end + encoder) over the split NNX state, as the trainer does.
PyTorch runs in inference mode with `torch.set_num_threads` equal to the cores XLA uses.

    python benchmarks/audio_encoder.py [--batch 4] [--reps 3] [--size ced_base] [--device gpu --dtype bfloat16]

With --device=gpu both sides run on the GPU (kdjax's CED with compute dtype --dtype, PyTorch under autocast), and
the JSON adds each side's model FLOPs utilisation of the chip's peak; --device=tpu runs kdjax alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import (add_device_args, device_fields, matmul_ceiling, timed, torch_autocast,  # noqa: E402
                               torch_device, torch_sync, use_device)

SECONDS, SR = 10.0, 16000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=4, help="10-s clips per forward")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions (median)")
    ap.add_argument("--size", default="ced_base", help="ced_tiny, ced_mini, ced_small or ced_base")
    ap.add_argument("--frontend_batch", "--frontend-batch", type=int, default=16, help="clips of the front-end test")
    add_device_args(ap)
    args = ap.parse_args()
    use_device(args)

    import jax
    import librosa
    import torch
    from flax import nnx

    from kdjax.audio import log_mel
    from kdjax.convert import from_pretrained
    from tests.torch_ced import TorchCED

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    n = int(SECONDS * SR)
    wave = (0.1 * rng.standard_normal((args.batch, n))).astype(np.float32)

    torch.manual_seed(0)
    ref = TorchCED(args.size).eval()
    import tempfile

    path = os.path.join(tempfile.mkdtemp(), "ced.pt")
    torch.save(ref.state_dict(), path)
    model = from_pretrained(path, arch=args.size, dtype=args.dtype)
    dev = torch_device(args)
    gdef, state = nnx.split(model)
    state = nnx.to_pure_dict(state)
    encode = jax.jit(lambda s, w: nnx.merge(gdef, s)(w)["last_hidden_state"])
    wj = jax.device_put(wave)
    t_jax = timed(lambda: encode(state, wj).block_until_ready(), args.reps)
    t_torch = err = None
    if dev is not None:
        ref = ref.to(dev)
        wt = torch.from_numpy(wave).to(dev)

        def torch_fwd():
            with torch.inference_mode(), torch_autocast(args, dev):
                out = ref(wt)["last_hidden_state"]
            torch_sync(dev)
            return out

        t_torch = timed(torch_fwd, args.reps)
        err = float(np.abs(np.asarray(encode(state, wj), np.float32) - torch_fwd().float().cpu().numpy()).max())

    # front end alone
    fb = args.frontend_batch
    fw = (0.1 * rng.standard_normal((fb, n))).astype(np.float32)
    fe = jax.jit(lambda w: log_mel(w))
    fwj = jax.device_put(fw)
    t_fe_jax = timed(lambda: fe(fwj).block_until_ready(), args.reps)
    t_fe_torch = None
    if dev is not None:
        fwt = torch.from_numpy(fw).to(dev)

        def fe_torch():
            with torch.inference_mode():
                out = ref.front_end(fwt)
            torch_sync(dev)
            return out

        t_fe_torch = timed(fe_torch, args.reps)

    def fe_librosa():
        return [librosa.power_to_db(librosa.feature.melspectrogram(
            y=x, sr=SR, n_fft=512, hop_length=160, win_length=512, n_mels=64, fmin=0, fmax=8000, htk=True,
            norm=None, pad_mode="reflect"), amin=1e-10, top_db=120.0) for x in fw]

    t_fe_librosa = timed(fe_librosa, args.reps)

    # analytic encoder FLOPs per clip: 12 blocks of qkv/proj/MLP GEMMs plus attention scores and mixing
    d, t = model.cfg.embed_dim, int(encode(state, wj).shape[1])
    flop_clip = model.cfg.depth * t * (2 * (4 * d * d + 2 * d * 4 * d) + 4 * t * d)
    ceiling = matmul_ceiling()
    ratio = lambda a, b: round(a / b, 3) if a and b else None  # noqa: E731
    per_s = lambda n, t: round(n / t, 3) if t else None  # noqa: E731
    out = {
        "benchmark": "audio_encoder", "model": args.size, "clip_seconds": SECONDS, "batch": args.batch,
        "tokens_per_clip": int(encode(state, wj).shape[1]),
        "kdjax_clips_per_s": round(args.batch / t_jax, 3), "torch_clips_per_s": per_s(args.batch, t_torch),
        "speedup_vs_torch": ratio(t_torch, t_jax), "max_abs_diff_tokens": err,
        "model_gflop_per_clip": round(flop_clip / 1e9, 1),
        "matmul_ceiling_gflops": round(ceiling / 1e9, 1),
        "kdjax_fraction_of_ceiling": round(flop_clip * args.batch / t_jax / ceiling, 3),
        "torch_fraction_of_ceiling": ratio(flop_clip * args.batch / t_torch, ceiling) if t_torch else None,
        "frontend_batch": fb,
        "frontend_kdjax_clips_per_s": round(fb / t_fe_jax, 1),
        "frontend_torch_clips_per_s": per_s(fb, t_fe_torch),
        "frontend_librosa_clips_per_s": round(fb / t_fe_librosa, 1),
        "frontend_speedup_vs_torch": ratio(t_fe_torch, t_fe_jax),
        "frontend_speedup_vs_librosa": round(t_fe_librosa / t_fe_jax, 3),
        "cpu_threads": threads, "jax": jax.__version__, "torch": torch.__version__,
        **device_fields(args, flop_clip * args.batch, t_jax, t_torch),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
