"""Multi2Cap (thesis ch. 3): LOAE's audio captioner (CED + LoRA -> Q-Former -> projector -> LLaMA + LoRA)
trained with L_total = L_cap + lambda * L_cfd, where L_cfd distils a frozen image teacher's view of the
clip's video frame into the audio encoder (thesis eq. 3.1-3.3). lambda = 0 is LOAE.

What is trained: the LoRA factors of CED and LLaMA, the Q-Former, the projector and the CFD heads. The
CED and LLaMA base weights are `Task.frozen` (outside the optimiser and the checkpoint, reloaded from
their checkpoints on resume); the image teacher is the frozen `Task.teacher`, or a feature cache.

Here:
    models.py   tokenizer, captioner, image teacher
    teacher.py  the image teacher online or cached (teacher.cache)
    loss.py     L_cap + lambda * L_cfd
    task.py     build, batch description, abstract task, captioning
    checks.py   validate
    export.py   the trained captioner for PyTorch (--mode=export)
"""

from __future__ import annotations

from kdjax.systems import contract
from kdjax.systems.multi2cap.checks import validate
from kdjax.systems.multi2cap.export import export
from kdjax.systems.multi2cap.loss import cfd_loss, make_loss_fn
from kdjax.systems.multi2cap.models import (FROZEN, LOGICAL_AXES, build_model, build_teacher, build_tokenizer, frozen,
                                            teacher_dim)
from kdjax.systems.multi2cap.task import (abstract_task, batch_spec, build, predictor, cost_model,
                                          load_trained)
from kdjax.systems.multi2cap.teacher import cached_image_features, uses_teacher

__all__ = ["SYSTEM", "FROZEN", "LOGICAL_AXES", "abstract_task", "batch_spec", "build", "build_model",
           "build_teacher", "build_tokenizer", "cached_image_features", "predictor", "cfd_loss", "cost_model",
           "export", "frozen", "load_trained", "make_loss_fn", "teacher_dim", "uses_teacher", "validate"]

SYSTEM = contract.System("multi2cap", validate=validate, batch_spec=batch_spec, build=build,
                         abstract_task=abstract_task, capabilities={contract.CAPTION, contract.COST, contract.EXPORT},
                         predictor=predictor, cost_model=cost_model, export=export)
