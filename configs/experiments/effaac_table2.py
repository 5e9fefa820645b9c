"""EffAAC (seed 002) Table 2: the EffNet-Trm student from scratch, with KD_mse and KD_contra, each with and without
audio-only clips; Clotho (the bare config) or AudioCaps (`:audiocaps`). Three seeds, as the paper.

    python -m kdjax.experiment --config=configs/experiments/effaac_table2.py --workdir=experiments/effaac_t2 \
        --config.paths.teacher=runs/m2c_clotho --config.paths.audio_only=data/audio_only.jsonl -- \
        --config.data.source=tfds --config.data.tfds_dir=/data/clotho_tfds \
        --config.student.encoder_checkpoint=/models/effnet_b2_audioset.pt

Data: Clotho or AudioCaps as an array_record dataset, and an audio-only manifest (JSONL {"audio", "id"}: the paper
uses AudioSet/Freesound clips; they stream from disk); teacher: a trained kdjax Multi2Cap workdir (its captions and
embeddings are cached once per clip into its teacher cache). The paired test of footnote 2 asks whether KD_contra
beats the student trained from scratch in FENSE. Variant `smoke` (CI): the `tiny` student from scratch and with
KD_contra from the teacher cache kdjax ships, two seeds.

Variant `mini` (issue 24's experiment 1; benchmarks/EXPERIMENTS.md), the comparison in miniature on clips kdjax
generates, designed before it was run:

    python -m kdjax.experiment --config=configs/experiments/effaac_table2.py:mini --workdir=experiments/effaac_mini

- Data: kdjax.data.synthetic_sounds, 4-s clips whose one or two events (5 kinds, low or high, 1-4 times) the caption
  names. Students (clip seed 0): data-scarce 100 captioned training clips, data-rich 1000; 100 validation, 200 test
  clips; audio-only rows add 1000 uncaptioned clips (data.synthetic.num_audio_only), paired one per labelled clip.
- Teacher: a Multi2Cap captioner of the `smoke` architecture (CED-tiny with LoRA, a 192-wide Q-Former, the real
  SmolLM2-135M-Instruct with LoRA) trained on 5000 captioned clips of another clip seed (1) for one epoch (625 steps of
  8), by the experiment's first row; frozen, its clip embeddings and beam-search captions cached once per clip in
  its workdir (`effaac_cache`), read by every student row. It has heard 50x the captions the scarce student has.
- Student: EffNet-Trm at CPU scale (an EfficientNet-B0 at half width and depth, a 2-layer 64-wide Transformer
  decoder; 0.8 M parameters), 300 steps of 8 labelled (+ 8 audio-only) clips, lr 1e-3, the final parameters
  evaluated (beam 3, at most 12 tokens). Seeds 0, 1, 2 (initialisation, crops and data order).
- Rows, in each regime: from scratch; KD_mse; KD_mse + audio-only; KD_contra; KD_contra + audio-only (L_seq on the
  teacher's captions in every KD row, as the paper).
- Deciding metric: test CIDEr-D (the paper's FENSE needs a checker checkpoint that is not available offline).
  Expected: KD_contra above scratch by more than two pooled standard deviations in the data-scarce regime; the paper
  also has KD_contra >= KD_mse when data is scarce and about equal when rich, and audio-only data helping both.

Its result and diagnosis (benchmarks/EXPERIMENTS.md): KD_contra does not beat scratch here because the embedding L_enc
distils (the mean token of the teacher's random-init CED + LoRA) knows no more than an untrained student; the next
design (a teacher whose CED first learns the events as a tagger) is written there before it is built or run.

Variant `mini_v2` (that second design, written in benchmarks/EXPERIMENTS.md before it was built or run): everything of
`mini` except the teacher's audio encoder, which first learns the events, as the paper's AudioSet-pretrained encoder
knows sound events before captioning:

    python -m kdjax.experiment --config=configs/experiments/effaac_table2.py:mini_v2 --workdir=experiments/effaac_v2

- Stage 1 (a new first row): `configs/audio_tagging.py:synthetic`, CED-tiny (4 blocks, the teacher's) from random
  init tagging the teacher's 5000 clips (clip seed 1) with their events' (kind, pitch) pairs, 625 steps of 16.
- Stage 2: the `mini` teacher with `audio.checkpoint` = stage 1's workdir (its CED frozen + LoRA, as in `mini`).
- Gate, stated before running: a linear probe of the new teacher's clip embedding (what L_enc distils) on the 1000
  audio-only clips must exceed the untrained student's 91.9 kind AUROC (`benchmarks/effaac_diagnosis.py
  --parts=teacher`); otherwise the design has not changed what L_enc distils, and it is stopped and reported there.
- Students, rows, seeds, the deciding metric (test CIDEr-D) and the expected direction: as `mini`.

Its result (benchmarks/EXPERIMENTS.md): the gate passed (kind AUROC 99.2), but every KD row fell below the student from
scratch (KD_contra -7.7 CIDEr-D, scarce): the frozen tagger CED made the teacher's own captions worse (CIDEr-D 337
against 414), and L_seq trains every KD row on them.

Variant `mini_v3` (the third design, written in benchmarks/EXPERIMENTS.md before it was built or run): everything of
`mini_v2` except stage 1's tags, which add each event kind's repetitions (the count the v2 teacher's frozen CED lost):

    python -m kdjax.experiment --config=configs/experiments/effaac_table2.py:mini_v3 --workdir=experiments/effaac_v3

- Stage 1: `configs/audio_tagging.py:synthetic_counts`, CED-tiny tagging the teacher's 5000 clips with their (kind,
  pitch) and (kind, count) pairs (30 tags), 625 steps of 16. Stage 2: the teacher as `mini_v2`'s, on this CED.
- Gate, stated before running, after the tagger and the teacher and before any student: the teacher's test CIDEr-D at
  least v1's 414.24, and its clip embedding's kind AUROC above 91.9 (`benchmarks/effaac_diagnosis.py --parts=teacher`).
  If either fails, the students are not run and that is the result.
- Students, rows, seeds, the deciding metric (test CIDEr-D, KD_contra against scratch with scarce data) and the
  expected direction: as `mini`.

Its result (benchmarks/EXPERIMENTS.md): the gate failed (teacher test CIDEr-D 362.96 < 414.24; kind AUROC 99.51
passed), so no student ran.

Variant `mini_v4` (the fourth design, written in benchmarks/EXPERIMENTS.md before it was built or run): everything of
`mini_v3`, gate included, except the teacher's LoRA on its CED: every linear layer of the blocks (q, k, v, the
attention output, both MLP layers) at rank 32 (alpha 128), instead of q and v at rank 8:

    python -m kdjax.experiment --config=configs/experiments/effaac_table2.py:mini_v4 --workdir=experiments/effaac_v4

Its result: the gate failed again (teacher test CIDEr-D 382.07 < 414.24; kind AUROC 96.85 passed); no student ran.

Variant `mini_v5` (the fifth design, written in benchmarks/EXPERIMENTS.md before it was built or run):
everything of `mini_v4`, gate included, except that the teacher's CED is fine-tuned whole with the captioner
(`audio.train_base`: its base weights trained from the counts tagger's, no adapters on it), and one more student row
in each regime for issue 26 part 5, written before the row was built or run: `KD_contra + word KD`, KD_contra plus
word-level KD (kd.word: weight 1, the teacher's top-32 next-token distributions along its own caption of each clip,
teacher-forced once and moved to the student's words; kdjax.systems.effaac.word_kd). Its comparison: against
KD_contra in the same regime on CIDEr-D (paired over the 3 seeds); expected direction: word KD at or above KD_contra
(the teacher's whole distribution carries more than its beam-search caption), largest with scarce data:

    python -m kdjax.experiment --config=configs/experiments/effaac_table2.py:mini_v5 --workdir=experiments/effaac_v5

Its result: the gate failed a third time (teacher test CIDEr-D 374.13 < 414.24; kind AUROC 97.75 passed); no student
ran.

Variant `mini_v6` (the sixth design, written in benchmarks/EXPERIMENTS.md after v5's gate failed and before this
variant was built or run): everything of `mini_v5` (rows, word-KD row, gate and its thresholds included) except that
the teacher's CED has no tagger stage: it starts from random init, as v1's, and is fine-tuned whole with the captioner
(`audio.train_base`) on the teacher's 5000 captioned clips:

    python -m kdjax.experiment --config=configs/experiments/effaac_table2.py:mini_v6 --workdir=experiments/effaac_v6

Its result: the gate failed on both halves (teacher test CIDEr-D 409.01 < 414.24; its CED mean's kind AUROC 91.61 <
91.9); no student ran.

Variant `mini_word` (issue 26 part 5's row on the teacher that set mini_v5's gate's bar; written 2026-12-07 before
mini_v5's gate was known and before this variant ran; run whatever that gate says): `mini`'s teacher (the random CED
adapted by LoRA: the teacher that set the gate's bar, test CIDEr-D 414.24) and its students, scarce regime only (100
captioned clips), three rows: from scratch, KD_contra, KD_contra + word KD (as mini_v5's). Compared: KD_contra + word
KD against KD_contra on CIDEr-D, paired over seeds 0-2; expected at or above it; reported whichever way it comes out:

    python -m kdjax.experiment --config=configs/experiments/effaac_table2.py:mini_word --workdir=experiments/effaac_word

Variant `mini_ci` (CI): the tiny Multi2Cap teacher and the scarce scratch and KD_contra students, one seed, a few
steps: it checks the experiment runs end to end and produces its table, not its outcome.
"""

