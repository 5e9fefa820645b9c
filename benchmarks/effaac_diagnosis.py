"""Why encoder-level KD does not help in issue 24's EffAAC experiment: the measurements of benchmarks/EXPERIMENTS.md's
diagnosis, from a finished `effaac_table2.py:mini` experiment directory.

- probe: does the teacher's clip embedding (what L_enc distils) know what the students lack? Logistic regressions,
  5-fold cross-validated on the audio-only clips (clip seed 0, part 3: the 1000 clips the audio-only rows add, whose
  teacher embeddings and captions those rows cache; their events are known to the generator), predict what a
  caption names: each event
  kind's presence and each (kind, pitch) pair's (mean AUROC), and the repetitions of one-event clips (accuracy, 4
  classes). Inputs compared on the same clips: the teacher's cached embedding, the clip's mean and std log-mel
  spectrum (no learning at all), and the pooled encoder output of a random-init student and of the trained students
  (seed `--seed`, data-scarce); and the teacher's own later views (its Q-Former's output, the audio tokens its
  LLaMA reads), recomputed from the teacher run.
- captions: what each trained student gets right on the test clips (and the teacher, on its cached captions of the
  audio-only clips: the pseudo-captions those rows learn from): the set of event kinds, and, for each kind it names correctly, its pitch and count.
- gradients at step 0 (one batch of 8, one dropout draw for both) and at the KD_contra run's final parameters: the norms of
  L_sup + L_seq's and w_enc * L_enc's gradients on the student's encoder, their cosine, and Adam's view (on each
  coordinate the caption losses reach, the share of their normalised step they keep once L_enc shares it).

Prints one JSON line.

    python benchmarks/effaac_diagnosis.py --experiment=experiments/effaac_mini [--seed=0] [--clips=1000]

`--parts=teacher` needs only the teacher's run (no student, no cache): the `mini_v2` design's gate, probed before
any student runs, and what the teacher's own test captions get right.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from kdjax.data import teacher_cache, tokenizers
from kdjax.data.synthetic_sounds import KINDS, SyntheticSounds
from kdjax.experiment import spec
from kdjax.systems import effaac
from kdjax.systems.effaac.student import load_trained
from kdjax.train.restore import restore_trained, workdir_config

TEACHER = "teacher (Multi2Cap on 5000 clips)"
ROWS = ("EffNet-Trm (scratch)", "KD_mse", "KD_contra", "KD_contra + audio-only")
_COUNTS = {"once": 1, "twice": 2, "three times": 3, "four times": 4}
# the students' word-level tokenizer splits "low-pitched" into three words, decoded "low - pitched"
_EVENT = re.compile(r"(low|high)\s*-\s*pitched (%s) (%s)" % ("|".join(KINDS), "|".join(_COUNTS)))


def events_of(text: str) -> dict[str, tuple[str, int]]:
    """{kind: (pitch, count)} named by a caption in synthetic_sounds' grammar (unparsable parts ignored)."""
    return {k: (p, _COUNTS[c]) for p, k, c in _EVENT.findall(text.lower())}


def probe(x: np.ndarray, events: list[list[dict]]) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=1.0))  # noqa: E731

    def auroc(labels: np.ndarray) -> float:
        p = cross_val_predict(clf(), x, labels, cv=5, method="predict_proba")[:, 1]
        return float(roc_auc_score(labels, p))

    kinds = np.array([[any(e["kind"] == k for e in evs) for k in KINDS] for evs in events], np.int32)
    pairs = np.array([[any(e["kind"] == k and e["pitch"] == p for e in evs) for k in KINDS for p in ("low", "high")]
                      for evs in events], np.int32)
    one = np.array([len(evs) == 1 for evs in events])
    counts = np.array([evs[0]["count"] for evs in events])[one]
    acc = float(np.mean(cross_val_predict(clf(), x[one], counts, cv=5) == counts))
    return {"kind_auroc": round(100 * np.mean([auroc(kinds[:, j]) for j in range(kinds.shape[1])]), 2),
            "kind_pitch_auroc": round(100 * np.mean([auroc(pairs[:, j]) for j in range(pairs.shape[1])
                                                     if 0 < pairs[:, j].sum() < len(pairs)]), 2),
            "count_acc_one_event": round(100 * acc, 2)}


