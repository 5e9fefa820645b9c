"""DSG-KD (thesis ch. 2): a frozen domain-specific BERT teacher distils span-pooled hidden states and
attention maps of domain words into a general BERT student that classifies clinical notes.

    L_total = CE(S(x^S), y) + alpha * MSE(H^S, H^T) + beta * MSE(A^S, A^T)          (eq. 2.3-2.9)

Composition only: models from kdjax.models.bert, losses from kdjax.losses.dsg_kd, notes and knowledge masks
from kdjax.data, metrics from kdjax.metrics, the loop from kdjax.train. Here:

    data.py     the notes, tokenizers and encoded notes
    models.py   teacher, student (+ width projection), layer map, word embeddings for the PCA plot
    teacher.py  the teacher's targets, online in the step or cached once per note (teacher.cache.enabled)
    task.py     loss, evaluation, report, batch description, build, abstract_task, --mode=predict
    checks.py   validate
    export.py   the trained student as a transformers directory (--mode=export)
"""

from __future__ import annotations

from kdjax.systems import contract
from kdjax.systems.dsg_kd.checks import validate
from kdjax.systems.dsg_kd.export import export
from kdjax.losses.layers import layer_map
from kdjax.systems.dsg_kd.models import STUDENT_AXES, Student, build_student, build_teacher
from kdjax.systems.dsg_kd.task import (abstract_task, batch_spec, build, evaluate, make_loss, predict_fn,
                                       predictor)

__all__ = ["SYSTEM", "STUDENT_AXES", "Student", "abstract_task", "batch_spec", "build", "build_student",
           "build_teacher", "evaluate", "export", "layer_map", "make_loss", "predict_fn", "predictor", "validate"]


SYSTEM = contract.System("dsg_kd", validate=validate, batch_spec=batch_spec, build=build,
                         abstract_task=abstract_task, capabilities={contract.EXPORT, contract.PREDICT}, export=export,
                         predictor=predictor, inputs="text")
