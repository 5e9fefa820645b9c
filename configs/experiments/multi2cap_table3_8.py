"""Multi2Cap thesis Table 3.8 and Figure 3.8: the CFD weight lambda in pre-training (Multi2Cap-base on VggCaps).

    python -m kdjax.experiment --config=configs/experiments/multi2cap_table3_8.py --workdir=experiments/m2c_t38 -- \
        --config.audio.checkpoint=/models/ced_base.pt --config.decoder.checkpoint=/models/Llama-2-7b-hf \
        --config.teacher.checkpoint=/models/vit-large-patch16-224 --config.data.source=tfds \
        --config.data.tfds_dir=/data/vggcaps_tfds

Data: VggCaps (`python -m kdjax.vggcaps build`, then kdjax.data.tfds_builders); checkpoints: CED-base, LLaMA-2-7B,
ViT-L/16. lambda = 0 is LOAE (no image teacher). The thesis gives one run per lambda; three seeds here. The figure
is Fig. 3.8's curve (SPIDEr by lambda). Variant `smoke` (CI): the `tiny` config on the embedded set, lambda 0 and
0.5, two seeds.

Variant `mini` (issue 24's experiment 4; benchmarks/EXPERIMENTS.md; written 2026-12-07 before it was run):

    python -m kdjax.experiment --config=configs/experiments/multi2cap_table3_8.py:mini \
        --workdir=experiments/m2c_t38_mini

- Data: kdjax.data.synthetic_sounds clips with their pictures (clip seed 0): 1000 training, 100 validation, 200 test;
  4-s clips at 16 kHz, one or two events (5 kinds, low or high, 1-4 repetitions); the picture draws the same events
  (colour = kind, height = pitch, one shape per repetition), so it carries the clip's content, counts included.
- Model: configs/multi2cap.py:tiny (CED of 2 blocks and a small Q-Former under a small LLaMA decoder with a
  word-level vocabulary, bases frozen, LoRA; every row the same), 300 steps of 8 (2.4 epochs), lr 1e-3.
- Image teacher: tiny's small ResNet, frozen. It is random (no pretrained image model is reachable offline that
  kdjax reads; the thesis's are ImageNet ViT-L / ResNet-50): it knows nothing learned, but its features are a fixed
  function of a picture that draws the events, which the audio encoder cannot read off a 4-s clip as easily (counts).
- Rows: lambda in {0 (LOAE), 0.25, 0.5, 1}, triplet CFD (the paper's); seeds 0-2.
- Deciding metric: test CIDEr-D. Expected (the paper): every lambda > 0 above lambda 0, lambda 0.5 the best. A risk
  written beforehand: if no lambda helps, this cannot tell "CFD does not help" from "a random image encoder's
  features are not a target worth matching".
"""

import ml_collections

from configs.experiments import columns

LAMBDAS = (0.0, 0.1, 0.5, 0.9, 1.0)
PAPER = {0.0: (12.4, 47.6, 14.2, 30.9, 27.6, 61.8, 55.3), 0.1: (13.7, 54.4, 15.3, 34.8, 32.7, 63.1, 59.1),
         0.5: (13.9, 55.0, 15.5, 35.2, 33.7, 63.5, 59.7), 0.9: (13.8, 52.4, 15.4, 33.9, 31.9, 63.0, 59.1),
         1.0: (13.7, 50.6, 15.2, 32.9, 31.3, 63.0, 59.9)}
COLUMNS = ("ME", "CD", "SP", "SD", "SD-F", "SB", "FS")
MINI_LAMBDAS = (0.0, 0.25, 0.5, 1.0)
MINI_DATA = {  # variant `mini` (and Table 3.5's): synthetic clips and the pictures of their events, tiny's model
    "data.source": "synthetic",
    "data.synthetic": {"num_train": 1000, "num_validation": 100, "num_test": 200, "seed": 0},
    "train.steps": 300, "train.log_every": 25, "train.checkpoint_every": 100,
}


def name(lam: float) -> str:
    return f"lambda {lam:g}"


def get_config(variant: str = "paper") -> ml_collections.ConfigDict:
    e = ml_collections.ConfigDict()
    e.expect = ('deciding metric SPIDEr; the paper claims lambda 0.5 best, every lambda > 0 above lambda 0 (LOAE), '
                'and lambda 1 below 0.5.')
    e.name = "Multi2Cap: CFD weight lambda"
    e.source = "Cho, thesis Table 3.8 and Figure 3.8 (Multi2Cap-base pre-training on VggCaps)"
    e.base, e.seeds, lambdas, cols, fig = "configs/multi2cap.py:base", (0, 1, 2), LAMBDAS, COLUMNS, "SD"
    data = {}
    if variant == "smoke":
        e.base, e.seeds, lambdas, cols, fig = "configs/multi2cap.py:tiny", (0, 1), (0.0, 0.5), \
            columns.SMOKE_CAPTION, "CD"
    elif variant == "mini":
        e.name, e.source = "Multi2Cap in miniature: CFD weight lambda", "thesis Fig. 3.8 in miniature (issue 24)"
        e.expect = ("deciding metric CIDEr-D (test); expected (the paper): every lambda > 0 above lambda 0 (LOAE), "
                    "lambda 0.5 the best.")
        e.base, e.seeds, lambdas, cols, fig = "configs/multi2cap.py:tiny", (0, 1, 2), MINI_LAMBDAS, \
            columns.SMOKE_CAPTION, "CD"
        data = MINI_DATA
    elif variant != "paper":
        raise ValueError(f"{__file__}: unknown variant {variant!r} (paper, smoke, mini)")
    e.rows = [{"name": name(lam), "x": lam, "overrides": {**data, "cfd.weight": lam}} for lam in lambdas]
    e.metrics = columns.test_columns(cols)
    e.scale = 100.0
    e.paper = columns.paper_rows({name(lam): dict(zip(COLUMNS, PAPER[lam])) for lam in lambdas if lam in PAPER}, cols)
    e.compare = [(name(0.5), name(0.0), c) for c in ("SD", "FS") if c in cols] or [(name(0.5), name(0.0), "CD")]
    if variant == "mini":
        e.compare = [(name(lam), name(0.0), "CD") for lam in lambdas if lam > 0]
    e.figure = {"kind": "line", "metric": fig, "x_label": "lambda (CFD weight)",
                "title": f"Figure 3.8: {fig} by lambda"}
    return e
