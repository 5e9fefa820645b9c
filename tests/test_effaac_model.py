"""EffAAC's student against its PyTorch build (efficientnet_pytorch + torch.nn.TransformerDecoderLayer):
parameter map both ways, logits parity, the paper's size, and cached generation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from kdjax import convert
from kdjax.audio.features import frame_mask
from kdjax.models.caption_decoder import CaptionDecoderConfig, TransformerCaptionDecoder
from kdjax.models.effaac import EffAAC, EffAACConfig
from kdjax.models.efficientnet import EfficientNetConfig
from kdjax.models.generate import GenerateConfig, generate
from kdjax.convert.pytorch.modeling_effaac import EffNetTrm


def _torch_student(vocab=300, enc_proj_dim=0, seed=0):
    torch.manual_seed(seed)
    m = EffNetTrm(vocab, enc_proj_dim=enc_proj_dim)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode uses them
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
    return m.eval()


def _state(m):
    return {k: v.detach().numpy() for k, v in m.state_dict().items()}


@pytest.mark.parametrize("enc_proj_dim", [0, 96])
def test_logits_match_pytorch_and_the_map_round_trips(enc_proj_dim):
    tm = _torch_student(enc_proj_dim=enc_proj_dim)
    sd = _state(tm)
    model, report = convert.load_effaac(sd)
    assert report.ok() and all(k.startswith("encoder._fc") or k.endswith("num_batches_tracked") for k in report.ignored)
    back = convert.effaac_tensors(model)
    assert set(back) == {k for k in sd if k not in report.ignored}
    for k, v in back.items():
        np.testing.assert_array_equal(v, sd[k], err_msg=k)

    rng = np.random.default_rng(0)
    wave = rng.standard_normal((2, 32000)).astype(np.float32) * 0.1
    mask = np.ones((2, 32000), bool)
    mask[1, 20000:] = False
    ids = rng.integers(0, 300, (2, 9)).astype(np.int32)
    gdef, state = nnx.split(model)
    run = jax.jit(lambda s, w, m, i: nnx.merge(gdef, s)(w, m, i)["logits"])
    mel = model.cfg.front_end.mel(jnp.asarray(wave))
    got = np.asarray(run(state, wave, mask, ids))
    fm = torch.from_numpy(np.array(frame_mask(jnp.asarray(mask), mel.shape[-1], 160)))
    with torch.no_grad():
        want = tm(torch.from_numpy(np.array(mel)), fm, torch.from_numpy(ids).long()).numpy()
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err < 1e-4, err


def test_paper_configuration_has_about_11m_parameters():
    """Paper Table 2: EffNet-Trm, 11M (4,981-word vocabulary; the encoder's ImageNet head is not used)."""
    model = nnx.eval_shape(lambda: EffAAC(EffAACConfig(), rngs=nnx.Rngs(0)))
    n = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    torch_n = sum(p.numel() for k, p in EffNetTrm(4981).named_parameters() if not k.startswith("encoder._fc"))
    assert n == torch_n
    assert 10.5e6 < n < 12e6, n


def test_cached_generation_equals_rerunning_the_prefix():
    cfg = CaptionDecoderConfig(vocab_size=50, d_model=32, num_heads=4, ffn_dim=64, memory_dim=24, eos_token_id=2)
    dec = TransformerCaptionDecoder(cfg, rngs=nnx.Rngs(1))
    rng = np.random.default_rng(1)
    mem = jnp.asarray(rng.standard_normal((3, 7, 24)), jnp.float32)
    mmask = jnp.asarray(np.arange(7)[None] < np.array([[7], [4], [1]]))
    gdef, state = nnx.split(dec)

    @jax.jit
    def cached(s):
        bound = nnx.merge(gdef, s).bind(mem, mmask)
        return generate(bound, bound.start_embeds(3), jnp.ones((3, 1), jnp.int32),
                        GenerateConfig(max_new_tokens=8, min_new_tokens=8, eos_token_id=2))[0]

    @jax.jit
    def logits_of(s, ids):
        return nnx.merge(gdef, s)(mem, mmask, ids)["logits"][:, -1]

    tokens = np.asarray(cached(state))
    ids = np.full((3, 1), cfg.bos_token_id, np.int32)
    for _ in range(8):  # greedy by full re-runs, EOS forbidden as min_new_tokens does
        lg = np.array(logits_of(state, jnp.asarray(ids)))
        lg[:, 2] = -np.inf
        ids = np.concatenate([ids, lg.argmax(-1)[:, None].astype(np.int32)], axis=1)
    np.testing.assert_array_equal(tokens, ids[:, 1:])
    # beam search runs through the same interface and returns lengths within the limit
    @jax.jit
    def beams(s):
        bound = nnx.merge(gdef, s).bind(mem, mmask)
        return generate(bound, bound.start_embeds(3), jnp.ones((3, 1), jnp.int32),
                        GenerateConfig(max_new_tokens=6, num_beams=3, eos_token_id=2))

    toks, lens = beams(state)
    assert toks.shape == (3, 6) and np.all((np.asarray(lens) >= 1) & (np.asarray(lens) <= 6))


def test_training_mode_drops_out_and_the_contrastive_heads_are_training_only():
    cfg = EffAACConfig(encoder=EfficientNetConfig.from_name("efficientnet-b0", width_coefficient=0.25,
                                                            depth_coefficient=0.34),  # compiles quickly
                       decoder=CaptionDecoderConfig(vocab_size=40, d_model=32, num_heads=4, ffn_dim=64),
                       contra_dim=16, teacher_dim=24)
    model = EffAAC(cfg, rngs=nnx.Rngs(0))
    wave = jnp.asarray(np.random.default_rng(0).standard_normal((2, 16000)) * 0.1, jnp.float32)
    ids = jnp.ones((2, 5), jnp.int32)
    gdef, state = nnx.split(model)
    f = jax.jit(lambda s, seed: nnx.merge(gdef, s)(wave, None, ids, deterministic=False,
                                                  rngs=nnx.Rngs(dropout=seed))["logits"])
    a, b = np.asarray(f(state, jax.random.key(0))), np.asarray(f(state, jax.random.key(1)))
    assert np.all(np.isfinite(a)) and np.abs(a - b).max() > 1e-3
    assert float(nnx.state(model)["logit_scale"][...]) == pytest.approx(np.log(1 / 0.07))
    names = set(convert.effaac_tensors(model))
    assert {"student_proj.weight", "teacher_proj.weight", "logit_scale"} <= names
    assert not {"student_proj.weight", "logit_scale"} & set(convert.effaac_tensors(model.audio_only()))
