"""Parameter groups, schedules, clipping; mesh construction and logical-axis placement."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from kdjax.train import optim, sharding as shd


def _cfg(**kw):
    base = dict(lr=1e-3, weight_decay=0.0, clip_norm=0.0, warmup_steps=0, decay="constant", groups={})
    base.update(kw)
    return ml_collections.ConfigDict(base)


def test_parameter_groups_get_their_learning_rates():
    params = {"student": {"encoder": {"w": jnp.ones((2, 2))}, "classifier": {"w": jnp.ones((2, 2))}}}
    cfg = _cfg(lr=1e-5, groups={"head": {"pattern": r"classifier", "lr": 1e-2}})
    tx, schedules = optim.build(cfg, params, total_steps=10)
    assert set(schedules) == {"default", "head"}
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    # Adam's first step moves every weight by exactly its learning rate.
    np.testing.assert_allclose(updates["student"]["encoder"]["w"], -1e-5, rtol=1e-4)
    np.testing.assert_allclose(updates["student"]["classifier"]["w"], -1e-2, rtol=1e-4)
    with pytest.raises(ValueError, match="match no parameter"):
        optim.build(_cfg(groups={"x": {"pattern": "nothing", "lr": 1.0}}), params, 10)


def test_warmup_and_decay_schedules():
    s = optim.schedule(1.0, 100, _cfg(warmup_steps=10, decay="linear"))
    assert float(s(0)) == 0.0 and float(s(5)) == pytest.approx(0.5) and float(s(10)) == pytest.approx(1.0)
    assert float(s(55)) == pytest.approx(0.5, abs=1e-6)
    e = optim.schedule(5e-4, 100, _cfg(warmup_ratio=0.2, decay="exponential", end_lr=5e-7))
    assert float(e(20)) == pytest.approx(5e-4) and float(e(100)) == pytest.approx(5e-7, rel=1e-3)
    c = optim.schedule(1.0, 100, _cfg(warmup_steps=0, decay="cosine"))
    assert float(c(50)) == pytest.approx(0.5, abs=1e-6)


def test_clipping_and_decay_mask():
    params = {"w": jnp.ones((3, 3)), "b": jnp.ones((3,))}
    tx, _ = optim.build(_cfg(clip_norm=1.0, weight_decay=0.5), params, 10)
    grads = {"w": jnp.full((3, 3), 100.0), "b": jnp.zeros((3,))}
    state = tx.init(params)
    clipped = optax.clip_by_global_norm(1.0).update(grads, optax.EmptyState())[0]
    assert float(optax.global_norm(clipped)) == pytest.approx(1.0, rel=1e-5)
    updates, _ = tx.update({"w": jnp.zeros((3, 3)), "b": jnp.zeros((3,))}, state, params)
    assert float(jnp.abs(updates["w"]).max()) > 0  # decayed: a matrix
    assert float(jnp.abs(updates["b"]).max()) == 0  # not decayed: a bias


def test_mesh_and_logical_specs():
    mesh = shd.make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
    assert mesh.shape["data"] == len(jax.devices())
    with pytest.raises(ValueError, match="unknown axis"):
        shd.make_mesh({"model": 2})
    with pytest.raises(ValueError, match="only one axis may be -1"):
        shd.make_mesh({"data": -1, "fsdp": -1})
    params = {"a": {"query": {"kernel": np.zeros((8, 6))}}, "norm": {"scale": np.zeros((8,))}}
    specs = shd.param_specs(params, mesh, [(r"query\.kernel$", ("embed", "heads"))])
    assert specs["norm"]["scale"] == P()
    assert len(specs["a"]["query"]["kernel"]) == 2


def test_indivisible_dimensions_stay_replicated():
    class FakeMesh:
        shape = {"data": 1, "fsdp": 2, "tensor": 4}

    spec = shd.logical_to_spec(("embed", "heads"), (6, 12), FakeMesh())
    assert spec == P("fsdp", "tensor")
    spec = shd.logical_to_spec(("embed", "heads"), (5, 6), FakeMesh())
    assert spec == P(None, None)
    # A mesh axis is used at most once per array.
    spec = shd.logical_to_spec(("heads", "mlp"), (8, 8), FakeMesh())
    assert spec == P("tensor", None)


def test_scoped_rules_do_not_depend_on_their_order(caplog):
    """Each family's rules apply under its module only: CED's `attn.q_proj` never takes LLaMA's `q_proj` rule,
    whichever comes first; an undivided dimension is named in the warning."""
    import logging

    class FakeMesh:
        shape = {"data": 1, "fsdp": 2, "tensor": 4}

    llama = ((r"(^|\.)q_proj\.kernel$", ("embed", "heads")),)
    ced = ((r"attn\.q_proj\.kernel$", (None, "mlp")),)
    params = {"decoder": {"self_attn": {"q_proj": {"kernel": np.zeros((8, 8))}}},
              "audio_encoder": {"attn": {"q_proj": {"kernel": np.zeros((8, 6))}}}}
    for rules in ((shd.scoped("decoder", llama), shd.scoped("audio_encoder", ced)),
                  (shd.scoped("audio_encoder", ced), shd.scoped("decoder", llama))):
        with caplog.at_level(logging.WARNING):
            specs = shd.param_specs(params, FakeMesh(), rules)
        assert specs["decoder"]["self_attn"]["q_proj"]["kernel"] == P("fsdp", "tensor")
        assert specs["audio_encoder"]["attn"]["q_proj"]["kernel"] == P(None, None)  # 6 is not divisible by 4
        assert "audio_encoder.attn.q_proj.kernel (dim 1 = 6, mesh tensor = 4)" in caplog.text
        caplog.clear()
    # unscoped, the first pattern would have claimed both
    flat = shd.param_specs(params, FakeMesh(), llama + ced)
    assert flat["audio_encoder"]["attn"]["q_proj"]["kernel"] == P("fsdp", None)
