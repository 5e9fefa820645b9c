"""EffAAC (seed 002): encoder-level KD into the EffNet-Trm student (../shared/reference/effaac.md).

Variants (`--config=configs/effaac.py:VARIANT`):
  contra   the paper's KD_contra (default): L = L_sup + L_seq + L_contra; 25 epochs, batch 32, lr warmed
           up over 5 epochs to 5e-4 then decayed exponentially to 5e-7; 10-s random crops; beam 3, max 20.
           Needs data.manifest_file (or tfds_dir), student.encoder_checkpoint (efficientnet_pytorch B2
           pre-trained on AudioSet, in_channels=1) and a teacher (teacher.workdir of a kdjax captioner,
           or teacher.cache_dir of imported outputs, e.g. HTSAT-BART's).
  mse      KD_mse: L_enc is the MSE between the projected student and the teacher embedding; the
           projection stays in the student (the decoder reads projected frames).
  scratch  no KD (L_sup only), the paper's "EffNet-Trm (scratch)".
  smoke    CPU, a few minutes, on the embedded real set, distilling from the Multi2Cap smoke model through
           its teacher cache, which ships with kdjax (kdjax/data/assets/effaac_smoke_teacher; the commands
           that made it are in its README). With a Multi2Cap workdir of your own:
           --config.teacher.kind=multi2cap --config.teacher.workdir=W (online embeddings, cache in W).
           No KD: --config.kd.enc=none --config.kd.seq_weight=0 --config.teacher.kind=none.
  tiny     seconds per step, a narrow EfficientNet, an online Multi2Cap teacher (teacher.workdir): tests.

Table 1's bottleneck study: `student.memory='teacher'` (the frozen teacher's encoder in the student, the
decoder trained from scratch; an online teacher), then `student.init_from=<that workdir>` with
`train.freeze=('decoder',)` (the EfficientNet trained under the frozen decoder).
"""

from __future__ import annotations

import ml_collections

# the Multi2Cap smoke model's embeddings and captions of the embedded set's training clips (4-s crops)
SMOKE_TEACHER_CACHE = "pkg:kdjax/data/assets/effaac_smoke_teacher"
ALL_METRICS = ("bleu_1", "bleu_4", "rouge_l", "meteor", "cider_d", "spice", "spider", "fense")


