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
from tests import runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_smoke_run_learns_and_captions(tmp_path):
    """The README's main command (fewer steps): SmolLM2-135M decoder, CED + Q-Former + LoRA, CFD from a small
    image teacher; L_cap falls and the evaluation scores generated captions (caption mode is tested on the
    tiny variant below)."""
    workdir = str(tmp_path / "smoke")
    runs.run("configs/multi2cap.py:smoke", workdir, "--config.train.steps=24", "--config.train.log_every=4",
             timeout=1200, optimize=True)
    logs = runs.train_rows(workdir)
    first, last = logs[0]["l_cap"], np.mean([r["l_cap"] for r in logs[-2:]])
    assert last < 0.75 * first, (first, last)
    assert all(np.isfinite(r["l_cfd"]) for r in logs)
    report = json.load(open(os.path.join(workdir, "report.json")))
    assert report["info"]["caption_metrics/test"]["tokenization"] == "loae"
    assert report["metrics"]["test"]["bleu_1"] > 0.05
    assert report["info"]["trainable_params"] < 0.05 * 135e6  # LoRA + Q-Former + projector + CFD heads


def tiny_config(steps=6):
    c = m2c_config.get_config("tiny")
    c.train.steps = steps
    return c


@runs.SHARES_M2C_TINY
@pytest.mark.slow
def test_resume_is_exact_8_devices_match_1_and_only_trained_parameters_are_saved(m2c_tiny_run, tmp_path):
    """One baseline run (1 device, CLI, decoder unrolled) against (a) the same config on 8 devices, data x fsdp
    x tensor = 2 x 2 x 2, with the hardest-negative sampler, which picks different clips if negatives came from
    one device's shard, and the decoder as one scanned, rematerialised stack (the paper config's layout: its
    LoRA factors and dropout keys are the unrolled layers'); (b) a run killed during step 5 and resumed from
    its step-3 checkpoint."""

    one, eight = m2c_tiny_run, str(tmp_path / "eight")
    # captions from the trained workdir, through the CLI
    clip = os.path.join(ROOT, "kdjax/data/assets/real_sounds/audio/tuxpaint__animals__amphibians__frog.flac")
    cap = runs.run_mode("caption", one, f"--input={clip}")  # JSONL on stdout, the workdir's own config
    [row] = [json.loads(ln) for ln in cap.stdout.splitlines() if ln.startswith("{")]
    assert row["input"] == clip and isinstance(row["prediction"], str)  # a 6-step random decoder says little
    runs.run("configs/multi2cap.py:tiny", eight, "--config.mesh.data=2", "--config.mesh.fsdp=2",
             "--config.mesh.tensor=2", "--config.decoder.scan_layers=True", "--config.decoder.remat=True", devices=8)
    base, rows = runs.train_rows(one), runs.train_rows(eight)
    assert [r["step"] for r in base] == [r["step"] for r in rows] == list(range(1, 7))
    runs.assert_same_losses(base, rows, ("loss", "l_cap", "l_cfd"))
    assert rows[-1]["l_cap"] < rows[0]["l_cap"]
    # predictions/test.jsonl: the embedded test clips' ids and files, caption text, references and per-item scores;
    # kdjax.evaluate scores the file alone (its own references) to the report's numbers
    from kdjax import evaluate as evaluate_cli
    from kdjax.data import real_sounds

    test = real_sounds.caption_rows()["test"]
    preds = [json.loads(l) for l in open(os.path.join(one, "predictions", "test.jsonl"), encoding="utf-8")]
    assert [(r["id"], r["input"], r["references"]) for r in preds] == [(t["id"], t["audio"], t["captions"])
                                                                      for t in test]
    report = json.load(open(os.path.join(one, "report.json")))["metrics"]["test"]
    assert np.mean([r["scores"]["cider_d"] for r in preds]) == pytest.approx(100 * report["cider_d"], abs=1e-3)
    scored = evaluate_cli.main(["--predictions", os.path.join(one, "predictions", "test.jsonl"), "--out",
                                str(tmp_path / "scores.json"), "--tokenization", "loae", "--metrics", "bleu_4,cider_d"])
    assert scored.scores == pytest.approx({m: 100 * report[m] for m in ("bleu_4", "cider_d")}, abs=1e-6)
    # the stack is saved as such: one LoRA factor per projection with a leading layer axis
    assert runs.final_params(eight)["decoder.model.layers.self_attn.q_proj.lora_a"].shape[0] == 2

    cfg = tiny_config()
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
    by_step = lambda rows: {r["step"]: r["loss"] for r in rows}
    assert by_step(runs.train_rows(str(tmp_path / "b"))) == by_step(base)  # bit for bit
    # what is saved: LoRA factors and the new modules, never the frozen CED/LLaMA bases or the teacher
    names = {jax.tree_util.keystr(p, simple=True, separator=".")
             for p, _ in jax.tree_util.tree_flatten_with_path(resumed.state["params"])[0]}
    assert any("lora_a" in n for n in names) and any(n.startswith("qformer.") for n in names)
    assert not any(n.startswith(("decoder.", "audio_encoder.")) and "lora" not in n for n in names)
    params = sum(x.size for x in jax.tree.leaves(resumed.state["params"]))
    assert sum(x.size for x in jax.tree.leaves(resumed.state["opt_state"])) < 3 * params + 100


