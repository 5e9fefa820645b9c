"""Multi2Cap thesis Table 3.3: both stages on Clotho. Multi2Cap-small and -base are pre-trained on VggCaps, then
fine-tuned on Clotho from their pre-trained workdirs (`init_from`; Table 3.7's settings, lambda 0, 30-s clips).

    python -m kdjax.experiment --config=configs/experiments/multi2cap_table3_3.py --workdir=experiments/m2c_t33 \
        --config.paths.vggcaps=/data/vggcaps_tfds --config.paths.clotho=/data/clotho_tfds \
        --config.paths.resnet50=/models/resnet-50 --config.paths.vit_large=/models/vit-large-patch16-224 -- \
        --config.audio.checkpoint=/models/ced_base.pt --config.decoder.checkpoint=/models/Llama-2-7b-hf

Data: VggCaps and Clotho as array_record datasets (kdjax.data.tfds_builders); checkpoints as Table 3.2. Each
fine-tuning run starts from the pre-training run of its seed (it waits for it; `--print` marks it). The pre-training
rows report their VggCaps test scores. The other systems of the table are the paper's numbers only. Variant
`smoke` (CI): the `tiny` config pre-trained on the embedded set, then fine-tuned on it without its images.
"""

import ml_collections

from configs.experiments import columns

COLUMNS = ("ME", "CD", "SP", "SD", "SD-F")
PAPER = {"Multi2Cap-small": (19.2, 48.4, 13.9, 31.1, 31.1), "Multi2Cap-base": (19.7, 53.0, 14.4, 33.7, 33.6)}


def two_stages(e: ml_collections.ConfigDict, variant: str, dataset: str, paper: dict, clip_seconds: float) -> None:
    """The rows of a fine-tuning table (3.3 Clotho, 3.4 AudioCaps): pre-train on VggCaps, fine-tune on `dataset`."""
    e.scale = 100.0
    if variant == "smoke":
        e.base, e.seeds, cols = "configs/multi2cap.py:tiny", (0, 1), columns.SMOKE_CAPTION
        e.paths = {}
        e.rows = [{"name": "Multi2Cap-small pre-training", "overrides": {}},
                  {"name": "Multi2Cap-small", "overrides": {"init_from": "{row:Multi2Cap-small pre-training}",
                                                            "cfd.weight": 0.0, "teacher.kind": "none"}}]
    elif variant == "paper":
        e.base, e.seeds, cols = "configs/multi2cap.py:base", (0, 1, 2), COLUMNS
        e.paths = {"vggcaps": "", dataset: "", "resnet50": "", "vit_large": ""}
        e.rows = []
        for size, teacher, pre_cfg in (("small", "resnet50", "small"), ("base", "vit_large", "base")):
            pre = f"Multi2Cap-{size} pre-training"
            e.rows.append({"name": pre, "config": f"configs/multi2cap.py:{pre_cfg}",
                           "overrides": {"data.source": "tfds", "data.tfds_dir": "{path:vggcaps}",
                                         "teacher.checkpoint": f"{{path:{teacher}}}"}})
            e.rows.append({"name": f"Multi2Cap-{size}", "config": f"configs/multi2cap.py:{size}_finetune",
                           "overrides": {"init_from": f"{{row:{pre}}}", "data.source": "tfds",
                                         "data.tfds_dir": f"{{path:{dataset}}}", "data.clip_seconds": clip_seconds}})
    else:
        raise ValueError(f"unknown variant {variant!r} (paper, smoke)")
    e.metrics = columns.test_columns(cols)
    names = [r["name"] for r in e.rows]
    e.paper = columns.paper_rows({n: dict(zip(COLUMNS, v)) for n, v in paper.items() if n in names}, cols)
    e.compare = [("Multi2Cap-base", "Multi2Cap-small", "CD")] if "Multi2Cap-base" in names else []
    e.figure = {"kind": "bars", "metric": "CD", "title": f"{e.source}: CIDEr-D"}


def get_config(variant: str = "paper") -> ml_collections.ConfigDict:
    e = ml_collections.ConfigDict()
    e.expect = ('deciding metric CIDEr-D (Clotho test); the paper claims Multi2Cap-base > Multi2Cap-small (and base '
                "above LOAE's 51.3).")
    e.name = "Multi2Cap fine-tuned on Clotho"
    e.source = "Cho, thesis Table 3.3"
    two_stages(e, variant, "clotho", PAPER, 30.0)
    return e
