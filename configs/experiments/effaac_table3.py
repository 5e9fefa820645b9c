"""EffAAC (seed 002) Table 3: what the teacher and the student cost to run. Parameters, forward GFLOPs and the latency
of captioning one 10-s clip with 20 tokens (batch 1, the mean of 10 timed runs), measured by `kdjax.main --mode=cost`
(kdjax/metrics/cost.py) on the host that runs it: the paper timed a Raspberry Pi 4, so run this on the device you
deploy to. Each seed is one repeated measurement of the same model.

    python -m kdjax.experiment --config=configs/experiments/effaac_table3.py --workdir=experiments/effaac_t3 \
        --config.paths.ced=/models/ced_base --config.paths.llama=/models/llama-2-7b-hf

Data: none (the clip is noise: the arithmetic does not depend on it). Checkpoints: the teacher's CED and LLaMA
(their architectures are what is measured; the weights' values are not); the student is built from its config.
The paper's teacher is HTSAT-BART, kdjax's a Multi2Cap-base captioner (CED-base + Q-Former + LLaMA-2-7B; its
float32 weights need about 28 GB of memory): compare directions, not values. Variant `smoke` (CI): the `tiny`
Multi2Cap and EffAAC models, two seeds.
"""

import ml_collections

TEACHER, STUDENT = "teacher (Multi2Cap)", "EffNet-Trm (student)"
# seed 002 Table 3; the paper's teacher is HTSAT-BART (params not given)
PAPER = {TEACHER: {"Latency / s": 45.2, "GFLOPs": 160.7}, STUDENT: {"Latency / s": 2.4, "GFLOPs": 3.8}}


def get_config(variant: str = "paper") -> ml_collections.ConfigDict:
    e = ml_collections.ConfigDict()
    e.expect = ("deciding metric latency; the paper claims the student runs about 19x faster than the teacher at "
                "2.3% of its GFLOPs.")
    e.name = "EffAAC: teacher and student cost"
    e.source = "seed 002 Table 3"
    e.scale = 1.0
    e.metrics = [("Latency / s", "cost.latency_s"), ("GFLOPs", "cost.gflops"), ("Params / M", "cost.params_m")]
    if variant == "smoke":
        e.base, e.seeds = "configs/effaac.py:tiny", (0, 1)
        e.paths = {}
        teacher = {"config": "configs/multi2cap.py:tiny", "overrides": {}}
        e.paper = []
    elif variant == "paper":
        e.base, e.seeds = "configs/effaac.py:contra", (0, 1, 2)
        e.paths = {"ced": "", "llama": ""}
        teacher = {"config": "configs/multi2cap.py:base",
                   "overrides": {"audio.checkpoint": "{path:ced}", "decoder.checkpoint": "{path:llama}"}}
        e.paper = list(PAPER.items())
    else:
        raise ValueError(f"{__file__}: unknown variant {variant!r} (paper, smoke)")
    e.rows = [{"name": TEACHER, "mode": "cost", **teacher},
              {"name": STUDENT, "mode": "cost", "overrides": {}}]
    e.compare = [(TEACHER, STUDENT, "Latency / s")]
    e.figure = {"kind": "bars", "metric": "Latency / s", "title": "Table 3: latency of one 10-s clip, 20 tokens"}
    return e
