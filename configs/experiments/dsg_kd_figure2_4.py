"""DSG-KD thesis Figure 2.4: the medical-word score (MWPS) of the correctly classified test notes, for each model
fine-tuned alone and for Ko-BERT distilled from KM-BERT (DSG-KD).

    python -m kdjax.experiment --config=configs/experiments/dsg_kd_figure2_4.py --workdir=experiments/dsg_f24 \
        --config.paths.ko_bert=/models/ko-bert --config.paths.bert_base=/models/bert-base-multilingual-cased \
        --config.paths.km_bert=/models/km-bert --config.paths.clinical_bert=/models/clinical-bert \
        --config.paths.bio_m_bert=/models/bio-m-bert --config.paths.roberta=/models/roberta \
        --config.paths.bio_roberta=/models/bio-roberta -- \
        --config.data.train_file=notes/train.csv --config.data.dev_file=notes/dev.csv \
        --config.data.test_file=notes/test.csv --config.report.medical_terms=terms.txt

Data and checkpoints as Table 2.2 (configs/experiments/dsg_kd_table2_2.py), plus the medical-term list MWPS counts
(`report.medical_terms`). The figure gives no numbers, so the table has none of the paper's. The paired test asks
whether DSG-KD's MWPS exceeds Ko-BERT's alone. Variant `smoke` (CI): the `tiny` student alone and distilled on the
synthetic notes (their built-in term list), two seeds.
"""

import ml_collections

from configs.experiments.dsg_kd_table2_2 import MODELS

OURS = "Ours (Ko-BERT <- KM-BERT)"


def get_config(variant: str = "paper") -> ml_collections.ConfigDict:
    e = ml_collections.ConfigDict()
    e.expect = ("deciding metric MWPS of the correctly classified test notes; the paper claims DSG-KD's is the "
                'highest, above Ko-BERT alone and above the teacher.')
    e.name = "DSG-KD: medical words in correctly classified notes (MWPS)"
    e.source = "Cho, thesis Figure 2.4"
    e.metrics = [("MWPS", "mwps.correct_test_notes"), ("AUROC", "test.auroc")]
    e.scale = 1.0
    e.paper = []
    e.figure = {"kind": "bars", "metric": "MWPS", "title": "Figure 2.4: MWPS of correctly classified test notes"}
    e.compare = [(OURS, "Ko-BERT", "MWPS")]
    if variant == "smoke":
        e.base, e.seeds, e.paths = "configs/dsg_kd.py:tiny", (0, 1), {}
        e.rows = [{"name": "Ko-BERT", "overrides": {"kd.alpha": 0.0, "kd.beta": 0.0}},
                  {"name": OURS, "overrides": {}}]
        return e
    if variant != "paper":
        raise ValueError(f"{__file__}: unknown variant {variant!r} (paper, smoke)")
    e.base, e.seeds = "configs/dsg_kd.py:paper", (0, 1, 2, 3, 4)
    e.paths = {key: "" for key in MODELS.values()}
    e.rows = [{"name": m, "overrides": {"student.hf_dir": f"{{path:{k}}}", "teacher.hf_dir": f"{{path:{k}}}",
                                       "kd.alpha": 0.0, "kd.beta": 0.0}} for m, k in MODELS.items()]
    e.rows.append({"name": OURS, "overrides": {"student.hf_dir": "{path:ko_bert}", "teacher.hf_dir": "{path:km_bert}"}})
    return e
