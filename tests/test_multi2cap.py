"""Multi2Cap end to end: the smoke run learns and captions (CLI, on the embedded real set), the checkpoint
holds only what is trained, a killed run resumes exactly, the model's pieces fit together."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import multi2cap as m2c_config
from kdjax.models import lora
from kdjax.systems import multi2cap
from kdjax.train.trainer import Trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train_logs(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["split"] == "train"]


def test_smoke_run_learns_and_captions(tmp_path):
    """The README's main command (fewer steps): SmolLM2-135M decoder, CED + Q-Former + LoRA, CFD from a small
    image teacher; L_cap falls, captions come out of the trained workdir."""
    workdir = str(tmp_path / "smoke")
    cmd = [sys.executable, "-m", "kdjax.main", "--config=configs/multi2cap.py:smoke", f"--workdir={workdir}",
           "--config.train.steps=40", "--config.train.log_every=5"]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-3000:]
    logs = _train_logs(workdir)
    first, last = logs[0]["l_cap"], np.mean([r["l_cap"] for r in logs[-2:]])
    assert last < 0.75 * first, (first, last)
    assert all(np.isfinite(r["l_cfd"]) for r in logs)
    report = json.load(open(os.path.join(workdir, "report.json")))
    assert report["info"]["caption_metrics/test"]["tokenization"] == "loae"
    assert report["metrics"]["test"]["bleu_1"] > 0.05
    assert report["info"]["trainable_params"] < 0.05 * 135e6  # LoRA + Q-Former + projector + CFD heads
    clip = os.path.join(ROOT, "kdjax/data/assets/real_sounds/audio/tuxpaint__animals__amphibians__frog.flac")
    cap = subprocess.run([sys.executable, "-m", "kdjax.main", "--config=configs/multi2cap.py:smoke",
                          f"--workdir={workdir}", "--mode=caption", f"--audio={clip}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert cap.returncode == 0, cap.stderr[-3000:]
    path, text = cap.stdout.strip().splitlines()[-1].split("\t")
    assert path == clip and len(text.split()) >= 1


def tiny_config(steps=6):
    c = m2c_config.get_config("smoke")
    c.decoder.checkpoint = ""
    c.decoder.random = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                        "num_key_value_heads": 2, "max_position_embeddings": 128, "tie_word_embeddings": True}
    c.audio.depth = 2
    c.data.clip_seconds = 2.0
    c.train.update({"steps": steps, "log_every": 1, "checkpoint_every": 3, "batch_size": 8})
    c.eval.generate = {"num_beams": 1, "max_new_tokens": 4, "min_new_tokens": 1}
    c.cfd.negatives = "random"  # draws from the step's key: exactness of resume covers it
    return c


def test_checkpoint_holds_only_trained_parameters_and_resume_is_exact(tmp_path):
    cfg = tiny_config()
    straight = Trainer(cfg, multi2cap.build(cfg, str(tmp_path / "a")), str(tmp_path / "a"))
    straight.run()
    # the same run, killed during step 5 (its checkpoint is from step 3) and resumed
    killed = Trainer(cfg, multi2cap.build(cfg, str(tmp_path / "b")), str(tmp_path / "b"))
    step, calls = killed.train_step, []

    def dies_at_step_5(*args):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return step(*args)

    killed.train_step = dies_at_step_5
    with pytest.raises(KeyboardInterrupt):
        killed.run()
    resumed = Trainer(cfg, multi2cap.build(cfg, str(tmp_path / "b")), str(tmp_path / "b"))
    resumed.run()
    for a, b in zip(jax.tree.leaves(straight.state["params"]), jax.tree.leaves(resumed.state["params"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    by_step = lambda d: {r["step"]: r["loss"] for r in _train_logs(str(tmp_path / d))}
    assert by_step("a") == by_step("b")
    # what is saved: LoRA factors and the new modules, never the frozen CED/LLaMA bases or the teacher
    names = {".".join(map(str, p)) for p, _ in jax.tree_util.tree_flatten_with_path(straight.state["params"])[0]}
    names = {n.replace("'", "").replace("[", "").replace("]", "") for n in names}
    assert any("lora_a" in n for n in names) and any("qformer" in n for n in names)
    assert not any(n.startswith("decoder") and "lora" not in n for n in names)
    assert not any(n.startswith("audio_encoder") and "lora" not in n for n in names)
    opt_leaves = jax.tree.leaves(straight.state["opt_state"])
    assert sum(x.size for x in opt_leaves) < 3 * sum(x.size for x in jax.tree.leaves(straight.state["params"])) + 100


def test_bare_config_names_every_missing_path():
    run = subprocess.run([sys.executable, "-m", "kdjax.main", "--config=configs/multi2cap.py"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    for key in ("audio.checkpoint", "decoder.checkpoint", "teacher.checkpoint", "data.manifest_file"):
        assert f"--config.{key}=" in run.stderr


def test_model_pieces_and_audio_only_inference():
    cfg = tiny_config()
    from kdjax.data.tokenizers import train_word_level

    tok = train_word_level(["a dog barks", "a frog croaks"], "/tmp/kdjax_m2c_tok_test")
    model = multi2cap.build_model(cfg, tok)
    assert model.cfg.prompt_prefix[0] == tok.bos_token_id
    paths = [p for p, _ in lora.layers(model)]
    assert "audio_encoder.blocks.0.attn.q_proj" in paths and "decoder.model.layers.1.self_attn.v_proj" in paths
    wave = jnp.asarray(np.random.RandomState(0).normal(size=(2, 32000)).astype(np.float32))
    mask = jnp.ones((2, 32000), jnp.int32)
    ids = jnp.asarray([[4, 5, 2, 3], [4, 2, 3, 3]])
    cmask = jnp.asarray([[1, 1, 1, 0], [1, 1, 0, 0]])
    out = model(wave, mask, ids, cmask)
    assert out["logits"].shape == (2, 4, len(tok))
    # teacher forcing agrees with the decoder run step by step from the same prompt (positions, masks, splice)
    a = model.encode_audio(wave, mask)
    x, m = model.prompt(a["audio_tokens"], a["audio_mask"])
    full = jnp.concatenate([x, model.decoder.embed(ids)], 1)
    fm = jnp.concatenate([m, cmask.astype(bool)], 1)
    ref = model.decoder(inputs_embeds=full, attention_mask=fm, position_ids=jnp.maximum(jnp.cumsum(fm, 1) - 1, 0))
    p = x.shape[1]
    np.testing.assert_allclose(np.asarray(out["logits"][0, :3]), np.asarray(ref["logits"][0, p - 1:p + 2]), atol=1e-5)
    model.audio_only()
    assert model.cfd_audio is None and model.cfd_image is None
    from kdjax.models.generate import GenerateConfig

    tokens, lengths = model.caption(wave, mask, GenerateConfig(max_new_tokens=5, num_beams=3, eos_token_id=2,
                                                               pad_token_id=3))
    assert tokens.shape == (2, 5) and (np.asarray(lengths) >= 1).all()


@pytest.mark.parametrize("loss", ["triplet", "smooth_l1", "mse", "info_nce", "cosine"])
def test_every_cfd_loss_runs_with_gradients(loss):
    import ml_collections

    c = ml_collections.ConfigDict({"negatives": "hardest", "margin": 1.0, "temperature": 0.07})
    a = jnp.asarray(np.random.RandomState(0).normal(size=(6, 8)).astype(np.float32))
    i = jnp.asarray(np.random.RandomState(1).normal(size=(6, 8)).astype(np.float32))
    value, g = jax.value_and_grad(lambda x: multi2cap.cfd_loss(loss, x, i, c, jax.random.key(0)))(a)
    assert np.isfinite(float(value)) and float(jnp.abs(g).sum()) > 0
    with pytest.raises(ValueError):
        multi2cap.cfd_loss("l3", a, i, c, jax.random.key(0))
