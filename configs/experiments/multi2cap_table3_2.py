"""Multi2Cap thesis Table 3.2: LOAE (lambda = 0) against Multi2Cap-small (ResNet-50 teacher) and -base (ViT-L/16
teacher), pre-trained and tested on VggCaps. (The table's human rows are not runs.)

    python -m kdjax.experiment --config=configs/experiments/multi2cap_table3_2.py --workdir=experiments/m2c_t32 \
        --config.paths.vggcaps=/data/vggcaps_tfds --config.paths.resnet50=/models/resnet-50 \
        --config.paths.vit_large=/models/vit-large-patch16-224 -- \
        --config.audio.checkpoint=/models/ced_base.pt --config.decoder.checkpoint=/models/Llama-2-7b-hf

Data: VggCaps as an array_record dataset (kdjax.data.tfds_builders); checkpoints: CED-base, LLaMA-2-7B, and the two
image teachers (Hugging Face ResNetModel / ViTModel directories). The paired tests ask whether each Multi2Cap beats
LOAE. Variant `smoke` (CI): LOAE and the `tiny` config (a small ResNet teacher) on the embedded set, two seeds.
"""

import ml_collections

from configs.experiments import columns

COLUMNS = tuple(c for c, _ in columns.CAPTION)
PAPER = {"LOAE": (33.0, 18.3, 10.9, 7.0, 29.1, 12.4, 47.6, 14.2, 30.9, 27.6, 61.8, 55.3),
         "Multi2Cap-small": (33.8, 18.9, 11.5, 7.5, 29.5, 13.7, 52.1, 15.4, 33.7, 30.8, 62.6, 57.7),
         "Multi2Cap-base": (34.1, 19.2, 11.6, 7.6, 29.9, 13.9, 55.0, 15.5, 35.2, 33.7, 63.5, 59.7)}


def get_config(variant: str = "paper") -> ml_collections.ConfigDict:
    e = ml_collections.ConfigDict()
    e.expect = ('deciding metric CIDEr-D (test, VggCaps); the paper claims Multi2Cap-base > Multi2Cap-small > LOAE on '
                'every metric.')
    e.name = "Multi2Cap against LOAE on VggCaps"
    e.source = "Cho, thesis Table 3.2"
    e.scale = 100.0
    e.figure = {"kind": "bars", "metric": "CD", "title": "Table 3.2: CIDEr-D on VggCaps"}
    if variant == "smoke":
        e.base, e.seeds, cols = "configs/multi2cap.py:tiny", (0, 1), columns.SMOKE_CAPTION
        e.paths = {}
        e.rows = [{"name": "LOAE", "overrides": {"cfd.weight": 0.0, "teacher.kind": "none"}},
                  {"name": "Multi2Cap-small", "overrides": {}}]
    elif variant == "paper":
        e.base, e.seeds, cols = "configs/multi2cap.py:base", (0, 1, 2), COLUMNS
        e.paths = {"vggcaps": "", "resnet50": "", "vit_large": ""}
        data = {"data.source": "tfds", "data.tfds_dir": "{path:vggcaps}"}
        e.rows = [{"name": "LOAE", "config": "configs/multi2cap.py:loae", "overrides": data},
                  {"name": "Multi2Cap-small", "config": "configs/multi2cap.py:small",
                   "overrides": {**data, "teacher.checkpoint": "{path:resnet50}"}},
                  {"name": "Multi2Cap-base", "overrides": {**data, "teacher.checkpoint": "{path:vit_large}"}}]
    else:
        raise ValueError(f"{__file__}: unknown variant {variant!r} (paper, smoke)")
    names = [r["name"] for r in e.rows]
    e.metrics = columns.test_columns(cols)
    e.paper = columns.paper_rows({n: dict(zip(COLUMNS, PAPER[n])) for n in names}, cols)
    e.compare = [(n, "LOAE", "CD") for n in names if n != "LOAE"]
    return e
