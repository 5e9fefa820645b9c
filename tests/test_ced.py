"""CED: parameter counts and names against the released checkpoints, numerical parity with a PyTorch
reference (tests/torch_ced.py), chunking conventions, conversion in both directions."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from safetensors.torch import load_file

from kdjax.convert import ConversionError, from_pretrained, save_pretrained
from kdjax.convert import ced as ced_map
from kdjax.convert.param_map import flax_to_hf
from kdjax.models import state as state_lib
from kdjax.models.ced import CED, CedConfig
from tests.torch_ced import TorchCED

RELEASED = json.load(open(os.path.join(os.path.dirname(__file__), "data", "ced_state_dicts.json")))
COUNTS = {"ced_tiny": 5_503_183, "ced_mini": 9_696_655, "ced_small": 21_622_543, "ced_base": 85_711_759}
TOL = 1e-4


@pytest.mark.parametrize("size", list(COUNTS))
def test_parameter_count_and_released_names(size):
    model = nnx.eval_shape(lambda: CED(CedConfig.preset(size), rngs=nnx.Rngs(0)))
    params = state_lib.flatten(nnx.state(model, nnx.Param))
    assert sum(int(np.prod(v.shape)) for v in params.values()) == COUNTS[size]
    # the map produces exactly the released state dict: every name, every shape
    full = state_lib.flatten(nnx.state(model))
    zeros = {k: np.zeros(v.shape, np.float32) for k, v in full.items()}
    tensors = {**flax_to_hf(zeros, ced_map.rules(model.cfg)), **ced_map.extra_tensors(model.cfg)}
    assert {k: list(v.shape) for k, v in tensors.items()} == RELEASED[size]


def _random_reference(size="ced_tiny", seed=0, **kw) -> TorchCED:
    torch.manual_seed(seed)
    ref = TorchCED(size, **kw).eval()
    with torch.no_grad():  # move every parameter and BatchNorm statistic off its init value
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        bn = ref.init_bn[1]
        bn.running_mean.normal_(-40.0, 5.0)
        bn.running_var.uniform_(50.0, 200.0)
    return ref


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    ref = _random_reference()
    path = str(tmp_path_factory.mktemp("ced") / "ced_tiny.pt")
    torch.save(ref.state_dict(), path)
    return ref, path


def _wave(seconds: float, batch=2, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    tone = np.sin(2 * np.pi * rng.uniform(200, 3000, (batch, 1)) * t)
    return (0.3 * tone + 0.05 * rng.standard_normal((batch, len(t)))).astype(np.float32)


def _max_err(ours, theirs, keys=("last_hidden_state", "pooler_output", "logits")):
    return {k: float(np.abs(np.asarray(ours[k]) - theirs[k].numpy()).max()) for k in keys}


def test_parity_with_pytorch_reference(reference):
    ref, path = reference
    model = from_pretrained(path, arch="ced_tiny")
    wave = _wave(4.0)
    with torch.no_grad():
        theirs = ref(torch.from_numpy(wave))
    ours = jax.jit(lambda w: model(w))(wave)
    assert ours["last_hidden_state"].shape == (2, 4 * 25, 192)  # 401 frames -> 25 time patches
    err = _max_err(ours, theirs)
    assert max(err.values()) <= TOL, err


@pytest.mark.parametrize("mode", ["mean", "concat"])
def test_long_inputs_are_chunked_like_the_reference(reference, mode):
    ref, path = reference
    ref.chunk_mode = mode
    model = from_pretrained(path, chunk_mode=mode)
    wave = _wave(23.0, batch=1, seed=1)  # 2301 frames: chunks of 1012, 1012, 277 (+ zero padding)
    with torch.no_grad():
        theirs = ref(torch.from_numpy(wave))
    ours = model(jnp.asarray(wave))
    tokens = 4 * 63 * (3 if mode == "concat" else 1)
    assert ours["last_hidden_state"].shape == (1, tokens, 192)
    err = _max_err(ours, theirs)
    assert max(err.values()) <= TOL, err


def test_batch_wide_top_db_matches_torchaudio_convention(tmp_path):
    ref = _random_reference(batch_top_db=True)
    torch.save(ref.state_dict(), tmp_path / "c.pt")
    model = from_pretrained(str(tmp_path / "c.pt"), top_db_scope="batch")
    wave = _wave(2.0)
    wave[1] *= 1e-5  # a quiet clip: the batch-wide floor differs from its own
    with torch.no_grad():
        theirs = ref(torch.from_numpy(wave))
    err = _max_err(model(jnp.asarray(wave)), theirs)
    assert max(err.values()) <= TOL, err
    per_example = from_pretrained(str(tmp_path / "c.pt"))(jnp.asarray(wave))
    assert np.abs(np.asarray(per_example["last_hidden_state"][1]) - theirs["last_hidden_state"][1].numpy()
                  ).max() > 1e-2


def test_save_pretrained_loads_strictly_into_pytorch_and_back(reference, tmp_path):
    ref, path = reference
    model = from_pretrained(path)
    save_pretrained(model, str(tmp_path / "out"))
    sd = load_file(str(tmp_path / "out" / "model.safetensors"))
    fresh = TorchCED("ced_tiny")
    fresh.load_state_dict(sd, strict=True)
    for name, value in ref.state_dict().items():
        if not name.endswith("num_batches_tracked"):
            torch.testing.assert_close(sd[name], value, rtol=0, atol=1e-6, msg=name)
    again = from_pretrained(str(tmp_path / "out"))
    a, b = state_lib.flatten(nnx.state(model)), state_lib.flatten(nnx.state(again))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    # a bare .safetensors state dict with the released names loads too
    bare = from_pretrained(str(tmp_path / "out" / "model.safetensors"), arch="ced_tiny")
    c = state_lib.flatten(nnx.state(bare))
    assert all(np.array_equal(a[k], c[k]) for k in a)


def test_fused_qkv_is_split_into_q_k_v(reference):
    ref, path = reference
    model = from_pretrained(path)
    w = ref.blocks[3].attn.qkv.weight.detach().numpy()
    attn = model.blocks[3].attn
    for j, proj in enumerate((attn.q_proj, attn.k_proj, attn.v_proj)):
        np.testing.assert_array_equal(np.asarray(proj.kernel[...]), w[j * 192:(j + 1) * 192].T)


def test_loae_layout_loads_matches_its_pytorch_model_and_saves_either_layout(reference, tmp_path):
    """LOAE's CED copy has separate q/k/v projections: its state dict (today 24 missing, 72 unexpected tensors)
    loads, runs as LOAE's PyTorch module does, and saves back in LOAE's layout or the released one."""
    loae = _random_reference(seed=3, split_qkv=True)
    sd = loae.state_dict()
    assert "blocks.0.attn.q_proj.weight" in sd and not any(".qkv." in k for k in sd)
    torch.save(sd, tmp_path / "loae.pt")
    model = from_pretrained(str(tmp_path / "loae.pt"), arch="ced_tiny")
    wave = _wave(4.0, seed=2)
    with torch.no_grad():
        theirs = loae(torch.from_numpy(wave))
    err = _max_err(model(jnp.asarray(wave)), theirs)
    assert max(err.values()) <= TOL, err
    save_pretrained(model, str(tmp_path / "split"), layout="split")
    split = load_file(str(tmp_path / "split" / "model.safetensors"))
    again = TorchCED("ced_tiny", split_qkv=True)
    again.load_state_dict(split, strict=True)
    save_pretrained(model, str(tmp_path / "fused"))  # the released layout: loads into the released model
    released = TorchCED("ced_tiny")
    released.load_state_dict(load_file(str(tmp_path / "fused" / "model.safetensors")), strict=True)
    with torch.no_grad():
        for m in (again, released):
            err = _max_err(model(jnp.asarray(wave)), m.eval()(torch.from_numpy(wave)))
            assert max(err.values()) <= TOL, err
    with pytest.raises(ValueError, match="layout must be one of fused, split"):
        save_pretrained(model, str(tmp_path / "x"), layout="qkv")


def test_head_is_optional(reference):
    _, path = reference
    model, report = from_pretrained(path, num_classes=0, return_report=True)
    assert model.outputlayer is None and "outputlayer.1.weight" in report.ignored
    assert "logits" not in model(jnp.asarray(_wave(1.0)))


def test_position_embeddings_are_truncated_or_interpolated(tmp_path):
    ref = _random_reference(target_length=512)  # 32 time patches
    torch.save(ref.state_dict(), tmp_path / "short.pt")
    longer = from_pretrained(str(tmp_path / "short.pt"), target_length=1012)
    want = torch.nn.functional.interpolate(ref.time_pos_embed.detach(), size=(1, 63), mode="bilinear",
                                           align_corners=False)
    got = np.moveaxis(np.asarray(longer.time_pos_embed[...]), -1, 1)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-6)
    shorter = from_pretrained(str(tmp_path / "short.pt"), target_length=320)  # 20 patches: truncated
    np.testing.assert_array_equal(np.moveaxis(np.asarray(shorter.time_pos_embed[...]), -1, 1),
                                  ref.time_pos_embed.detach().numpy()[..., :20])


def test_mismatched_checkpoints_are_refused_by_name(reference, tmp_path):
    ref, _ = reference
    sd = ref.state_dict()
    with pytest.raises(ConversionError, match=r"mel_scale\.fb.*f_max=8000"):
        bad = dict(sd)
        bad["front_end.0.mel_scale.fb"] = bad["front_end.0.mel_scale.fb"].flip(0)
        torch.save(bad, tmp_path / "fb.pt")
        from_pretrained(str(tmp_path / "fb.pt"))
    with pytest.raises(ConversionError, match=r"missing: blocks\.5\.attn\.qkv\.weight"):
        bad = {k: v for k, v in sd.items() if k != "blocks.5.attn.qkv.weight"}
        torch.save(bad, tmp_path / "missing.pt")
        from_pretrained(str(tmp_path / "missing.pt"))
    with pytest.raises(ConversionError, match=r"patch_embed\.proj\.weight"):
        from_pretrained(str(tmp_path / "missing.pt"), arch="ced_mini")


def test_training_mode_batchnorm_follows_pytorch_momentum(tmp_path):
    ref = _random_reference()
    torch.save(ref.state_dict(), tmp_path / "c.pt")
    model = from_pretrained(str(tmp_path / "c.pt"))
    wave = _wave(2.0)
    ref.train()
    with torch.no_grad():
        theirs = ref(torch.from_numpy(wave))
    ours = model(jnp.asarray(wave), deterministic=False)
    bn = ref.init_bn[1]
    np.testing.assert_allclose(np.asarray(model.init_bn.mean[...]), bn.running_mean.numpy(), atol=1e-4)
    # torch folds the unbiased batch variance into running_var, flax the biased one; with momentum 0.01
    # and 2 x 201 frames per mel bin that is a relative difference of 0.01 / 401
    np.testing.assert_allclose(np.asarray(model.init_bn.var[...]), bn.running_var.numpy(), rtol=1e-4)
    assert max(_max_err(ours, theirs, ("last_hidden_state",)).values()) <= TOL


def test_padding_mask_shapes_token_mask_and_pooling(reference):
    _, path = reference
    model = from_pretrained(path)
    wave = _wave(3.0)
    mask = np.ones_like(wave, bool)
    mask[1, 16000:] = False
    wave[1, 16000:] = 0.0
    out = model(jnp.asarray(wave), jnp.asarray(mask))
    tm = np.asarray(out["token_mask"])
    assert tm[0].all() and tm.shape == (2, 4 * 18)
    assert tm[1].reshape(4, 18)[:, :7].all() and not tm[1].reshape(4, 18)[:, 7:].any()
    tokens = np.asarray(out["last_hidden_state"][1])
    np.testing.assert_allclose(np.asarray(out["pooler_output"][1]), tokens[tm[1]].mean(0), atol=1e-5)
