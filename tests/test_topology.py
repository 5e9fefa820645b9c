"""Cloud TPU slice names -> the topology libtpu compiles for, and the advice given when a step does not fit."""

import pytest

from configs import multi2cap as m2c_config
from kdjax import aot
from kdjax.train import topology


@pytest.mark.parametrize("name, topo, devices, hbm", [
    ("v5e-4", "v5e:2x2", 4, 15.75), ("v5e-16", "v5e:4x4", 16, 15.75), ("v5e-256", "v5e:16x16", 256, 15.75),
    ("v4-8", "v4:2x2x1", 4, 30.75), ("v4-32", "v4:2x2x4", 16, 30.75),  # v4/v5p names count TensorCores
    ("v5p-8", "v5:2x2x1", 4, 95.74), ("v5p-128", "v5:4x4x4", 64, 95.74), ("v6e-4", "v6e:2x2", 4, 31.25),
    ("v5e-16x2", "v5e:4x4", 32, 15.75),  # two slices over the data-center network
])
def test_slice_names(name, topo, devices, hbm):
    t = topology.parse(name)
    assert (t.topology_name, t.num_devices, t.chip.hbm_gib) == (topo, devices, hbm)


def test_gpu_node_names():
    one, four = topology.parse("h100-8"), topology.parse("h100-32")
    assert (one.nodes, one.per_node, four.nodes, four.per_node) == (1, 8, 4, 8)
    assert four.num_devices == 32 and 79 < four.hbm_gib < 80  # an 80 GB H100's usable memory


@pytest.mark.parametrize("name, error", [
    ("v5e-3", "no v5e slice of 3"), ("v4-7", "multiple of 2"), ("v4-6", "no v4 slice of 6"), ("v3-8", "unknown topology"),
    ("h100x8", "unknown topology"), ("h100-12", "neither one node"),
])
def test_bad_names_say_what_is_known(name, error):
    with pytest.raises(ValueError, match=error):
        topology.parse(name)


def test_out_of_memory_advice_names_real_settings():
    cfg = m2c_config.get_config("base")
    cfg.decoder.remat = False
    advice = aot.knobs(cfg, topology.parse("v5e-16"))
    assert advice[0].startswith(f"--config.train.batch_size={cfg.train.batch_size // 2} ")
    assert any(a.startswith("--config.decoder.remat=True") for a in advice)
    assert any("--config.mesh.tensor=" in a for a in advice)
    # every suggested key exists in the config
    for a in advice:
        if a.startswith("--config."):
            key = a.split("=")[0][len("--config."):]
            node = cfg
            for part in key.split("."):
                node = node[part]


def test_dsg_kd_abstract_task_compiles_with_nothing_allocated():
    """The abstract task `python -m kdjax.aot` compiles (here for this host's device): the real DSG-KD step,
    teacher and student from their configs' architectures, no weight read or allocated."""
    import jax

    from configs import dsg_kd as dsg_config
    from kdjax.systems import dsg_kd
    from kdjax.train.compile import compile_train_step

    cfg = dsg_config.get_config("tiny")
    cfg.aot.vocab_size = 600
    before = sum(a.nbytes for a in jax.live_arrays())
    task, batch = dsg_kd.abstract_task(cfg)
    out = compile_train_step(cfg, task, batch)
    assert sum(a.nbytes for a in jax.live_arrays()) - before < 1024
    assert batch["t_input_ids"].shape == (cfg.train.batch_size, cfg.data.teacher_max_length)
    # the teacher is frozen and outside the optimiser; the student (with its width projection) trains
    assert out["frozen_params"] == 0 and out["trainable_params"] > 0
    assert out["flops_per_device"] > 0 and out["per_device_gib"]["argument"] > 0


def test_effaac_abstract_task_runs_only_the_teachers_encoder(tmp_path):
    """EffAAC's KD_contra step with an online teacher lowers from abstract shapes (the whole loss is traced;
    compiling it is the DSG-KD test's and the benchmark's job): the step holds the teacher's CED and nothing
    of its language model, and the student trains with its contrastive heads."""
    import jax
    from flax import nnx

    from configs import effaac as effaac_config
    from kdjax.models.ced import CedConfig
    from kdjax.systems import effaac
    from kdjax.train.trainer import Trainer

    cfg = effaac_config.get_config("tiny")
    cfg.aot.vocab_size = 300
    task, batch = effaac.abstract_task(cfg)
    assert set(batch) == {"wave", "mask", "caption_ids", "caption_mask", "teacher_ids", "teacher_mask"}
    trainer = Trainer(cfg, task, str(tmp_path), abstract=True)
    hlo = trainer.lower_train_step(batch).as_text()
    assert "stablehlo" in hlo or "func.func" in hlo
    teacher = {k for k, _ in nnx.to_flat_state(nnx.state(task.teacher))}
    assert teacher and all(k[0] == "audio_encoder" for k in teacher)
    ced = CedConfig.preset("ced_tiny")
    assert sum(x.size for x in jax.tree.leaves(trainer.teacher_state)) < 13 * ced.embed_dim ** 2 * ced.depth
    trained = {k[0] for k, _ in nnx.to_flat_state(nnx.state(task.model, nnx.Param))}
    assert {"encoder", "decoder", "student_proj", "teacher_proj", "logit_scale"} <= trained
    # with cached teacher embeddings the batch carries them instead
    cfg.teacher.online = False
    cfg.aot.teacher_arch = "ced_base"
    t2, cached = effaac.abstract_task(cfg)
    assert t2.teacher is None and cached["teacher_emb"].shape == (cfg.train.batch_size, 768)
