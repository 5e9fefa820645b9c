"""`python -m kdjax.aot` for real targets, compiled on this CPU host: Cloud TPU slices through libtpu and an
H100 node through jax's CUDA plugin (both test dependencies; neither needs the hardware)."""

import json
import subprocess
import sys

import pytest

from tests import runs

TINY = "configs/dsg_kd.py:tiny"


def aot(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kdjax.aot", f"--config={TINY}", *args], env=runs.env(1),
                          cwd=runs.REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("topology, devices, hbm, mesh", [
    ("v5e-4", 4, 15.75, {"data": 4, "fsdp": 1, "tensor": 1}),
    ("v4-8", 4, 30.75, {"data": 1, "fsdp": 2, "tensor": 2}),  # megacore chips; parameters sharded
    ("v5e-4x2", 8, 15.75, {"data": 8, "fsdp": 1, "tensor": 1}),  # two slices: data over the DCN
    ("h100-8", 8, 84929347584 / 2 ** 30, {"data": 8, "fsdp": 1, "tensor": 1}),
])
def test_step_compiles_for_the_target(topology, devices, hbm, mesh):
    extra = [] if mesh["data"] == devices else [f"--config.mesh.{k}={v}" for k, v in mesh.items()]
    p = aot(f"--topology={topology}", "--json", *extra)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["topology"] == topology and out["chips"] == devices and out["mesh"] == mesh
    assert out["hbm_gib"] == pytest.approx(hbm) and out["fits"] and 0 < out["used_gib"] < 0.1
    assert out["per_device_gib"]["argument"] > 0 and out["flops_per_device"] > 1e6
    assert out["trainable_params"] == 497_122  # the tiny student and its width projection; not the teacher
    # sharded state: per-device arguments shrink when parameters are split over fsdp x tensor
    if mesh["fsdp"] * mesh["tensor"] > 1:
        assert out["per_device_gib"]["argument"] < out["state_gib_unsharded"] / 2


def test_table_and_out_of_memory():
    table = aot("--topology=v5e-4")
    assert table.returncode == 0, table.stderr[-3000:]
    for row in ("v5e-4: 4 devices, mesh data=4 x fsdp=1 x tensor=1", "HBM", "headroom", "step FLOPs"):
        assert row in table.stdout
    # 65,536-wide student embeddings do not fit a v5e's 16 GiB: the compiler's own message, exit 2, advice
    p = aot("--topology=v5e-4", "--config.student.init.hidden_size=65536")
    assert p.returncode == 2, p.stderr[-3000:]
    assert "does not fit v5e-4: RESOURCE_EXHAUSTED" in p.stderr and "exceeds available HBM (15.75G)" in p.stderr
    assert "--config.mesh.fsdp=-1 --config.mesh.data=1" in p.stderr and "Traceback" not in p.stderr


def test_distill_lm_compiles_for_a_tpu_slice_and_a_gpu_node():
    """issue 26's abstract compiles: the cached top-k teacher on a v5e-4 with parameters sharded over fsdp, the online
    teacher on an H100 node, both with SmolLM2's 49,152-token vocabulary; only the student is trained, and chunking
    the losses shrinks the step's temporaries (no batch x length x vocabulary logits)."""
    def compile_(*args):
        p = subprocess.run([sys.executable, "-m", "kdjax.aot", "--config=configs/distill_lm.py:tiny", "--json",
                            "--config.aot.vocab_size=49152", *args], env=runs.env(1), cwd=runs.REPO,
                           capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]
        return json.loads(p.stdout.strip().splitlines()[-1])

    student = 49152 * 32 + 9312  # tied embedding + one 32-wide layer and its norms
    tpu = compile_("--topology=v5e-4", "--config.kd.source=topk", "--config.kd.chunk_tokens=64",
                   "--config.mesh.fsdp=4", "--config.mesh.data=1")
    assert tpu["fits"] and tpu["mesh"] == {"data": 1, "fsdp": 4, "tensor": 1} and tpu["trainable_params"] == student
    assert tpu["frozen_params"] == 0 and tpu["per_device_gib"]["argument"] < tpu["state_gib_unsharded"] / 2
    # rows of 512 tokens, one per H100: dense logits are 512 x 49152 floats per device
    gpu = {chunk: compile_("--topology=h100-8", f"--config.kd.chunk_tokens={chunk}", "--config.data.length=512")
           for chunk in (0, 64)}
    for out in gpu.values():
        assert out["fits"] and out["chips"] == 8 and out["trainable_params"] == student
    assert gpu[64]["per_device_gib"]["temp"] < gpu[0]["per_device_gib"]["temp"] / 4
