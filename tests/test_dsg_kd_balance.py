"""`kd.balance='initial_gradients'` (issue 24's fourth design, a kdjax variant): the rescaled alpha and beta make
each KD term's encoder gradient alpha (beta) times CE's on the run's first training batch, and the training loss
uses them."""

import numpy as np
import pytest
from flax import nnx

from configs import dsg_kd as dsg_config
from kdjax.errors import InputError
from kdjax.systems import registry
from kdjax.systems.dsg_kd.balance import encoder_gradient
from kdjax.systems.dsg_kd.teacher import plan
from kdjax.train.trainer import Trainer


def test_balanced_weights_give_the_stated_gradient_ratios_on_the_first_batch(tmp_path):
    cfg = dsg_config.get_config("tiny")
    cfg.kd.balance = "initial_gradients"
    registry.validate(cfg)
    task = registry.get("dsg_kd").build(cfg, str(tmp_path))
    kd = task.info["kd"]
    assert kd["alpha_paper"] == 0.6 and kd["beta_paper"] == 0.2
    assert kd["alpha"] != pytest.approx(0.6, rel=0.05) and kd["beta"] != pytest.approx(0.2, rel=0.05)

    # the batch the trainer reads first, the parameters before any step
    batch = next(Trainer(cfg, task, str(tmp_path)).train_iterator())
    p = plan(cfg, [tuple(x) for x in task.info["layer_map"]], task.model.student.cfg, task.teacher.cfg)
    ce = encoder_gradient(task.model, task.teacher, batch, p, alpha=0.0, beta=0.0)
    hidn = encoder_gradient(task.model, task.teacher, batch, p, alpha=kd["alpha"], beta=0.0) - ce
    attn = encoder_gradient(task.model, task.teacher, batch, p, alpha=0.0, beta=kd["beta"]) - ce
    assert np.linalg.norm(hidn) / np.linalg.norm(ce) == pytest.approx(0.6, rel=1e-3)
    assert np.linalg.norm(attn) / np.linalg.norm(ce) == pytest.approx(0.2, rel=1e-3)
    assert kd["ce_grad_norm"] == pytest.approx(float(np.linalg.norm(ce)), rel=1e-4)

    # the step's loss weighs the terms it logs with the balanced alpha and beta
    loss, terms = task.loss_fn(task.model, task.teacher, batch, nnx.Rngs(dropout=0))
    assert float(loss) == pytest.approx(float(terms["ce"] + kd["alpha"] * terms["hidn"] + kd["beta"] * terms["attn"]),
                                        rel=1e-5)


def test_balance_is_checked_when_the_config_is_read():
    cfg = dsg_config.get_config("tiny")
    cfg.kd.balance = "gradients"
    with pytest.raises(InputError, match="kd.balance"):
        registry.validate(cfg)
    cfg.kd.balance, cfg.kd.loss_form = "initial_gradients", "equations"
    with pytest.raises(InputError, match="loss_form='code'"):
        registry.validate(cfg)