def test_scanned_decoder_gives_the_unrolled_outputs_and_gradients():
    """Multi2Cap (shared prompt prefix, LoRA, remat) with the decoder scanned or unrolled: the same LoRA factors
    from the same seed, and with the same weights, in training mode (dropout keys per layer), one loss and one
    set of gradients (the stack's per layer)."""
    from flax import nnx

    from kdjax.data.tokenizers import train_word_level
    from kdjax.losses.classification import cross_entropy
    from kdjax.models.state import flatten

    tok = train_word_level(["a dog barks", "a frog croaks"], "/tmp/kdjax_m2c_tok_scan_test")
    models = []
    for scan in (False, True):
        cfg = tiny_config()
        cfg.decoder.scan_layers, cfg.decoder.remat = scan, True
        models.append(multi2cap.build_model(cfg, tok))
    unrolled, scanned = (flatten(nnx.state(m, nnx.Param)) for m in models)
    stacked = lambda k: k.replace("decoder.model.layers.0.", "decoder.model.layers.")
    per_layer = lambda tree, k: np.stack([tree[k.replace("layers.", f"layers.{i}.", 1)] for i in range(2)])
    for k in scanned:
        if k.endswith("lora_a") and k.startswith("decoder."):
            np.testing.assert_array_equal(scanned[k], per_layer(unrolled, k), err_msg=k)
    rng = np.random.RandomState(0)
    for k, v in unrolled.items():  # the same weights in both layouts, LoRA B no longer zero
        v = np.asarray(v) + (rng.normal(0, 0.05, v.shape).astype(np.float32) if k.endswith("lora_b") else 0)
        unrolled[k] = v
    for k in scanned:
        if k.startswith("decoder.model.layers."):
            scanned[k] = per_layer(unrolled, k)
        else:
            scanned[k] = unrolled[k]
    assert {stacked(k) for k in unrolled if ".layers.1." not in k} == set(scanned)
    wave = jnp.asarray(rng.normal(size=(2, 32000)).astype(np.float32))
    mask = jnp.ones((2, 32000), jnp.int32)
    ids, cmask = jnp.asarray([[4, 5, 2, 3], [4, 2, 3, 3]]), jnp.asarray([[1, 1, 1, 0], [1, 1, 0, 0]])
    results = []
    for model, values in zip(models, (unrolled, scanned)):
        gdef, params, rest = nnx.split(model, nnx.Param, ...)
        nnx.replace_by_pure_dict(params, jax.tree_util.tree_map_with_path(
            lambda p, _: jnp.asarray(values[".".join(str(getattr(k, "key", k)) for k in p)]), nnx.to_pure_dict(params)))

        def loss(p, r, gdef=gdef):
            out = nnx.merge(gdef, p, r)(wave, mask, ids, cmask, deterministic=False, rngs=nnx.Rngs(dropout=7))
            return cross_entropy(out["logits"], ids, cmask)

        value, grads = jax.jit(jax.value_and_grad(loss))(nnx.to_pure_dict(params), nnx.to_pure_dict(rest))
        results.append((float(value), flatten(grads)))
    (l0, g0), (l1, g1) = results
    assert l1 == pytest.approx(l0, rel=1e-6)
    for k, g in g1.items():
        ref = per_layer(g0, k) if k.startswith("decoder.model.layers.") else g0[k]
        np.testing.assert_allclose(np.asarray(g), np.asarray(ref), atol=1e-6, err_msg=k)


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
    # teacher forcing agrees with the decoder run over prompt + whole caption (positions, masks, splice; the
    # model leaves out the caption's last token, which predicts nothing), every row and position
    a = model.encode_audio(wave, mask)
    x, m = model.prompt(a["audio_tokens"], a["audio_mask"])
    full = jnp.concatenate([x, model.decoder.embed(ids)], 1)
    fm = jnp.concatenate([m, cmask.astype(bool)], 1)
    ref = model.decoder(inputs_embeds=full, attention_mask=fm, position_ids=jnp.maximum(jnp.cumsum(fm, 1) - 1, 0))
    p = x.shape[1]
    np.testing.assert_allclose(np.asarray(out["logits"]), np.asarray(ref["logits"][:, p - 1:p + 3]), atol=1e-5)
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


