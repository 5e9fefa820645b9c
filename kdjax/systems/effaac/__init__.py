"""EffAAC (seed 002): the EffNet-Trm student trained with L = L_sup + L_seq + L_enc (eq. 3-7).

- L_sup: label-smoothed cross-entropy on a ground-truth caption (labelled clips only).
- L_seq: the same on the teacher's beam-search caption of the clip, re-tokenized with the student's word
  vocabulary (every clip, audio-only ones included). Teacher captions are generated once per clip into a
  teacher cache (kdjax.data.teacher_cache; `--mode=teacher_cache`), never in the step.
- L_enc: contrastive (eq. 6, losses.feature.effaac_contrastive) or MSE (eq. 7) between the mean-pooled
  student and teacher embeddings. The teacher embedding comes from the cache or, with `teacher.online`,
  from the frozen teacher run inside the step on the same crop the student hears (its own sample rate).

Audio-only clips (`data.audio_only_manifest`) are drawn one per labelled clip, so each batch is half
labelled, half audio-only (the paper's 16 + 16), and contribute L_seq + L_enc.

A teacher is any kdjax captioner with an audio encoder; Multi2Cap (a trained workdir) is adapted here.
Outputs of other teachers (e.g. a PyTorch HTSAT-BART) enter through an imported cache (`teacher.kind=cache`).

Here:
    teacher.py   the Multi2Cap teacher (online encoder, cached captions and embeddings), the teacher cache
    student.py   vocabulary, EffNet-Trm construction (checkpoints, Table 1's halves), the trained student
    pipeline.py  examples, audio-only clips, crops, the training transform
    loss.py      the step loss (kdjax.losses.effaac.total_loss, eq. 5)
    task.py      build, batch description, abstract task, captioning
    checks.py    validate
    export.py    the trained student for PyTorch (--mode=export)
"""

from __future__ import annotations

from kdjax.systems import contract
from kdjax.systems.effaac.checks import validate
from kdjax.systems.effaac.export import export
from kdjax.systems.effaac.loss import make_loss_fn
from kdjax.systems.effaac.student import build_tokenizer, frozen_filter, load_trained, student_config
from kdjax.systems.effaac.task import (LOGICAL_AXES, abstract_task, batch_spec, build, predictor,
                                      cost_model)
from kdjax.systems.effaac.teacher import (AudioTeacher, Multi2CapTeacher, cache_dir, load_teacher, make_teacher_cache,
                                          online_teacher)

__all__ = ["SYSTEM", "LOGICAL_AXES", "AudioTeacher", "Multi2CapTeacher", "abstract_task", "batch_spec", "build",
           "build_tokenizer", "cache_dir", "predictor", "cost_model", "export", "frozen_filter", "load_teacher", "load_trained",
           "make_loss_fn", "make_teacher_cache", "online_teacher", "student_config", "validate"]


SYSTEM = contract.System("effaac", validate=validate, batch_spec=batch_spec, build=build,
                         abstract_task=abstract_task,
                         capabilities={contract.CAPTION, contract.TEACHER_CACHE, contract.COST, contract.EXPORT},
                         predictor=predictor, make_teacher_cache=make_teacher_cache, cost_model=cost_model,
                         export=export)
