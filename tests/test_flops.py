"""kdjax.train.flops: matmul/convolution FLOPs from a jaxpr, and the scan correction to XLA's count."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from kdjax.models.llama import LlamaConfig, LlamaForCausalLM
from kdjax.train.flops import dot_flops, program_flops, xla_flops


def test_counts_matmuls_convolutions_scans_and_conds():
    x, w = jax.ShapeDtypeStruct((3, 5, 7), jnp.float32), jax.ShapeDtypeStruct((7, 11), jnp.float32)
    assert dot_flops(jax.make_jaxpr(lambda a, b: a @ b)(x, w)) == 2 * 3 * 5 * 7 * 11
    img, k = jax.ShapeDtypeStruct((2, 4, 9, 9), jnp.float32), jax.ShapeDtypeStruct((6, 2, 3, 3), jnp.float32)
    conv = lambda a, b: jax.lax.conv_general_dilated(a, b, (1, 1), "SAME", feature_group_count=2)
    assert dot_flops(jax.make_jaxpr(conv)(img, k)) == 2 * (2 * 6 * 9 * 9) * (2 * 3 * 3)  # grouped: in/2 per output

    def scanned(ws, v):
        return jax.lax.scan(lambda c, wi: (c @ wi, None), v, ws)[0]

    ws, v = jax.ShapeDtypeStruct((5, 8, 8), jnp.float32), jax.ShapeDtypeStruct((4, 8), jnp.float32)
    jaxpr = jax.make_jaxpr(scanned)(ws, v)
    assert dot_flops(jaxpr) == 5 * 2 * 4 * 8 * 8 and dot_flops(jaxpr, loops=False) == 2 * 4 * 8 * 8
    branchy = lambda p, a, b: jax.lax.cond(p, lambda: (a @ b) @ b.T, lambda: a.sum() * jnp.ones((3, 5, 7)))
    assert dot_flops(jax.make_jaxpr(branchy)(True, x, w)) == 2 * (2 * 3 * 5 * 7 * 11)  # the costlier branch


def _train_flops(scan: bool) -> tuple[float, float]:
    """(XLA's count, the corrected count) of a LLaMA forward + backward, its layers unrolled or scanned."""
    cfg = LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=6,
                      num_attention_heads=4, max_position_embeddings=128, remat=True, scan_layers=scan)
    gdef, state = nnx.split(nnx.eval_shape(lambda: LlamaForCausalLM(cfg, rngs=nnx.Rngs(0))))
    ids = jax.ShapeDtypeStruct((4, 64), jnp.int32)
    traced = jax.jit(jax.grad(lambda s, i: nnx.merge(gdef, s)(i)["logits"].mean())).trace(state, ids)
    compiled = traced.lower().compile()
    return xla_flops(compiled), program_flops(traced, compiled)


def test_scan_correction_restores_the_unrolled_count():
    """XLA counts a scanned stack's body once; adding the missing iterations' matmuls gives the unrolled
    program's count back."""
    unrolled, unrolled_corrected = _train_flops(False)
    xla, corrected = _train_flops(True)
    assert unrolled > 0 and unrolled_corrected == unrolled  # nothing to add without a scan
    assert xla < 0.4 * unrolled  # one layer of six, counted once
    assert corrected == pytest.approx(unrolled, rel=0.03)
