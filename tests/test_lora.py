"""LoRA: adapters by path pattern, merge/unmerge, PEFT export that `peft` loads with identical logits,
merged export to a plain HF directory, and the frozen/trainable split."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from kdjax import convert
from kdjax.convert import peft as peft_io
from kdjax.models import lora, stack
from kdjax.models.ced import CED, CedConfig
from tests.test_llama import hf_logits, tiny_hf

CFG = lora.LoraConfig(rank=4, alpha=8.0, dropout=0.1)


def _randomise_b(model, seed=0):
    rng = np.random.RandomState(seed)
    for _, m in lora.layers(model):
        m.lora_b[...] = jnp.asarray(rng.normal(0, 0.05, m.lora_b[...].shape), jnp.float32)


@pytest.fixture(params=[False, True], ids=["unrolled", "scanned"])
def adapted(tmp_path, request):
    """A tiny LLaMA with adapters, its layers unrolled or as one scanned stack (per-layer factors)."""
    hf, path = tiny_hf(tmp_path)
    model = convert.from_pretrained(path, scan_layers=request.param)
    ids = np.random.RandomState(0).randint(0, 101, (2, 10))
    base = np.asarray(model(jnp.asarray(ids))["logits"])
    paths = lora.apply(model, CFG, nnx.Rngs(1))
    return hf, path, model, ids, base, paths


def test_adapters_start_as_the_base_model_and_target_q_v(adapted):
    hf, path, model, ids, base, paths = adapted
    if model.cfg.scan_layers:  # one adapter per projection, with a factor pair per layer
        assert paths == [f"model.layers.self_attn.{p}" for p in ("q_proj", "v_proj")]
        assert lora.layers(model)[0][1].lora_a[...].shape == (2, 64, 4)
    else:
        assert paths == [f"model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("q_proj", "v_proj")]
    out = model(jnp.asarray(ids), deterministic=True)["logits"]
    np.testing.assert_array_equal(np.asarray(out), base)  # B = 0
    assert lora.count(model) == 2 * (64 * 4 + 4 * 64) + 2 * (64 * 4 + 4 * 32)
    with pytest.raises(ValueError, match="match no linear layer"):
        lora.apply(model, lora.LoraConfig(targets=("nope_proj$",)), nnx.Rngs(0))


def test_dropout_needs_explicit_controls(adapted):
    _, _, model, ids, _, _ = adapted
    _randomise_b(model)
    m = lora.layers(model)[0][1]
    if model.cfg.scan_layers:  # a stack's adapter runs one layer at a time
        m = stack.layer(model.model.layers, 0).self_attn.q_proj
    with pytest.raises(ValueError, match="deterministic"):
        m(jnp.ones((1, 64)))
    x = jnp.ones((4, 64))
    a = m(x, deterministic=False, rngs=nnx.Rngs(dropout=0))
    b = m(x, deterministic=False, rngs=nnx.Rngs(dropout=1))
    assert not np.allclose(np.asarray(a), np.asarray(b))  # dropout acts on the adapter input
    np.testing.assert_array_equal(np.asarray(m(x, deterministic=True)), np.asarray(m(x, deterministic=True)))


def test_peft_export_loads_with_identical_logits(adapted, tmp_path):
    import peft

    hf, path, model, ids, base, _ = adapted
    _randomise_b(model)
    ours = np.asarray(model(jnp.asarray(ids), deterministic=True)["logits"])
    assert np.abs(ours - base).max() > 1e-3  # the adapters change the model
    out = str(tmp_path / "adapter")
    names = peft_io.save_adapters(model, out, base_model=path)
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in names
    with torch.no_grad():
        ref = peft.PeftModel.from_pretrained(hf, out).eval()(torch.tensor(ids)).logits.numpy()
    assert np.abs(ours - ref).max() < 1e-4
    # and back: a fresh kdjax model with the PEFT adapters applied
    again = convert.from_pretrained(path, scan_layers=model.cfg.scan_layers)
    peft_io.load_adapters(again, out)
    np.testing.assert_allclose(np.asarray(again(jnp.asarray(ids), deterministic=True)["logits"]), ours, atol=1e-6)


def test_merge_unmerge_and_merged_export(adapted, tmp_path):
    hf, path, model, ids, base, _ = adapted
    _randomise_b(model)
    x = jnp.asarray(ids)
    ours = np.asarray(model(x, deterministic=True)["logits"])
    kernel = np.asarray(lora.layers(model)[0][1].kernel[...])
    lora.merge(model)
    np.testing.assert_allclose(np.asarray(model(x, deterministic=True)["logits"]), ours, atol=1e-5)
    lora.unmerge(model)
    np.testing.assert_allclose(np.asarray(lora.layers(model)[0][1].kernel[...]), kernel, atol=1e-7)
    with pytest.raises(ValueError, match="LoRA adapters"):
        convert.save_pretrained(model, str(tmp_path / "x"))
    plain = lora.merged_copy(model)
    assert not lora.layers(plain) and lora.layers(model)
    out = str(tmp_path / "merged")
    convert.save_pretrained(plain, out)
    ref, _ = hf_logits(transformers.LlamaForCausalLM.from_pretrained(out).eval(), ids)
    assert np.abs(ref - ours).max() < 1e-4


def test_frozen_filter_splits_base_from_adapters(adapted):
    _, _, model, _, _, _ = adapted
    frozen, trainable, rest = nnx.split(model, lora.frozen_filter(), nnx.Param, ...)[1:]
    names = lambda s: {".".join(map(str, k)) for k, _ in nnx.to_flat_state(s)}
    assert names(trainable) and all(n.endswith(("lora_a", "lora_b")) for n in names(trainable))
    assert "model.embed_tokens.embedding" in names(frozen)
    assert not any(n.endswith(("lora_a", "lora_b")) for n in names(frozen))
    # gradients reach the adapters only through the trainable split
    gdef = nnx.graphdef(model)

    def loss(t):
        return nnx.merge(gdef, frozen, t, rest)(jnp.ones((1, 4), jnp.int32), deterministic=True)["logits"].sum()

    grads = dict(nnx.to_flat_state(jax.grad(loss)(trainable)))
    assert set(grads) == {k for k, _ in nnx.to_flat_state(trainable)}
    # B starts at 0, so only B gets a gradient at the first step (as in PEFT)
    assert all(float(jnp.abs(g[...]).sum()) > 0 for k, g in grads.items() if k[-1] == "lora_b")


def test_ced_lora_on_q_and_v():
    ced = CED(CedConfig.preset("ced_tiny", num_classes=0, depth=2), rngs=nnx.Rngs(0))
    wave = jnp.asarray(np.random.RandomState(0).normal(size=(2, 16000)).astype(np.float32))
    before = np.asarray(ced(wave)["last_hidden_state"])
    paths = lora.apply(ced, lora.LoraConfig(rank=8, alpha=32, dropout=0.1), nnx.Rngs(1))
    assert paths == [f"blocks.{i}.attn.{p}" for i in range(2) for p in ("q_proj", "v_proj")]
    np.testing.assert_array_equal(np.asarray(ced(wave)["last_hidden_state"]), before)
    _randomise_b(ced)
    train = ced(wave, deterministic=False, rngs=nnx.Rngs(dropout=0))["last_hidden_state"]
    assert np.isfinite(np.asarray(train)).all()
