"""Multi2Cap thesis Table 3.8 and Figure 3.8: the CFD weight lambda in pre-training (Multi2Cap-base on VggCaps).

    python -m kdjax.experiment --config=configs/experiments/multi2cap_table3_8.py --workdir=experiments/m2c_t38 -- \
        --config.audio.checkpoint=/models/ced_base.pt --config.decoder.checkpoint=/models/Llama-2-7b-hf \
        --config.teacher.checkpoint=/models/vit-large-patch16-224 --config.data.source=tfds \
        --config.data.tfds_dir=/data/vggcaps_tfds

Data: VggCaps (`python -m kdjax.vggcaps build`, then kdjax.data.tfds_builders); checkpoints: CED-base, LLaMA-2-7B,
ViT-L/16. lambda = 0 is LOAE (no image teacher). The thesis gives one run per lambda; three seeds here. The figure
is Fig. 3.8's curve (SPIDEr by lambda). Variant `smoke` (CI): the `tiny` config on the embedded set, lambda 0 and
0.5, two seeds.
"""

import ml_collections

from configs.experiments import columns

LAMBDAS = (0.0, 0.1, 0.5, 0.9, 1.0)
PAPER = {0.0: (12.4, 47.6, 14.2, 30.9, 27.6, 61.8, 55.3), 0.1: (13.7, 54.4, 15.3, 34.8, 32.7, 63.1, 59.1),
         0.5: (13.9, 55.0, 15.5, 35.2, 33.7, 63.5, 59.7), 0.9: (13.8, 52.4, 15.4, 33.9, 31.9, 63.0, 59.1),
         1.0: (13.7, 50.6, 15.2, 32.9, 31.3, 63.0, 59.9)}
COLUMNS = ("ME", "CD", "SP", "SD", "SD-F", "SB", "FS")


def name(lam: float) -> str:
    return f"lambda {lam:g}"


def get_config(variant: str = "paper") -> ml_collections.ConfigDict:
    e = ml_collections.ConfigDict()
    e.expect = ('deciding metric SPIDEr; the paper claims lambda 0.5 best, every lambda > 0 above lambda 0 (LOAE), '
                'and lambda 1 below 0.5.')
    e.name = "Multi2Cap: CFD weight lambda"
    e.source = "Cho, thesis Table 3.8 and Figure 3.8 (Multi2Cap-base pre-training on VggCaps)"
    e.base, e.seeds, lambdas, cols, fig = "configs/multi2cap.py:base", (0, 1, 2), LAMBDAS, COLUMNS, "SD"
    if variant == "smoke":
        e.base, e.seeds, lambdas, cols, fig = "configs/multi2cap.py:tiny", (0, 1), (0.0, 0.5), \
            columns.SMOKE_CAPTION, "CD"
    elif variant != "paper":
        raise ValueError(f"{__file__}: unknown variant {variant!r} (paper, smoke)")
    e.rows = [{"name": name(lam), "x": lam, "overrides": {"cfd.weight": lam}} for lam in lambdas]
    e.metrics = columns.test_columns(cols)
    e.scale = 100.0
    e.paper = columns.paper_rows({name(lam): dict(zip(COLUMNS, PAPER[lam])) for lam in lambdas}, cols)
    e.compare = [(name(0.5), name(0.0), c) for c in ("SD", "FS") if c in cols] or [(name(0.5), name(0.0), "CD")]
    e.figure = {"kind": "line", "metric": fig, "x_label": "lambda (CFD weight)",
                "title": f"Figure 3.8: {fig} by lambda"}
    return e
