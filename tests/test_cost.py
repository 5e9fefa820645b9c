"""What a captioner costs (EffAAC Table 3): kdjax.metrics.cost against PyTorch's own FLOP counter, and
`kdjax.main --mode=cost`."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch.utils.flop_counter import FlopCounterMode

from kdjax import convert
from kdjax.metrics import cost
from kdjax.models.caption_decoder import CaptionDecoderConfig
from kdjax.models.effaac import EffAAC, EffAACConfig
from tests import runs
from kdjax.convert.pytorch.modeling_effaac import EffNetTrm


def test_student_parameters_and_gflops_agree_with_pytorch_on_the_paper_student():
    """The paper's EffNet-Trm (EfficientNet-B2 + 2-layer Transformer) on a 10-s clip with 20 tokens: kdjax's
    parameter count equals the PyTorch student's (its unused classifier aside), and its GFLOPs are PyTorch's
    convolution and matmul count plus the log-mel front end PyTorch is given precomputed, plus the elementwise
    work (normalisation, activations, softmax) that only XLA counts: a few percent."""
    vocab, n, tokens = 4981, 160000, 20
    model = EffAAC(EffAACConfig(decoder=CaptionDecoderConfig(vocab_size=vocab)), rngs=nnx.Rngs(0))
    wave = jnp.asarray(np.random.default_rng(0).standard_normal((1, n)) * 0.1, jnp.float32)
    fwd, state = cost.teacher_forced(model)
    ours = cost.forward_gflops(fwd, state, wave, jnp.ones((1, n), bool), jnp.ones((1, tokens), jnp.int32))
    front_end = cost.forward_gflops(jax.jit(model.cfg.front_end.mel), wave)
    mel = torch.from_numpy(np.array(model.cfg.front_end.mel(wave)))

    tm = EffNetTrm(vocab).eval()
    sd = {k: torch.from_numpy(np.array(v)) for k, v in convert.effaac_tensors(model).items()}
    missing, unexpected = tm.load_state_dict(sd, strict=False)
    assert not unexpected
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        tm(mel, None, torch.ones((1, tokens), dtype=torch.long))
    theirs = counter.get_total_flops() / 1e9
    assert theirs + front_end < ours < 1.1 * (theirs + front_end), (ours, theirs, front_end)
    torch_params = sum(p.numel() for k, p in tm.named_parameters() if not k.startswith("encoder._fc"))
    assert cost.param_count(model.audio_only()) == torch_params


def test_cost_mode_writes_the_measurement_and_reads_no_data(tmp_path):
    wd = tmp_path / "w"
    p = runs.run("configs/effaac.py:tiny", str(wd), "--mode=cost", "--cost_repeats=3", "--cost_tokens=7",
                 "--config.data.manifest_file=/nowhere/manifest.jsonl", "--config.data.source=manifest")
    report = json.load(open(wd / "report.json"))
    c = report["metrics"]["cost"]
    assert report["mode"] == "cost" and report["system"] == "effaac" and str(wd / "report.json") in p.stdout
    assert (c["repeats"], c["tokens"], c["clip_seconds"], c["beams"]) == (3, 7, 10.0, 1)
    assert c["latency_s"] > 0 and c["gflops"] > 0 and c["host"]["cpus"] == os.cpu_count()
    assert sorted(os.listdir(wd)) == ["report.json"]  # no checkpoint, lock or tokenizer left behind

    from configs import effaac as effaac_config
    from kdjax.systems import effaac

    model, _ = effaac.cost_model(effaac_config.get_config("tiny"))
    assert c["params_m"] == pytest.approx(cost.param_count(model) / 1e6)

    bad = runs.run("configs/effaac.py:tiny", str(tmp_path / "b"), "--mode=cost", "--cost_tokens=0", check=False)
    assert bad.returncode != 0 and "tokens must be > 0" in bad.stderr
    other = runs.run("configs/dsg_kd.py:smoke", str(tmp_path / "d"), "--mode=cost", check=False)
    assert other.returncode != 0 and "has no --mode=cost" in other.stderr