def log_mel_stats(waves: np.ndarray, sr: int) -> np.ndarray:
    import librosa

    mel = np.log(librosa.feature.melspectrogram(y=waves, sr=sr, n_fft=1024, hop_length=160, n_mels=64) + 1e-6)
    return np.concatenate([mel.mean(-1), mel.std(-1)], -1)


def pooled(model, waves: np.ndarray, fn=lambda m, w: m.encode(w, jnp.ones(w.shape, jnp.int32))["pooler_output"]
           ) -> np.ndarray:
    """fn(model, waves) over batches of 50 clips, jitted."""
    gdef, state = nnx.split(model)
    run = jax.jit(lambda s, w: fn(nnx.merge(gdef, s), w))
    return np.concatenate([np.asarray(run(state, jnp.asarray(waves[i:i + 50]))) for i in range(0, len(waves), 50)])


def teacher_features(run_dir: str, waves: np.ndarray) -> dict[str, np.ndarray]:
    """The Multi2Cap teacher's own views of the clips: its CED's mean token (what the cache holds and L_enc
    distils), its Q-Former's mean query output and the projected audio tokens' mean (what its LLaMA reads)."""
    from kdjax.models.layers import masked_mean
    from kdjax.systems import multi2cap

    model, _ = multi2cap.load_trained(workdir_config(run_dir), run_dir)
    ones = lambda w: jnp.ones(w.shape, jnp.int32)  # noqa: E731

    def qformer_mean(m, w):
        enc = m.audio_encoder(w, ones(w))
        q = m.qformer(enc["last_hidden_state"], enc["token_mask"])
        return masked_mean(q["last_hidden_state"], q["token_mask"])

    def projected_mean(m, w):
        a = m.encode_audio(w, ones(w))
        return masked_mean(a["audio_tokens"].astype(jnp.float32), a["audio_mask"])

    return {"teacher CED mean (recomputed)": pooled(model, waves, lambda m, w: m.audio_encoder(w, ones(w))[
                "pooler_output"]),
            "teacher Q-Former mean": pooled(model, waves, qformer_mean),
            "teacher projected audio tokens mean": pooled(model, waves, projected_mean)}


def caption_scores(texts: list[str], refs: list[dict[str, tuple[str, int]]]) -> dict[str, float]:
    kinds_exact, pitch, count, named = 0, 0, 0, 0
    for t, ref in zip(texts, refs):
        got = events_of(t)
        kinds_exact += set(got) == set(ref)
        for k in set(got) & set(ref):
            named += 1
            pitch += got[k][0] == ref[k][0]
            count += got[k][1] == ref[k][1]
    return {"kinds_exact": round(100 * kinds_exact / len(texts), 2),
            "pitch_of_named": round(100 * pitch / max(named, 1), 2),
            "count_of_named": round(100 * count / max(named, 1), 2)}