def get_config(variant: str = "contra") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.system = "effaac"
    c.seed = 0
    c.mesh = {"data": -1, "fsdp": 1, "tensor": 1}  # an 11M student: data parallel
    c.data = ml_collections.ConfigDict({
        "source": "manifest",  # embedded | manifest | tfds | synthetic (kdjax.data.captions)
        "manifest_file": "", "tfds_dir": "",
        # data.source='synthetic': generated clips of data.clip_seconds whose captions name their events; with
        # num_audio_only > 0, that many more clips as audio-only data (as with audio_only_manifest)
        "synthetic": {"num_train": 5000, "num_validation": 200, "num_test": 500, "seed": 0, "num_audio_only": 0},
        "sample_rate": 16000, "clip_seconds": 10.0,
        "max_caption_tokens": 22,  # words + EOS (captions are at most ~20 words)
        "on_bad_input": "error",
        # audio-only clips (JSONL {"audio", "id"}; captions come from the teacher): half of every batch. They stream
        # from disk; longer ones are skipped and counted. With them a batch holds audio_only_batch_size labelled
        # clips, each paired with an audio-only one (the paper's 16 + 16; train.batch_size is set to it)
        "audio_only_manifest": "", "audio_only_max_seconds": 300.0, "audio_only_batch_size": 16,
    })
    c.student = ml_collections.ConfigDict({
        "encoder": "efficientnet-b2", "encoder_overrides": {},
        "encoder_checkpoint": "",  # efficientnet_pytorch state dict (AudioSet pre-training), optional
        "decoder": {"d_model": 256, "num_heads": 4, "ffn_dim": 1024, "num_layers": 2, "dropout": 0.2},
        "max_words": 0, "min_count": 1,  # word vocabulary from the training captions (0 = every word)
        "memory": "student",  # student | teacher (Table 1: the teacher's encoder output feeds the decoder)
        "init_from": "",  # a kdjax EffAAC workdir whose decoder initialises this one (Table 1, row 3)
    })
    c.kd = ml_collections.ConfigDict({
        "enc": "contra",  # contra | mse | none
        "enc_weight": 1.0, "seq_weight": 1.0,
        "contra_dim": 1024, "label_smoothing": 0.1,
        # 'code': the authors' code (cosines times logit_scale itself, tau ~0.38 at the start; the two directions
        # averaged); 'eq6': eq. 6 as written with CLIP's exp(logit_scale) (tau 0.07) and the directions summed
        "contra_form": "code",
        # word-level KD (issue 26, not in the paper): + weight x KL(teacher || student) over the next-token
        # distributions along the teacher's caption (its top_k, cached once per clip, moved to the student's words)
        "word": {"weight": 0.0, "top_k": 32},
    })
    c.teacher = ml_collections.ConfigDict({
        "kind": "multi2cap",  # multi2cap (a kdjax workdir) | cache (imported outputs only) | none
        "workdir": "",  # the teacher's kdjax workdir
        "cache_dir": "",  # per-clip embeddings + captions; default <workdir>/teacher_cache
        "online": True,  # embeddings computed in the step on the student's crop (captions always cached)
        "generate": {"num_beams": 3, "max_new_tokens": 20, "min_new_tokens": 1},
        "batch_size": 16,  # clips per batch when writing the cache
    })
    c.optim = ml_collections.ConfigDict({
        "lr": 5e-4, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 1e-6, "clip_norm": 1.0,
        "warmup_ratio": 5 / 25, "decay": "exponential", "end_lr": 5e-7, "groups": {},
    })
    c.train = ml_collections.ConfigDict({
        "batch_size": 32, "epochs": 25, "steps": 0, "log_every": 50, "checkpoint_every": 1000,
        "stop_check_every": 10,  # multi-process jobs agree on a SIGTERM every this many steps
        "max_bad_steps": 5,  # non-finite loss or gradient this many steps in a row stops the run (each is skipped)
        "keep_checkpoints": 2,
        # fallback: selects checkpoints when eval.unavailable_metrics='drop' drops `metric` (no SPICE jar)
        "early_stopping": {"metric": "spider", "mode": "max", "patience": 0, "fallback": "cider_d"},
        "freeze": (),  # () | ("encoder",) | ("decoder",): Table 1's frozen halves
    })
    c.eval = ml_collections.ConfigDict({
        "every": 0, "every_epochs": 1, "batch_size": 32,
        "generate": {"num_beams": 3, "max_new_tokens": 20, "min_new_tokens": 1},
        "metrics": ALL_METRICS, "tokenization": "ptb", "metric_config": {},
        # a metric this install cannot compute (no SPICE jar, no FENSE checker): 'error' stops before training,
        # 'drop' leaves it out (and early stopping falls back to train.early_stopping.fallback), noted in the report
        "unavailable_metrics": "error",
        "final": True,  # False: no closing dev/test evaluation or report
    })
    # abstract compiles (python -m kdjax.aot) read no tokenizer or teacher: the student's word vocabulary and the
    # online teacher's CED (Multi2Cap-base's) they build with (Clotho's vocabulary is about 4,400 words)
    c.aot = ml_collections.ConfigDict({"vocab_size": 5000, "teacher_arch": "ced_base"})
    c.require = ("data.manifest_file", "teacher.workdir")

    if variant == "contra":
        pass
    elif variant == "mse":
        c.kd.enc = "mse"
    elif variant == "scratch":
        c.kd.update({"enc": "none", "seq_weight": 0.0})
        c.teacher.kind = "none"
        c.require = ("data.manifest_file",)
    elif variant in ("smoke", "tiny"):
        c.require = ()  # the teacher's workdir is checked when a KD term needs it (no-KD runs have none)
        c.data.source = "embedded"
        c.data.clip_seconds = 4.0
        c.data.max_caption_tokens = 16
        c.data.audio_only_batch_size = 0  # audio-only clips (if given) pair with train.batch_size labelled ones
        c.student.decoder = {"d_model": 128, "num_heads": 4, "ffn_dim": 256, "num_layers": 2, "dropout": 0.1}
        # BatchNorm running statistics settle within a few dozen steps (the paper trains for 25 epochs)
        c.student.encoder_overrides = {"batch_norm_momentum": 0.9}
        c.kd.contra_dim = 128
        c.optim.update({"lr": 1e-3, "warmup_ratio": 0.1, "end_lr": 1e-5, "weight_decay": 0.0})
        c.train.update({"batch_size": 8, "epochs": 0, "steps": 40, "log_every": 5, "checkpoint_every": 20})
        c.train.early_stopping.metric = ""
        c.teacher.generate = {"num_beams": 3, "max_new_tokens": 12, "min_new_tokens": 2}
        c.teacher.update({"kind": "cache", "cache_dir": SMOKE_TEACHER_CACHE, "online": False})
        c.aot.teacher_arch = "ced_tiny"  # the Multi2Cap smoke and tiny models' audio encoder
        c.eval.update({"every": 0, "every_epochs": 0, "batch_size": 8,
                       "metrics": ("bleu_1", "bleu_4", "rouge_l", "cider_d"), "tokenization": "loae"})
        c.eval.generate = {"num_beams": 3, "max_new_tokens": 12, "min_new_tokens": 2}
        if variant == "tiny":
            c.student.encoder = "efficientnet-b0"
            c.student.encoder_overrides = {"width_coefficient": 0.25, "depth_coefficient": 0.34,
                                           "batch_norm_momentum": 0.9}
            c.student.decoder = {"d_model": 32, "num_heads": 4, "ffn_dim": 64, "num_layers": 2, "dropout": 0.1}
            c.kd.contra_dim = 32
            c.data.clip_seconds = 2.0
            c.train.update({"steps": 6, "log_every": 1, "checkpoint_every": 3})
            c.teacher.generate = c.eval.generate = {"num_beams": 1, "max_new_tokens": 4, "min_new_tokens": 1}
            c.teacher.update({"kind": "multi2cap", "cache_dir": "", "online": True})
    else:
        raise ValueError(f"configs/effaac.py: unknown variant {variant!r} (contra, mse, scratch, smoke, tiny)")
    return c