import ml_collections

from configs.effaac import SMOKE_TEACHER_CACHE

COLUMNS = (("BLEU4", "bleu_4"), ("ROUGE_L", "rouge_l"), ("METEOR", "meteor"), ("CIDEr", "cider_d"),
           ("SPICE", "spice"), ("FENSE", "fense"))
PAPER = {
    "clotho": {"EffNet-Trm (scratch)": (17.1, 39.4, 18.7, 44.0, 13.1, 46.4),
               "KD_mse": (16.9, 38.6, 18.4, 44.0, 13.0, 48.7),
               "KD_mse + audio-only": (17.5, 38.6, 18.4, 45.9, 13.1, 50.2),
               "KD_contra": (17.7, 38.9, 18.6, 45.4, 12.9, 49.3),
               "KD_contra + audio-only": (17.7, 38.9, 18.5, 46.8, 13.0, 50.2)},
    "audiocaps": {"EffNet-Trm (scratch)": (27.7, 50.2, 24.5, 73.9, 18.1, 61.5),
                  "KD_mse": (28.2, 50.8, 24.9, 78.6, 18.1, 63.3),
                  "KD_mse + audio-only": (28.6, 51.0, 25.0, 78.8, 18.2, 63.6),
                  "KD_contra": (28.4, 50.7, 24.8, 77.8, 18.2, 63.5),
                  "KD_contra + audio-only": (28.6, 50.8, 24.9, 78.5, 18.0, 63.7)},
}


