"""DSG-KD thesis Figure 2.3: word embeddings of the test notes in one PCA: the teacher's (KM-BERT, red), the student
distilled by DSG-KD (Ko-BERT, green) and the same student trained alone (grey).

    python -m kdjax.experiment --config=configs/experiments/dsg_kd_figure2_3.py --workdir=experiments/dsg_f23 -- \
        --config.teacher.hf_dir=/models/km-bert --config.student.hf_dir=/models/ko-bert \
        --config.data.train_file=notes/train.csv --config.data.dev_file=notes/dev.csv \
        --config.data.test_file=notes/test.csv

Data and checkpoints as Table 2.3. Each run's report plots its own teacher and student and saves the points
(embeddings.npz); the figure draws the first seed both rows finished. The table gives each run's distance between
its student's and the teacher's domain-word centroids (smaller: closer to the teacher) and AUROC; the paired test
asks whether distilling brings the student closer. The student trained alone keeps its own width (if it differs
from the teacher's, its untrained projection maps it, and the grey cloud is not comparable). Variant `smoke` (CI):
the `tiny` config, two seeds.
"""

import ml_collections

ALONE, OURS = "Ko-BERT alone", "Ko-BERT <- KM-BERT (DSG-KD)"


def get_config(variant: str = "paper") -> ml_collections.ConfigDict:
    e = ml_collections.ConfigDict()
    e.expect = ('deciding metric: the domain-word centroid distance to the teacher; the paper claims the distilled '
                "student's words lie closer to the teacher's than the lone student's (smaller distance).")
    e.name = "DSG-KD: word embeddings of teacher, distilled and lone student"
    e.source = "Cho, thesis Figure 2.3"
    e.base, e.seeds = "configs/dsg_kd.py:paper", (0, 1, 2)
    plot = {"report.plot": True}
    if variant == "smoke":
        e.base, e.seeds = "configs/dsg_kd.py:tiny", (0, 1)
    elif variant != "paper":
        raise ValueError(f"{__file__}: unknown variant {variant!r} (paper, smoke)")
    e.rows = [{"name": ALONE, "overrides": {**plot, "kd.alpha": 0.0, "kd.beta": 0.0}},
              {"name": OURS, "overrides": plot}]
    e.metrics = [("centroid distance", "embedding_plot.centroid_distance/student (DSG-KD)"), ("AUROC", "test.auroc")]
    e.scale = 1.0
    e.paper = []
    e.compare = [(ALONE, OURS, "centroid distance")]
    e.figure = {"kind": "embeddings", "alone": ALONE, "distilled": OURS, "title": "Figure 2.3: word embeddings"}
    return e
