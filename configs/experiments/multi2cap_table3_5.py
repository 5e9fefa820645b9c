"""Multi2Cap thesis Table 3.5: the CFD objective (Smooth L1, MSE, InfoNCE, Cosine, Triplet), lambda 0.5,
Multi2Cap-base pre-training on VggCaps.

    python -m kdjax.experiment --config=configs/experiments/multi2cap_table3_5.py --workdir=experiments/m2c_t35 -- \
        --config.audio.checkpoint=/models/ced_base.pt --config.decoder.checkpoint=/models/Llama-2-7b-hf \
        --config.teacher.checkpoint=/models/vit-large-patch16-224 --config.data.source=tfds \
        --config.data.tfds_dir=/data/vggcaps_tfds

Data and checkpoints as Table 3.8 (configs/experiments/multi2cap_table3_8.py). Variant `smoke` (CI): the `tiny`
config with the triplet and MSE objectives, two seeds.

Variant `mini` (issue 24's experiment 4, with Table 3.8's `mini`; written 2026-12-07 before it was run): that
variant's data, model, image teacher and training, lambda 0.5, each of the five objectives, seeds 0-2. Deciding
metric: test CIDEr-D; expected (the paper): Triplet the best, the contrastive objectives (InfoNCE, Triplet) above the
regression ones (Smooth L1, MSE).

    python -m kdjax.experiment --config=configs/experiments/multi2cap_table3_5.py:mini \
        --workdir=experiments/m2c_t35_mini
"""

import ml_collections

from configs.experiments import columns
from configs.experiments.multi2cap_table3_8 import MINI_DATA

LOSSES = {"Smooth L1": "smooth_l1", "MSE": "mse", "InfoNCE": "info_nce", "Cosine": "cosine", "Triplet": "triplet"}
COLUMNS = ("ME", "CD", "SP", "SD", "SD-F", "SB", "FS")
PAPER = {"Smooth L1": (12.6, 50.5, 14.3, 32.4, 30.2, 62.8, 58.0), "MSE": (13.8, 51.8, 15.3, 33.6, 31.6, 62.8, 58.6),
         "InfoNCE": (13.7, 52.7, 15.2, 34.0, 31.9, 63.0, 58.8), "Cosine": (13.8, 52.8, 15.3, 34.1, 31.8, 63.1, 58.9),
         "Triplet": (13.9, 55.0, 15.5, 35.2, 33.7, 63.5, 59.7)}


def get_config(variant: str = "paper") -> ml_collections.ConfigDict:
    e = ml_collections.ConfigDict()
    e.expect = ('deciding metric FENSE (CIDEr-D in the smoke variant); the paper claims Triplet is best, contrastive '
                'objectives above regression ones.')
    e.name = "Multi2Cap: CFD objective"
    e.source = "Cho, thesis Table 3.5 (Multi2Cap-base, lambda 0.5)"
    e.base, e.seeds, losses, cols = "configs/multi2cap.py:base", (0, 1, 2), tuple(LOSSES), COLUMNS
    data = {}
    if variant == "smoke":
        e.base, e.seeds, losses, cols = "configs/multi2cap.py:tiny", (0, 1), ("Triplet", "MSE"), columns.SMOKE_CAPTION
    elif variant == "mini":
        e.name, e.source = "Multi2Cap in miniature: CFD objective", "thesis Table 3.5 in miniature (issue 24)"
        e.expect = ("deciding metric CIDEr-D (test); expected (the paper): Triplet the best, InfoNCE and Triplet above "
                    "Smooth L1 and MSE.")
        e.base, e.seeds, losses, cols = "configs/multi2cap.py:tiny", (0, 1, 2), tuple(LOSSES), columns.SMOKE_CAPTION
        data = MINI_DATA
    elif variant != "paper":
        raise ValueError(f"{__file__}: unknown variant {variant!r} (paper, smoke, mini)")
    e.rows = [{"name": n, "overrides": {**data, "cfd.loss": LOSSES[n], "cfd.weight": 0.5}} for n in losses]
    e.metrics = columns.test_columns(cols)
    e.scale = 100.0
    e.paper = columns.paper_rows({n: dict(zip(COLUMNS, PAPER[n])) for n in losses}, cols)
    metric = "FS" if "FS" in cols else "CD"
    e.compare = [("Triplet", n, metric) for n in losses if n != "Triplet"]
    e.figure = {"kind": "bars", "metric": "CD", "title": "Table 3.5: CIDEr-D by CFD objective"}
    return e