MINI_TEACHER = "teacher (Multi2Cap on 5000 clips)"
MINI_TEACHER_RUN = {  # configs/multi2cap.py:smoke on 5000 synthetic captioned clips of clip seed 1, one epoch
    "data.source": "synthetic",
    "data.synthetic": {"num_train": 5000, "num_validation": 100, "num_test": 200, "seed": 1},
    "teacher.kind": "none", "cfd.weight": 0.0, "train.steps": 625, "train.log_every": 25,
    "train.checkpoint_every": 1000,
}
MINI_METRICS = (("BLEU4", "bleu_4"), ("ROUGE_L", "rouge_l"), ("CIDEr", "cider_d"))
MINI_STUDENT = {  # variant `mini`: EffNet-Trm at CPU scale on synthetic clips (clip seed 0), the teacher's cache
    "data.source": "synthetic", "data.synthetic.num_validation": 100, "data.synthetic.num_test": 200,
    "data.synthetic.seed": 0, "student.encoder": "efficientnet-b0",
    "student.encoder_overrides": {"width_coefficient": 0.5, "depth_coefficient": 0.5, "batch_norm_momentum": 0.9},
    "student.decoder": {"d_model": 64, "num_heads": 4, "ffn_dim": 128, "num_layers": 2, "dropout": 0.1},
    "kd.contra_dim": 64, "train.steps": 300, "train.log_every": 25, "train.checkpoint_every": 1000,
}
MINI_KD = {"teacher.kind": "multi2cap", "teacher.workdir": "{row:%s}" % MINI_TEACHER, "teacher.online": False,
           "teacher.cache_dir": "{row:%s}/effaac_cache" % MINI_TEACHER}


