"""Audio classification with CED (the shared audio stack end to end).

Variants (`--config=configs/audio_tagging.py:<variant>`):
  real_sounds  CPU, under three minutes: CED-tiny from random init on the embedded real sounds
               (Tux Paint sound effects + freedesktop event sounds; 5 classes, 1.5-s crops), with the
               Multi2Cap augmentations. The audio stack's learning test.
  finetune     a released CED checkpoint (--config.model.checkpoint=/path/ced_base.pt) with a fresh
               head on the same data.
  synthetic    CED-tiny (4 blocks) from random init tagging kdjax.data.synthetic_sounds clips with their events'
               (kind, pitch) pairs (multi-label, 10 classes; 5000 training clips of clip seed 1: the Multi2Cap
               teacher's of issue 24's EffAAC experiment, whose audio encoder it becomes); about 10 minutes:
                   python -m kdjax.main --config=configs/audio_tagging.py:synthetic --workdir=workdirs/tagger
  synthetic_counts  the same, also tagging each event kind's repetitions, (kind, count) pairs: 30 classes (issue
               24's EffAAC v3 teacher: a tagger whose CED keeps what the captions count)
"""

import ml_collections

from kdjax.data.real_sounds import LABELS
from kdjax.data.synthetic_sounds import TAG_SETS


def get_config(variant: str = "real_sounds") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.system = "audio_tagging"
    c.seed = 0
    c.mesh = {"data": -1, "fsdp": 1, "tensor": 1}
    c.data = ml_collections.ConfigDict({
        "source": "real_sounds",  # or 'manifest': users' clips listed in data.manifest_file; or 'synthetic'
        "manifest_file": "",  # JSONL: {"audio": path, "label": name, "split": train|validation|test}
        "labels": LABELS, "sample_rate": 16000, "clip_seconds": 1.5,
        "multilabel": False,  # True: a set of labels per clip (sigmoid outputs); the synthetic source's tags
        # data.source='synthetic': generated clips per split, made on access, and their clip seed
        "synthetic": {"num_train": 5000, "num_validation": 100, "num_test": 200, "seed": 1},
        "on_bad_input": "error",  # or 'skip': unreadable clips are skipped, counted and listed
    })
    c.model = ml_collections.ConfigDict({
        "arch": "ced_tiny", "checkpoint": "",  # CED state dict (.pt/.safetensors); "" = random init
        "depth": 0,  # 0 = the released 12 blocks; fewer for quick experiments (a checkpoint's first blocks)
        "overrides": {},  # CedConfig fields, e.g. {"top_db_scope": "batch"}
    })
    c.augment = ml_collections.ConfigDict({
        "enabled": True,
        "ops": {"noise_p": 0.5, "snr_db": (10.0, 40.0), "shift_p": 0.5, "max_shift": 0.5,
                "shift_rollover": True, "stretch_p": 0.5, "stretch_rate": (0.8, 1.25), "flip_p": 0.5},
    })
    c.optim = ml_collections.ConfigDict({
        "lr": 2e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 0.05, "clip_norm": 1.0,
        "warmup_ratio": 0.1, "decay": "cosine", "end_lr": 0.0, "groups": {},
    })
    c.train = ml_collections.ConfigDict({
        "batch_size": 16, "epochs": 0, "steps": 200, "log_every": 25, "checkpoint_every": 100,
        "stop_check_every": 10,  # multi-process jobs agree on a SIGTERM every this many steps
        "max_bad_steps": 5,  # non-finite loss or gradient this many steps in a row stops the run (each is skipped)
        "keep_checkpoints": 2, "label_smoothing": 0.1,
        # "" = report the final parameters; e.g. "accuracy" keeps the best on the validation split
        "early_stopping": {"metric": "", "mode": "max", "patience": 0},
    })
    c.eval = ml_collections.ConfigDict({"every": 100, "every_epochs": 0, "batch_size": 32,
                                        "final": True})  # False: no closing dev/test evaluation
    if variant == "real_sounds":
        pass
    elif variant in ("synthetic", "synthetic_counts"):
        tags = TAG_SETS["kind_pitch_count" if variant == "synthetic_counts" else "kind_pitch"]
        c.data.update({"source": "synthetic", "labels": tags, "multilabel": True, "clip_seconds": 4.0})
        c.model.depth = 4
        c.augment.enabled = False  # 5000 distinct clips; flips and stretches would change a chirp's or a pitch's tag
        c.optim.lr = 1e-3
        c.train.update({"steps": 625, "log_every": 25, "checkpoint_every": 250, "label_smoothing": 0.0})
        c.eval.every = 0
    elif variant == "finetune":
        c.require = ("model.checkpoint",)
        c.model.arch = ""
        c.optim.lr = 1e-4
    else:
        raise ValueError(f"configs/audio_tagging.py: unknown variant {variant!r} (real_sounds, finetune, synthetic, "
                         "synthetic_counts)")
    return c
