"""distill_lm (issue 26): a LLaMA-family teacher into a LLaMA-family student by token-level KD,
L = CE(next token) + kd.alpha * T^2 * D(teacher || student) over each token's next-token distribution
(kdjax.losses.token_kd: forward KL, reverse KL or generalised JSD), on packed text.

Variants (`--config=configs/distill_lm.py:<variant>`):
  tiny   seconds: a random tiny teacher and a smaller random student on the embedded English caption corpus
         (Tux Paint's 805 descriptions), a word-level vocabulary; for tests of the machinery, not of learning:
             python -m kdjax.main --config=configs/distill_lm.py:tiny --workdir=workdirs/distill-tiny

The teacher runs in the step on the student's tokens (kd.source='online', dense), or is read from its top-k cache
(kd.source='topk': kdjax.teachers.topk, written once per training document into the workdir or teacher.cache.dir;
the step runs only the student). With student.tokenizer set the two tokenizers differ: the cached top-k is moved to
the student's tokens and vocabulary by character offsets (kdjax.data.token_alignment), e.g.

    python -m kdjax.main --config=configs/distill_lm.py:tiny --workdir=workdirs/distill-cross \
        --config.kd.source=topk --config.student.tokenizer=wordpiece

kd.hidden adds an MSE between mapped hidden states (learned projections where the widths differ); kd.on_policy
takes part of the KD term on the student's own samples (GKD); kd.sequence adds the teacher's continuations of the
training documents as more training documents (sequence-level KD).
"""

import ml_collections

TINY_LLAMA = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "max_position_embeddings": 128, "tie_word_embeddings": True}


def get_config(variant: str = "tiny") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.system = "distill_lm"
    c.seed = 0
    c.mesh = {"data": -1, "fsdp": 1, "tensor": 1}
    c.data = ml_collections.ConfigDict({
        # captions: the embedded English caption corpus; docstrings: the Python standard library's docstrings of
        # at least min_words words (kdjax.data.docstring_corpus); jsonl: data.file, one {"text"} a line
        "source": "captions", "min_words": 20,
        "file": "", "text_key": "text",
        "fractions": (0.8, 0.1, 0.1),  # train / validation / test, of the documents after a seeded shuffle
        "split_seed": -1,  # the shuffle's seed; -1: the run's seed (>= 0 keeps one split across seeds)
        "length": 64,  # tokens per packed row
    })
    c.tokenizer = ""  # "" = the teacher checkpoint's; with a random teacher, word-level on the training texts
    c.teacher = ml_collections.ConfigDict({
        "checkpoint": "",  # HF LlamaForCausalLM directory or .gguf; "" = random (`random`, seed + 1)
        "random": dict(TINY_LLAMA),
        # the teacher's cached outputs (top-k, generations) under dir ("" = the workdir); windows or prompts per batch
        "cache": {"dir": "", "batch_size": 8},
    })
    c.student = ml_collections.ConfigDict({
        "from_teacher_layers": 0,  # > 0: the teacher checkpoint's first this many layers; 0: random (`random`)
        # "" = the teacher's tokenizer; "wordpiece" = a WordPiece of vocab_size pieces built from the training texts
        # (kept in the workdir); or an HF tokenizer directory. Another tokenizer needs kd.source='topk'.
        "tokenizer": "", "vocab_size": 2000,
        "random": {**TINY_LLAMA, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1},
        "dtype": "float32", "param_dtype": "float32", "remat": False, "scan_layers": False,
    })
    c.kd = ml_collections.ConfigDict({
        "alpha": 1.0,  # 0: the student trained alone on the same tokens
        "kind": "forward_kl",  # forward_kl | reverse_kl | jsd
        "beta": 0.5,  # jsd's mixture weight
        "temperature": 1.0,
        "chunk_tokens": 0,  # > 0: the divergence over this many tokens at a time (large vocabularies)
        # online: the teacher in the step, dense; topk: its cached top-k (teacher.cache); sampled: a cache of top_k
        # draws from its distribution (the distinct tokens drawn, their frequencies), the same bytes as the top-k:
        # the dense forward KL's gradient in expectation (forward_kl, rest, temperature 1)
        "source": "online",
        "top_k": 64,  # topk: log-probabilities kept per token (float16 + int32: 6 bytes each); sampled: draws
        # sampled: the first sampled_head of the top_k entries are the teacher's most probable tokens, kept exactly;
        # the other top_k - sampled_head are draws from the mass outside them (unbiased, less variance)
        "sampled_head": 0,
        "rest": True,  # topk: k + 1 buckets (the teacher's mass outside its top-k kept); False: both renormalised
        # + weight x MSE between mapped hidden states (student's projected onto the teacher's width when they
        # differ; online teacher, shared tokenizer); layer_map 'uniform' or 's:t,...' (hidden_states indices)
        "hidden": {"weight": 0.0, "layer_map": "uniform"},
        # GKD: fraction (lambda) of the KD term taken on the student's own samples, scored by the online teacher:
        # continuations of max_new_tokens sampled at `temperature` from each row's first prompt_tokens tokens
        "on_policy": {"fraction": 0.0, "prompt_tokens": 8, "max_new_tokens": 16, "temperature": 1.0},
        # sequence-level KD: the teacher continues each training document's first prompt_tokens tokens (greedy, or
        # beam search with num_beams > 1); each continuation, as text, is one more training document (cached)
        "sequence": {"enabled": False, "prompt_tokens": 8, "max_new_tokens": 24, "num_beams": 1},
    })
    c.optim = ml_collections.ConfigDict({
        "lr": 3e-3, "b1": 0.9, "b2": 0.95, "eps": 1e-8, "weight_decay": 0.01, "clip_norm": 1.0,
        "warmup_ratio": 0.05, "decay": "cosine", "end_lr": 0.0, "groups": {},
    })
    c.train = ml_collections.ConfigDict({
        "batch_size": 8, "epochs": 0, "steps": 40, "log_every": 10, "checkpoint_every": 20,
        "stop_check_every": 10, "max_bad_steps": 5, "keep_checkpoints": 2,
        "early_stopping": {"metric": "", "mode": "min", "patience": 0},
    })
    c.eval = ml_collections.ConfigDict({"every": 20, "every_epochs": 0, "batch_size": 16, "final": True})
    c.aot = ml_collections.ConfigDict({"vocab_size": 1024})  # abstract compiles read no tokenizer
    if variant != "tiny":
        raise ValueError(f"configs/distill_lm.py: unknown variant {variant!r} (tiny)")
    return c