V1_TEACHER_CIDER = 414.24  # `mini`'s teacher's test CIDEr-D (x100): the bar of v3-v5's gate
MINI_TAGGER = "teacher's CED tagging 5000 clips"
MINI_COUNT_TAGGER = "teacher's CED tagging 5000 clips with counts"  # mini_v3's stage 1


# mini_v4: LoRA on every linear layer of the teacher's CED blocks, rank 32 (alpha / rank 4, as the default's 32 / 8)
CED_ALL_LINEAR_LORA = {"targets": (r"(^|\.)q_proj$", r"(^|\.)k_proj$", r"(^|\.)v_proj$", r"attn\.proj$",
                                   r"(^|\.)fc1$", r"(^|\.)fc2$"), "rank": 32, "alpha": 128.0, "dropout": 0.1}


# mini_v5's extra row (issue 26 part 5): KD_contra plus word-level KD on the teacher's top-32 along its captions
WORD_ROW = "KD_contra + word KD"
WORD_KD = {"kd.word.weight": 1.0, "kd.word.top_k": 32}


def mini(e: ml_collections.ConfigDict, ci: bool, tagger: str = "", audio_lora: dict | None = None,
         train_ced: bool = False, word: bool = False, word_only: bool = False) -> None:
    """Issue 24's experiment 1 (see the docstring); `ci` cuts it to a check that it runs; `tagger` (mini_v2:
    'synthetic', mini_v3: 'synthetic_counts'): the teacher's CED first trained as a tagger of the teacher's clips,
    by that variant of configs/audio_tagging.py; `word_only` (mini_word): the scarce regime's scratch, KD_contra and
    word-KD rows only."""
    e.name = "EffAAC in miniature: a Multi2Cap teacher on 5000 clips, EffNet-Trm students on 100 or 1000"
    e.source = "seed 002 Table 2 in miniature (issue 24)"
    e.expect = ("deciding metric CIDEr-D (test); expected: KD_contra above scratch by more than two pooled standard "
                "deviations with scarce data; the paper also has KD_contra >= KD_mse when data is scarce, about equal "
                "when rich, and audio-only data helping both.")
    e.base = "configs/effaac.py:smoke"
    e.seeds = (0,) if ci else (0, 1, 2)
    e.paths = {}
    teacher = dict(MINI_TEACHER_RUN)
    student, kd = dict(MINI_STUDENT), dict(MINI_KD)
    regimes = {"scarce": 100} if word_only else {"scarce": 100, "rich": 1000}
    if ci:
        teacher.update({"data.synthetic": {"num_train": 16, "num_validation": 4, "num_test": 4, "seed": 1},
                        "train.steps": 2})
        student.update({"data.synthetic.num_validation": 4, "data.synthetic.num_test": 4, "train.steps": 2,
                        "data.clip_seconds": 2.0})
        regimes = {"scarce": 8}
    e.rows = [{"name": MINI_TEACHER, "config": "configs/multi2cap.py:%s" % ("tiny" if ci else "smoke"),
               "overrides": teacher, "seeds": (0,)}]
    if tagger:
        e.name += "; the teacher's CED first trained as a tagger" + (" of counts too" if "counts" in tagger else "")
        tag = {"model.depth": 2, "train.steps": 2, "train.batch_size": 4, "data.clip_seconds": 2.0,
               "data.synthetic": {"num_train": 16, "num_validation": 4, "num_test": 4, "seed": 1}} if ci else {}
        stage = MINI_COUNT_TAGGER if "counts" in tagger else MINI_TAGGER
        e.rows = [{"name": stage, "config": f"configs/audio_tagging.py:{tagger}", "overrides": tag,
                   "seeds": (0,), "table": False},
                  {**e.rows[0], "overrides": {**teacher, "audio.checkpoint": "{row:%s}" % stage}}]
    if audio_lora:
        e.name += "; LoRA on all the CED's linear layers"
        e.rows[-1]["overrides"]["audio.lora"] = dict(audio_lora)
    if train_ced:
        e.name += "; the CED fine-tuned whole under the captioner"
        e.rows[-1]["overrides"]["audio.train_base"] = True
    if ("counts" in tagger or train_ced) and not ci:
        # v3-v6's gate: no student runs unless the teacher captions at least as well as v1's (the gate's other half,
        # the embedding probe, is `benchmarks/effaac_diagnosis.py --parts=teacher`: passed in v2-v5, failed in v6)
        e.rows[-1]["gate"] = [("test.cider_d", ">=", V1_TEACHER_CIDER)]
    names = []
    for regime, n in regimes.items():
        data = {**student, "data.synthetic.num_train": n}
        ao = {"data.synthetic.num_audio_only": 8 if ci else 1000}
        rows = [("EffNet-Trm (scratch)", {"kd.enc": "none", "kd.seq_weight": 0.0, "teacher.kind": "none"}),
                ("KD_mse", {"kd.enc": "mse", **kd}), ("KD_mse + audio-only", {"kd.enc": "mse", **kd, **ao}),
                ("KD_contra", {"kd.enc": "contra", **kd}), ("KD_contra + audio-only", {"kd.enc": "contra", **kd, **ao})]
        if word:  # issue 26 part 5
            rows.append((WORD_ROW, {"kd.enc": "contra", **kd, **WORD_KD}))
        if word_only:
            rows = [rows[0], rows[3], rows[5]]
        if ci:
            rows = [rows[0], rows[-1] if word_only else rows[4]]
        for name, over in rows:
            names.append(f"{name}, {regime}")
            e.rows.append({"name": names[-1], "overrides": {**data, **over}})
    e.metrics = [(c, f"test.{p}") for c, p in MINI_METRICS]
    e.paper = [(f"{n}, {r}", {c: v for c, v in zip((c for c, _ in COLUMNS), PAPER["clotho"][n])
                              if c in dict(MINI_METRICS)})
               for r in regimes for n in PAPER["clotho"] if f"{n}, {r}" in names]
    e.compare = [(f"{a}, {r}", f"{b}, {r}", "CIDEr") for r in regimes for a, b in (
        ("KD_contra", "EffNet-Trm (scratch)"), ("KD_mse", "EffNet-Trm (scratch)"), ("KD_contra", "KD_mse"),
        ("KD_contra + audio-only", "KD_contra"), ("KD_mse + audio-only", "KD_mse"),
        ("KD_contra + audio-only", "EffNet-Trm (scratch)"), (WORD_ROW, "KD_contra"))
        if f"{a}, {r}" in names and f"{b}, {r}" in names]
    e.scale = 100.0
    e.figure = {"kind": "bars", "metric": "CIDEr", "title": "EffAAC in miniature: test CIDEr-D"}