def gradients(task, model, batch: dict[str, np.ndarray]) -> dict[str, float]:
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    # pure arrays, as the trainer's step holds them: merging Variables made outside the trace would make the
    # batch-norm update inside jax.grad a mutation of an outer object
    params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)

    def terms(p):
        # the same dropout key in both: the two gradients are of one forward (batch-norm statistics of the batch)
        _, aux = task.loss_fn(nnx.merge(graphdef, p, rest), None, batch, nnx.Rngs(dropout=0))
        return aux

    def caption(p):
        a = terms(p)
        return a["l_sup"] + a.get("l_seq", 0.0)

    def enc(p):
        return terms(p)["l_enc"]

    enc_only = lambda g: np.concatenate([  # noqa: E731  the student's audio encoder, which both reach
        np.asarray(v).ravel() for k, v in jax.tree_util.tree_flatten_with_path(g)[0]
        if jax.tree_util.keystr(k).startswith("['encoder']")])
    c, e = enc_only(jax.jit(jax.grad(caption))(params)), enc_only(jax.jit(jax.grad(enc))(params))
    nz = c != 0
    keep = np.abs(c[nz]) / np.sqrt(c[nz] ** 2 + e[nz] ** 2)
    return {"caption_norm": float(np.linalg.norm(c)), "enc_norm": float(np.linalg.norm(e)),
            "ratio": float(np.linalg.norm(e) / np.linalg.norm(c)),
            "cosine": float(c @ e / np.linalg.norm(c) / np.linalg.norm(e)),
            "adam_caption_share_median": float(np.median(keep)), "adam_caption_share_mean": float(np.mean(keep))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--experiment", required=True, help="a finished effaac_table2.py:mini experiment directory")
    ap.add_argument("--seed", type=int, default=0, help="the students' seed whose runs are measured")
    ap.add_argument("--clips", type=int, default=1000, help="audio-only clips (seed 0) the probes are fitted on")
    ap.add_argument("--parts", default="probe,teacher,captions,gradients",
                    help="which measurements: probe (cache, log-mel, students), teacher (its later views), captions, "
                         "gradients")
    a = ap.parse_args()
    parts = set(a.parts.split(","))
    run = lambda row: os.path.join(a.experiment, "runs", spec.slug(row), f"seed{a.seed}")  # noqa: E731
    teacher_run = os.path.join(a.experiment, "runs", spec.slug(TEACHER), "seed0")
    ids = [f"synthetic-audio_only-{i}" for i in range(a.clips)]
    students = bool(parts - {"teacher"})
    if students:
        cache = teacher_cache.read(os.path.join(teacher_run, "effaac_cache"))
        cache.check(ids)
    cfg = workdir_config(run("KD_contra, scarce") if students else teacher_run)
    sr = int(cfg.data.sample_rate)
    # the audio-only clips are part 3 of the students' clip seed 0 (kdjax.data.captions._synthetic)
    src = SyntheticSounds(a.clips, seed=4 * (int(cfg.data.synthetic.seed) if students else 0) + 3,
                          seconds=float(cfg.data.clip_seconds), sample_rate=sr)
    clips = [src[i] for i in range(a.clips)]
    waves, events = np.stack([c["wave"] for c in clips]), [c["events"] for c in clips]
    result = {"benchmark": "effaac_diagnosis", "experiment": os.path.abspath(a.experiment), "seed": a.seed,
              "clips": a.clips, "parts": sorted(parts), "probe": {}, "captions": {}}
    if "probe" in parts:
        result["probe"]["teacher embedding"] = probe(np.stack([cache.embedding(i) for i in ids]), events)
        result["probe"]["log-mel mean+std"] = probe(log_mel_stats(waves, sr), events)
    if "teacher" in parts:
        for name, x in teacher_features(teacher_run, waves).items():
            result["probe"][name] = probe(x, events)
        with open(os.path.join(teacher_run, "predictions", "test.jsonl"), encoding="utf-8") as f:
            rows = [json.loads(line) for line in f]
        result["captions"]["teacher (its test captions)"] = caption_scores(
            [r["prediction"] for r in rows], [events_of(r["references"][0]) for r in rows])
    if not students:
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as tmp:
        task = effaac.build(cfg, os.path.join(tmp, "kd"))
        if "probe" in parts:
            result["probe"]["student, random init"] = probe(pooled(task.model, waves), events)
        refs = {}
        for row in ROWS:
            r = run(f"{row}, scarce")
            if not os.path.isdir(r):
                continue
            rcfg = workdir_config(r)
            model, tok = load_trained(rcfg, r)
            if "probe" in parts:
                result["probe"][f"student {row}"] = probe(pooled(model, waves), events)
            test = SyntheticSounds(int(rcfg.data.synthetic.num_test), seed=4 * int(rcfg.data.synthetic.seed) + 2,
                                   seconds=float(rcfg.data.clip_seconds), sample_rate=sr)
            refs = refs or {i: events_of(test.caption(i)) for i in range(len(test))}
            pred = np.load(os.path.join(r, "predictions", "test.npz"))
            texts = tokenizers.text_decoder(tok)(pred["tokens"])
            result["captions"][row] = caption_scores(texts, [refs[int(i)] for i in pred["index"]])
        result["captions"]["teacher (its cached captions of the audio-only clips)"] = caption_scores(
            [cache.caption(i) for i in ids], [events_of(src.caption(i)) for i in range(a.clips)])
        if "captions" not in parts:
            result.pop("captions")
        if "gradients" in parts:
            batch = {k: jnp.asarray(np.stack([task.train_transform(task.train_data[i], np.random.default_rng(i))[k]
                                              for i in range(8)])) for k in task.batch_spec}
            result["gradients_step0"] = gradients(task, task.model, batch)
            trained = restore_trained(cfg, task.model, task.frozen, run("KD_contra, scarce"))
            result["gradients_trained"] = gradients(task, trained, batch)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
