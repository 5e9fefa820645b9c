"""DSG-KD thesis Table 2.4: the loss weights alpha and beta (Ko-BERT student, KM-BERT teacher).

    python -m kdjax.experiment --config=configs/experiments/dsg_kd_table2_4.py --workdir=experiments/dsg_t24 -- \
        --config.teacher.hf_dir=/models/km-bert --config.student.hf_dir=/models/ko-bert \
        --config.data.train_file=notes/train.csv --config.data.dev_file=notes/dev.csv \
        --config.data.test_file=notes/test.csv

Data and checkpoints as Table 2.3 (configs/experiments/dsg_kd_table2_3.py). kd.loss_form stays the reference
code's ('code'); add `--config.kd.loss_form=equations` after -- to run the equations' scaling instead. Variant
`smoke` (CI): two weightings of the `tiny` config, two seeds.
"""

import ml_collections

ROWS = ((1.0, 1.0), (1.0, 0.6), (0.9, 0.5), (0.8, 0.4), (0.7, 0.3), (0.6, 0.2), (0.1, 0.1))
PAPER = {(1.0, 1.0): (78.8, 83.4, 78.2), (1.0, 0.6): (79.0, 83.5, 75.1), (0.9, 0.5): (78.5, 83.1, 78.3),
         (0.8, 0.4): (79.0, 83.6, 78.4), (0.7, 0.3): (79.1, 83.6, 77.9), (0.6, 0.2): (79.4, 84.1, 78.6),
         (0.1, 0.1): (77.8, 81.7, 76.9)}


def name(a: float, b: float) -> str:
    return f"alpha {a:g}, beta {b:g}"


def get_config(variant: str = "paper") -> ml_collections.ConfigDict:
    e = ml_collections.ConfigDict()
    e.expect = ('deciding metric AUROC (test); the paper claims alpha 0.6 / beta 0.2 is best and alpha = beta = 0.1 '
                'worst.')
    e.name = "DSG-KD: loss weights alpha and beta"
    e.source = "Cho, thesis Table 2.4 (Ko-BERT student, KM-BERT teacher)"
    e.base = "configs/dsg_kd.py:paper"
    e.seeds = (0, 1, 2, 3, 4)
    rows = ROWS
    if variant == "smoke":
        e.base, e.seeds, rows = "configs/dsg_kd.py:tiny", (0, 1), (ROWS[5], ROWS[6])
    elif variant != "paper":
        raise ValueError(f"{__file__}: unknown variant {variant!r} (paper, smoke)")
    e.rows = [{"name": name(a, b), "overrides": {"kd.alpha": a, "kd.beta": b}} for a, b in rows]
    e.metrics = [("AUROC", "test.auroc"), ("AUPRC", "test.auprc"), ("F1", "test.f1")]
    e.scale = 100.0
    e.paper = [(name(*r), dict(zip(("AUROC", "AUPRC", "F1"), PAPER[r]))) for r in rows]
    e.compare = [(name(*rows[0]), name(*rows[-1]), "AUROC")]
    e.figure = {"kind": "bars", "metric": "AUROC", "title": "Table 2.4: AUROC by alpha and beta"}
    return e
