"""Multi2Cap thesis Table 3.9: pre-training with and without the four audio augmentations (Multi2Cap-base on
VggCaps), drawn as a chart.

    python -m kdjax.experiment --config=configs/experiments/multi2cap_table3_9.py --workdir=experiments/m2c_t39 -- \
        --config.audio.checkpoint=/models/ced_base.pt --config.decoder.checkpoint=/models/Llama-2-7b-hf \
        --config.teacher.checkpoint=/models/vit-large-patch16-224 --config.data.source=tfds \
        --config.data.tfds_dir=/data/vggcaps_tfds

Data and checkpoints as Table 3.8. Variant `smoke` (CI): the `tiny` config with and without augmentation, two seeds.
"""

import ml_collections

from configs.experiments import columns

COLUMNS = ("BL-1", "BL-2", "BL-3", "BL-4", "RG-L", "ME", "CD", "SP", "SD", "SD-F", "SB", "FS")
PAPER = {"w/o augment": (34.1, 19.1, 11.5, 7.5, 29.6, 12.7, 51.8, 14.2, 33.0, 30.9, 62.6, 58.2),
         "w/ augment": (34.1, 19.2, 11.6, 7.6, 29.9, 13.9, 55.0, 15.5, 35.2, 33.7, 63.5, 59.7)}


def get_config(variant: str = "paper") -> ml_collections.ConfigDict:
    e = ml_collections.ConfigDict()
    e.expect = ('deciding metric CIDEr-D; the paper claims augmentation improves every metric (CIDEr-D 51.8 -> 55.0).')
    e.name = "Multi2Cap: audio content augmentation"
    e.source = "Cho, thesis Table 3.9 (Multi2Cap-base pre-training)"
    e.base, e.seeds, cols = "configs/multi2cap.py:base", (0, 1, 2), COLUMNS
    if variant == "smoke":
        e.base, e.seeds, cols = "configs/multi2cap.py:tiny", (0, 1), columns.SMOKE_CAPTION
    elif variant != "paper":
        raise ValueError(f"{__file__}: unknown variant {variant!r} (paper, smoke)")
    e.rows = [{"name": "w/o augment", "overrides": {"augment.enabled": False}},
              {"name": "w/ augment", "overrides": {"augment.enabled": True}}]
    e.metrics = columns.test_columns(cols)
    e.scale = 100.0
    e.paper = columns.paper_rows({n: dict(zip(COLUMNS, v)) for n, v in PAPER.items()}, cols)
    e.compare = [("w/ augment", "w/o augment", "CD")]
    e.figure = {"kind": "bars", "metric": "CD", "title": "Table 3.9: CIDEr-D with and without augmentation"}
    return e
