"""EffAAC (seed 002) Table 1: where distillation is hard. Row 2: the teacher's frozen encoder with the 2-layer
Transformer decoder trained from scratch; row 3: that decoder frozen under an EfficientNet trained from scratch.
(Row 1, the teacher itself, is the teacher's own report.)

    python -m kdjax.experiment --config=configs/experiments/effaac_table1.py --workdir=experiments/effaac_t1 \
        --config.paths.teacher=runs/m2c_clotho -- --config.data.source=tfds --config.data.tfds_dir=/data/clotho_tfds

Data: Clotho as an array_record dataset; teacher: a trained kdjax Multi2Cap workdir (the paper's is HTSAT-BART). Row
3 starts from row 2's run of the same seed (`student.init_from`). Variant `smoke` (CI): a `tiny` Multi2Cap teacher
trained first as a row of the experiment, then both rows from it, two seeds.

Variant `mini` (issue 24's experiment 2; benchmarks/EXPERIMENTS.md; written 2026-12-07 before it was run):

    python -m kdjax.experiment --config=configs/experiments/effaac_table1.py:mini --workdir=experiments/effaac_t1_mini

- Teacher: effaac_table2 `mini`'s (v1's) Multi2Cap teacher, the same row (smoke architecture: CED-tiny + LoRA, the
  Q-Former, SmolLM2-135M-Instruct + LoRA; 625 steps on 5000 synthetic captioned clips of clip seed 1; test CIDEr-D
  414.24 in v1), trained as this experiment's first row (a finished one copied into its run directory is reused).
- Students: effaac_table2's mini student data in its rich regime (1000 captioned synthetic clips of clip seed 0, 100
  validation, 200 test), 300 steps of 8, seeds 0-2; no KD term. Rows: row 2, the teacher's frozen audio encoder (in
  the step) under the 2-layer 64-wide Transformer decoder trained from scratch; row 3, row 2's decoder frozen under
  the student's EfficientNet (B0 at half width and depth) trained from scratch; and the same EffNet-Trm trained whole
  from scratch, for reference. The teacher row's own test numbers (clip seed 1's 200 test clips, the same generator)
  sit above them.
- Deciding metric: test CIDEr-D. Expected (the paper's Table 1): row 2 above row 3, i.e. the teacher's encoder is
  what the student lacks (the encoder is the bottleneck); both below the teacher.
"""

import ml_collections

from configs.experiments import effaac_table2

ROW2, ROW3 = "teacher encoder (F) + Trm", "EffNet + Trm (F)"
SCRATCH = "EffNet-Trm (scratch)"
PAPER = {ROW2: {"SPIDEr": 48.8, "FENSE": 63.6}, ROW3: {"SPIDEr": 46.9, "FENSE": 62.2}}


def get_config(variant: str = "paper") -> ml_collections.ConfigDict:
    e = ml_collections.ConfigDict()
    e.expect = ('deciding metric SPIDEr; the paper claims the frozen teacher encoder + trained decoder (row 2) beats '
                'the EfficientNet under the frozen decoder (row 3): the encoder is the bottleneck.')
    e.name = "EffAAC: the distillation bottleneck"
    e.source = "seed 002 Table 1"
    e.scale = 100.0
    teacher = "{path:teacher}"
    rows = []
    student = {}
    if variant == "mini":
        e.name = "EffAAC in miniature: the distillation bottleneck, from a Multi2Cap teacher on 5000 clips"
        e.source = "seed 002 Table 1 in miniature (issue 24)"
        e.expect = ("deciding metric CIDEr-D (test); expected (the paper's Table 1): the teacher's frozen encoder + a "
                    "trained decoder (row 2) above the EfficientNet under that decoder frozen (row 3): the encoder is "
                    "the bottleneck; both below the teacher.")
        e.base, e.seeds, e.paths = "configs/effaac.py:smoke", (0, 1, 2), {}
        rows.append({"name": effaac_table2.MINI_TEACHER, "config": "configs/multi2cap.py:smoke",
                     "overrides": dict(effaac_table2.MINI_TEACHER_RUN), "seeds": (0,)})
        teacher = "{row:%s}" % effaac_table2.MINI_TEACHER
        e.metrics = [(c, f"test.{p}") for c, p in effaac_table2.MINI_METRICS]
        e.paper = {}
        student = {**effaac_table2.MINI_STUDENT, "data.synthetic.num_train": 1000}
    elif variant == "smoke":
        e.base, e.seeds = "configs/effaac.py:tiny", (0, 1)
        e.paths = {}
        # one teacher for every student seed, as the paper distils from one teacher
        rows.append({"name": "teacher (Multi2Cap tiny)", "config": "configs/multi2cap.py:tiny", "overrides": {},
                     "seeds": (0,)})
        teacher = "{row:teacher (Multi2Cap tiny)}"
        e.metrics = [("CIDEr", "test.cider_d"), ("BLEU4", "test.bleu_4")]
        e.paper = {}
    elif variant == "paper":
        e.base, e.seeds = "configs/effaac.py:contra", (0, 1, 2)
        e.paths = {"teacher": ""}
        e.metrics = [("SPIDEr", "test.spider"), ("FENSE", "test.fense")]
        e.paper = list(PAPER.items())
    else:
        raise ValueError(f"{__file__}: unknown variant {variant!r} (paper, smoke, mini)")
    plain = {**student, "kd.enc": "none", "kd.seq_weight": 0.0, "teacher.kind": "multi2cap", "teacher.workdir": teacher}
    rows.append({"name": ROW2, "overrides": {**plain, "student.memory": "teacher", "teacher.online": True}})
    rows.append({"name": ROW3, "overrides": {**plain, "student.init_from": f"{{row:{ROW2}}}",
                                             "train.freeze": ("decoder",)}})
    if variant == "mini":
        rows.append({"name": SCRATCH, "overrides": {**student, "kd.enc": "none", "kd.seq_weight": 0.0,
                                                     "teacher.kind": "none"}})
    e.rows = rows
    metric = "CIDEr" if variant == "mini" else e.metrics[0][0]
    e.compare = [(ROW2, ROW3, metric)]
    if variant == "mini":
        e.compare += [(ROW2, SCRATCH, metric), (ROW3, SCRATCH, metric)]
    e.figure = {"kind": "bars", "metric": metric, "title": f"Table 1: {metric}"}
    return e
