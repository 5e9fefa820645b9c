"""Multi2Cap thesis Table 3.4: both stages on AudioCaps (pre-training on VggCaps, fine-tuning on AudioCaps's 10-s
clips from the pre-trained workdirs).

    python -m kdjax.experiment --config=configs/experiments/multi2cap_table3_4.py --workdir=experiments/m2c_t34 \
        --config.paths.vggcaps=/data/vggcaps_tfds --config.paths.audiocaps=/data/audiocaps_tfds \
        --config.paths.resnet50=/models/resnet-50 --config.paths.vit_large=/models/vit-large-patch16-224 -- \
        --config.audio.checkpoint=/models/ced_base.pt --config.decoder.checkpoint=/models/Llama-2-7b-hf

As Table 3.3 (configs/experiments/multi2cap_table3_3.py), with AudioCaps. Variant `smoke` (CI): as Table 3.3's.
"""

import ml_collections

from configs.experiments.multi2cap_table3_3 import two_stages

PAPER = {"Multi2Cap-small": (25.0, 79.3, 17.2, 48.2, 48.1), "Multi2Cap-base": (25.9, 83.7, 18.2, 50.9, 50.9)}


def get_config(variant: str = "paper") -> ml_collections.ConfigDict:
    e = ml_collections.ConfigDict()
    e.expect = ('deciding metric CIDEr-D (AudioCaps test); the paper claims Multi2Cap-base > Multi2Cap-small (and '
                "base above LOAE's 81.6).")
    e.name = "Multi2Cap fine-tuned on AudioCaps"
    e.source = "Cho, thesis Table 3.4"
    two_stages(e, variant, "audiocaps", PAPER, 10.0)
    return e
