"""distill_lm (issue 26): a LLaMA-family teacher distilled into a LLaMA-family student token by token.

    L = CE(next token) + alpha * T^2 * D(P_teacher || P_student)     (kdjax.losses.token_kd)

Composition only: LLaMA from kdjax.models.llama (packed rows: segment_ids), the losses from kdjax.losses, packing
from kdjax.data.packing, the loop from kdjax.train. Here:

    data.py     documents, their split, the tokenizers, packed rows
    models.py   teacher, student (+ hidden-state projections)
    teacher.py  the teacher's top-k cached per training document and moved to the student's tokens
    task.py     loss, perplexity, batch description, build, abstract_task
    checks.py   validate
    export.py   the trained student as a transformers directory (--mode=export)
"""

from __future__ import annotations

from kdjax.systems import contract
from kdjax.systems.distill_lm.checks import validate
from kdjax.systems.distill_lm.export import export
from kdjax.systems.distill_lm.task import abstract_task, batch_spec, build, evaluate, make_loss, predict_fn

__all__ = ["SYSTEM", "abstract_task", "batch_spec", "build", "evaluate", "export", "make_loss", "predict_fn",
           "validate"]

SYSTEM = contract.System("distill_lm", validate=validate, batch_spec=batch_spec, build=build,
                         abstract_task=abstract_task, capabilities={contract.EXPORT}, export=export, inputs="text")