def test_audio_train_base_trains_the_ced_whole_without_adapters(tmp_path):
    """`audio.train_base` (EffAAC v5's teacher): the CED gets no LoRA factors and its base weights leave the frozen
    set (the optimiser and the checkpoint take them); the decoder stays frozen under LoRA; a fine-tuning stage must
    agree on it with its pre-training workdir (a workdir written before the key existed counts as False)."""
    from kdjax.systems.multi2cap.checks import init_from_differences
    from kdjax.systems.multi2cap import frozen

    from flax import nnx

    def params(cfg, which):
        task = multi2cap.build(cfg, str(tmp_path / str(cfg.audio.train_base)))
        return task, {"/".join(map(str, k)) for k, _ in nnx.to_flat_state(nnx.state(task.model, which))}

    base, whole = tiny_config(), tiny_config()
    whole.audio.train_base = True
    assert frozen(base) == ("audio_encoder", "decoder") and frozen(whole) == ("decoder",)
    t0, frozen0 = params(base, lora.frozen_filter(frozen(base)))
    t1, frozen1 = params(whole, lora.frozen_filter(frozen(whole)))
    ced = {p for p in frozen0 if p.startswith("audio_encoder")}
    assert ced and not {p for p in frozen1 if p.startswith("audio_encoder")}  # the CED's base is trained
    assert {p for p in frozen1 if p.startswith("decoder")} == {p for p in frozen0 if p.startswith("decoder")}
    assert lora.count(t1.model.audio_encoder) == 0 < lora.count(t0.model.audio_encoder)
    n_ced = sum(x.size for x in jax.tree.leaves(nnx.state(t1.model.audio_encoder, nnx.Param)))
    n_lora = lora.count(t0.model.audio_encoder)
    assert t1.info["trainable_params"] - t0.info["trainable_params"] == n_ced - n_lora
    stored = json.loads(base.to_json_best_effort())
    del stored["audio"]["train_base"]  # a workdir from before the key
    assert init_from_differences(base, stored) == []
    assert any("audio.train_base" in d for d in init_from_differences(whole, stored))