def get_config(variant: str = "clotho") -> ml_collections.ConfigDict:
    e = ml_collections.ConfigDict()
    taggers = {"mini": "", "mini_v2": "synthetic", "mini_v3": "synthetic_counts", "mini_v4": "synthetic_counts",
               "mini_v5": "synthetic_counts", "mini_word": "", "mini_v6": ""}
    if variant.removesuffix("_ci") in taggers:
        v = variant.removesuffix("_ci")
        mini(e, variant.endswith("_ci"), tagger=taggers[v], audio_lora=CED_ALL_LINEAR_LORA if v == "mini_v4" else None,
             train_ced=v in ("mini_v5", "mini_v6"), word=v in ("mini_v5", "mini_v6", "mini_word"),
             word_only=v == "mini_word")
        return e
    e.expect = ("deciding metric FENSE (footnote 2's test); the paper claims KD_contra and KD_mse beat the student "
                'from scratch, and audio-only data helps both.')
    e.scale = 100.0
    if variant == "smoke":
        e.name, e.source = "EffAAC: KD against training from scratch", "seed 002 Table 2 (smoke)"
        e.base, e.seeds = "configs/effaac.py:tiny", (0, 1)
        e.paths = {}
        e.rows = [{"name": "EffNet-Trm (scratch)", "overrides": {"kd.enc": "none", "kd.seq_weight": 0.0,
                                                                 "teacher.kind": "none"}},
                  {"name": "KD_contra", "overrides": {"kd.enc": "contra", "teacher.kind": "cache",
                                                      "teacher.cache_dir": SMOKE_TEACHER_CACHE,
                                                      "teacher.online": False}}]
        smoke = dict(zip(("BLEU4", "ROUGE_L", "CIDEr"), ("bleu_4", "rouge_l", "cider_d")))
        e.metrics = [(c, f"test.{p}") for c, p in smoke.items()]
        e.paper = [(n, {c: v for c, v in zip((c for c, _ in COLUMNS), PAPER["clotho"][n]) if c in smoke})
                   for n in ("EffNet-Trm (scratch)", "KD_contra")]
        e.compare = [("KD_contra", "EffNet-Trm (scratch)", "CIDEr")]
    elif variant in PAPER:
        e.name, e.source = f"EffAAC on {'Clotho' if variant == 'clotho' else 'AudioCaps'}", "seed 002 Table 2"
        e.base, e.seeds = "configs/effaac.py:contra", (0, 1, 2)
        e.paths = {"teacher": "", "audio_only": ""}
        kd = {"teacher.kind": "multi2cap", "teacher.workdir": "{path:teacher}"}
        ao = {"data.audio_only_manifest": "{path:audio_only}"}
        e.rows = [{"name": "EffNet-Trm (scratch)", "config": "configs/effaac.py:scratch", "overrides": {}},
                  {"name": "KD_mse", "config": "configs/effaac.py:mse", "overrides": kd},
                  {"name": "KD_mse + audio-only", "config": "configs/effaac.py:mse", "overrides": {**kd, **ao}},
                  {"name": "KD_contra", "overrides": kd},
                  {"name": "KD_contra + audio-only", "overrides": {**kd, **ao}}]
        e.metrics = [(c, f"test.{p}") for c, p in COLUMNS]
        e.paper = [(n, dict(zip((c for c, _ in COLUMNS), v))) for n, v in PAPER[variant].items()]
        e.compare = [("KD_contra", "EffNet-Trm (scratch)", "FENSE"), ("KD_mse", "EffNet-Trm (scratch)", "FENSE"),
                     ("KD_contra + audio-only", "KD_contra", "FENSE")]
    else:
        raise ValueError(f"{__file__}: unknown variant {variant!r} (clotho, audiocaps, smoke, mini, mini_ci, mini_v2, "
                         "mini_v2_ci, mini_v3, mini_v3_ci, mini_v4, mini_v4_ci, mini_v5, mini_v5_ci, mini_word, "
                         "mini_word_ci)")
    e.figure = {"kind": "bars", "metric": "FENSE" if variant != "smoke" else "CIDEr",
                "title": f"{e.source}: {'FENSE' if variant != 'smoke' else 'CIDEr-D'}"}
    return e
