"""EfficientNet-B2 (EffAAC's student encoder): parity with the efficientnet_pytorch package (random weights,
one input channel, a spectrogram-shaped input with an odd frame count), in eval and in train mode, and the
state dict round trip."""

from __future__ import annotations

import efficientnet_pytorch
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from kdjax import convert
from kdjax.convert import efficientnet as eff
from kdjax.convert.param_map import ConversionError, flax_to_hf
from kdjax.models import efficientnet
from kdjax.models import state as state_lib
from kdjax.models.efficientnet import EfficientNet, EfficientNetConfig


def torch_b2(**overrides):
    torch.manual_seed(0)
    m = efficientnet_pytorch.EfficientNet.from_name("efficientnet-b2", in_channels=1, **overrides)
    g = torch.Generator().manual_seed(1)
    for mod in m.modules():  # non-trivial BatchNorm statistics, so eval-mode parity means something
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.bias.data.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
    return m


_RUN = {d: nnx.jit(lambda m, x, kw, d=d: m(x, deterministic=d, **kw)["last_hidden_state"]) for d in (True, False)}


def features(model, x, deterministic: bool = True, **kw) -> np.ndarray:
    """One compiled forward (eager NNX dispatches op by op, which costs more than compiling)."""
    return np.asarray(_RUN[deterministic](model, jnp.asarray(x), kw))


def state_dict(m) -> dict[str, np.ndarray]:
    return {k: v.numpy().copy() for k, v in m.state_dict().items()}  # torch updates BN buffers in place


def test_b2_matches_efficientnet_pytorch_eval_and_round_trips():
    ref = torch_b2().eval()
    model, report = convert.load_efficientnet(state_dict(ref), source="b2")
    assert report.ok() and not report.initialized, report.describe()
    x = torch.randn(2, 1, 64, 101)  # (b, 1, mel, frames); 101 frames: odd sizes exercise the static padding
    with torch.no_grad():
        want = ref.extract_features(x).permute(0, 2, 3, 1).numpy()
    got = features(model, x.permute(0, 2, 3, 1).numpy())
    assert got.shape == want.shape == (2, 2, 4, 1408)
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())
    flat = {k: np.asarray(v) for k, v in state_lib.flatten(nnx.state(model, nnx.Param)).items()}
    flat.update({k: np.asarray(v) for k, v in state_lib.flatten(nnx.state(model, nnx.BatchStat)).items()})
    back = flax_to_hf(flat, eff.rules(model.cfg))
    sd = state_dict(ref)
    assert set(back) == {k for k in sd if not k.endswith("num_batches_tracked") and not k.startswith("_fc.")}
    for k, v in back.items():
        np.testing.assert_array_equal(v, sd[k], err_msg=k)


def test_b2_train_mode_batch_statistics_match():
    ref = torch_b2(drop_connect_rate=0.0).train()
    model, _ = convert.load_efficientnet(state_dict(ref), drop_connect_rate=0.0)
    x = torch.randn(3, 1, 64, 64)
    want = ref.extract_features(x).permute(0, 2, 3, 1).detach().numpy()
    got = features(model, x.permute(0, 2, 3, 1).numpy(), deterministic=False)
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())
    # the running mean moved towards the batch mean with PyTorch's momentum (0.01)
    np.testing.assert_allclose(np.asarray(model.stem.bn.mean[...]), ref._bn0.running_mean.numpy(), atol=1e-5)


def test_drop_connect_only_in_training_and_dynamic_padding():
    cfg = EfficientNetConfig(width_coefficient=0.25, depth_coefficient=1.0, image_size=None,
                             blocks=efficientnet.BLOCKS[:3], drop_connect_rate=0.5)  # 5 blocks, stride 8
    model = EfficientNet(cfg, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 32, 20, 1)), jnp.float32)
    a = features(model, x)
    np.testing.assert_array_equal(a, features(model, x))
    assert a.shape == (4, 4, 3, 320)  # SAME padding: 20 -> 10 -> 5 -> 3
    b = features(model, x, deterministic=False, rngs=nnx.Rngs(dropout=1))
    c = features(model, x, deterministic=False, rngs=nnx.Rngs(dropout=2))
    assert not np.allclose(b, c)


def test_wrong_state_dict_is_named():
    sd = state_dict(torch_b2())
    with pytest.raises(ConversionError, match="efficientnet-b0 has 16"):
        convert.load_efficientnet(sd, name="efficientnet-b0")
    with pytest.raises(ConversionError, match="_conv_stem"):
        convert.load_efficientnet({"x": np.zeros(1)})
