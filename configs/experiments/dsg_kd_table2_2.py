"""DSG-KD thesis Table 2.2: each pre-trained model fine-tuned alone, and each student (Ko-BERT, BERT-base) distilled
from each domain teacher, on every classification metric.

    python -m kdjax.experiment --config=configs/experiments/dsg_kd_table2_2.py --workdir=experiments/dsg_t22 \
        --config.paths.ko_bert=/models/ko-bert --config.paths.bert_base=/models/bert-base-multilingual-cased \
        --config.paths.km_bert=/models/km-bert --config.paths.clinical_bert=/models/clinical-bert \
        --config.paths.bio_m_bert=/models/bio-m-bert --config.paths.roberta=/models/roberta \
        --config.paths.bio_roberta=/models/bio-roberta -- \
        --config.data.train_file=notes/train.csv --config.data.dev_file=notes/dev.csv \
        --config.data.test_file=notes/test.csv

Checkpoints: the seven Hugging Face directories above; data: the user's clinical notes. A model "alone" is the
DSG-KD config with alpha = beta = 0 (L_pred only; its teacher is itself and is not used by the loss). The paired
tests ask whether each distilled Ko-BERT beats Ko-BERT alone. Variant `smoke` (CI): the `tiny` config's random
student alone and distilled, two seeds.
"""

import ml_collections

MODELS = {"Ko-BERT": "ko_bert", "BERT-base": "bert_base", "KM-BERT": "km_bert", "Clinical-BERT": "clinical_bert",
          "Bio-M-BERT": "bio_m_bert", "RoBERTa": "roberta", "Bio-RoBERTa": "bio_roberta"}
TEACHERS = ("KM-BERT", "Clinical-BERT", "Bio-M-BERT", "RoBERTa", "Bio-RoBERTa")
COLUMNS = ("Accuracy", "AUROC", "AUPRC", "Recall", "Precision", "F1", "Average")
PATHS = ("accuracy", "auroc", "auprc", "recall", "precision", "f1", "average")
PAPER = {
    "Ko-BERT": (71.9, 78.5, 82.8, 76.2, 75.8, 76.0, 76.9), "BERT-base": (69.2, 79.0, 83.6, 61.2, 81.7, 70.0, 74.1),
    "KM-BERT": (71.0, 77.7, 82.7, 77.9, 74.0, 75.9, 76.5),
    "Clinical-BERT": (70.9, 77.6, 82.7, 77.1, 74.3, 75.6, 76.4),
    "Bio-M-BERT": (66.4, 71.1, 76.4, 72.6, 70.8, 71.7, 71.5), "RoBERTa": (70.6, 77.3, 81.7, 71.0, 77.1, 73.9, 75.3),
    "Bio-RoBERTa": (72.3, 78.4, 82.9, 79.3, 74.9, 77.0, 77.5),
    "Ko-BERT <- KM-BERT": (72.6, 79.4, 84.1, 85.7, 72.7, 78.6, 78.9),
    "Ko-BERT <- Clinical-BERT": (72.6, 79.4, 83.8, 74.6, 77.8, 76.2, 77.4),
    "Ko-BERT <- Bio-M-BERT": (73.4, 80.4, 84.3, 75.1, 78.6, 76.8, 78.1),
    "Ko-BERT <- RoBERTa": (73.1, 80.1, 84.6, 77.7, 76.7, 77.2, 78.3),
    "Ko-BERT <- Bio-RoBERTa": (73.3, 80.4, 85.0, 77.6, 76.9, 77.3, 78.4),
    "BERT-base <- KM-BERT": (70.9, 77.1, 82.3, 79.6, 73.2, 76.2, 76.5),
    "BERT-base <- Clinical-BERT": (70.8, 76.7, 81.6, 74.4, 75.4, 74.9, 75.6),
    "BERT-base <- Bio-M-BERT": (70.4, 76.5, 81.6, 77.3, 73.6, 75.4, 75.8),
    "BERT-base <- RoBERTa": (70.8, 76.9, 82.0, 84.6, 71.1, 77.2, 77.1),
    "BERT-base <- Bio-RoBERTa": (68.6, 76.3, 81.2, 64.6, 80.0, 70.7, 73.2),
}


def get_config(variant: str = "paper") -> ml_collections.ConfigDict:
    e = ml_collections.ConfigDict()
    e.expect = ('deciding metric AUROC (test); the paper claims each distilled Ko-BERT beats Ko-BERT alone (paired '
                'over seeds) and the best student beats every model alone.')
    e.name = "DSG-KD: models alone and distilled"
    e.source = "Cho, thesis Table 2.2"
    e.seeds = (0, 1, 2, 3, 4)
    e.metrics = [(c, f"test.{p}") for c, p in zip(COLUMNS, PATHS)]
    e.scale = 100.0
    e.figure = {"kind": "bars", "metric": "AUROC", "title": "Table 2.2: AUROC"}
    if variant == "smoke":
        e.base, e.seeds = "configs/dsg_kd.py:tiny", (0, 1)
        e.paths = {}
        e.rows = [{"name": "Ko-BERT", "overrides": {"kd.alpha": 0.0, "kd.beta": 0.0}},
                  {"name": "Ko-BERT <- KM-BERT", "overrides": {}}]
        e.paper = [(r["name"], dict(zip(COLUMNS, PAPER[r["name"]]))) for r in e.rows]
        e.compare = [("Ko-BERT <- KM-BERT", "Ko-BERT", "AUROC")]
        return e
    if variant != "paper":
        raise ValueError(f"{__file__}: unknown variant {variant!r} (paper, smoke)")
    e.base = "configs/dsg_kd.py:paper"
    e.paths = {key: "" for key in MODELS.values()}
    alone = [{"name": m, "overrides": {"student.hf_dir": f"{{path:{k}}}", "teacher.hf_dir": f"{{path:{k}}}",
                                       "kd.alpha": 0.0, "kd.beta": 0.0}} for m, k in MODELS.items()]
    distilled = [{"name": f"{s} <- {t}", "overrides": {"student.hf_dir": f"{{path:{MODELS[s]}}}",
                                                        "teacher.hf_dir": f"{{path:{MODELS[t]}}}"}}
                 for s in ("Ko-BERT", "BERT-base") for t in TEACHERS]
    e.rows = alone + distilled
    e.paper = [(n, dict(zip(COLUMNS, v))) for n, v in PAPER.items()]
    e.compare = [(f"Ko-BERT <- {t}", "Ko-BERT", "AUROC") for t in TEACHERS]
    return e
