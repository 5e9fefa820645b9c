"""EffAAC end to end: the teacher cache (written once per clip, resumable, importable from another framework's
files), distillation runs on 1 and 8 devices with negatives from the whole batch, captioning, and the student
learning on the embedded set with and without KD."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from configs import effaac as effaac_config
from kdjax.data import captions as caption_data
from kdjax.data import teacher_cache
from kdjax.errors import InputError
from tests import runs

CLIP = os.path.join(runs.REPO, "kdjax/data/assets/real_sounds/audio/tuxpaint__animals__amphibians__frog.flac")


@pytest.fixture(scope="module")
def teacher_workdir(m2c_tiny_run):
    """A (briefly) trained Multi2Cap captioner: the tiny variant, 6 steps. The tests that use it (and the
    cache below) share one xdist worker."""
    return m2c_tiny_run


@pytest.fixture(scope="module")
def cache(teacher_workdir, tmp_path_factory):
    """That teacher's cache of the embedded training clips, written by `--mode=teacher_cache` at batch 4.
    Tests that add to a cache take a copy (`cache_copy`)."""
    d = str(tmp_path_factory.mktemp("cache") / "cache")
    out = runs.run("configs/effaac.py:tiny", str(tmp_path_factory.mktemp("w")), "--mode=teacher_cache",
                   f"--config.teacher.workdir={teacher_workdir}", f"--config.teacher.cache_dir={d}",
                   "--config.teacher.batch_size=4")
    assert f"teacher cache: {d}" in out.stdout
    return d


def cache_copy(cache, tmp_path) -> str:
    return shutil.copytree(cache, str(tmp_path / "cache"))


def tiny(teacher_workdir, cache, **over):
    c = effaac_config.get_config("tiny")
    c.teacher.workdir, c.teacher.cache_dir = teacher_workdir, cache
    for k, v in over.items():
        node = c
        *parents, leaf = k.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = v
    return c


@runs.SHARES_M2C_TINY
@pytest.mark.slow
def test_teacher_cache_once_per_clip_resumable_and_importable(teacher_workdir, cache, tmp_path):
    from kdjax.systems import effaac

    from kdjax.teachers import cache as cache_lib

    full = teacher_cache.read(cache)
    assert len(full) == 86 and full.dim == 192  # every training clip of the embedded set; CED-tiny width
    (meta,) = cache_lib.read_metas(cache)
    assert len(meta["shards"]) == 2  # 64 clips per shard at batch 4

    # a writer killed after its first shard: the re-run computes only the rest, identically
    part = str(tmp_path / "part")
    os.makedirs(part)
    first = meta["shards"][0]["file"]
    for name in (first, first.replace(".array_record", ".ids")):
        os.link(os.path.join(cache, name), os.path.join(part, name))
    with open(os.path.join(part, "meta-h000.json"), "w") as f:
        json.dump({**meta, "shards": meta["shards"][:1], "count": 64}, f)
    effaac.make_teacher_cache(tiny(teacher_workdir, part, **{"teacher.batch_size": 4}), str(tmp_path / "w2"))
    resumed = teacher_cache.read(part)
    assert len(resumed) == 86 and len(cache_lib.read_metas(part)[0]["shards"]) == 2
    for cid in full.index:
        assert resumed.caption(cid) == full.caption(cid)
        np.testing.assert_allclose(resumed.embedding(cid), full.embedding(cid), rtol=1e-5, atol=1e-6)

    # a PyTorch teacher's outputs as JSONL (and .npz) become the same cache
    ids = sorted(full.index)
    jl = tmp_path / "htsat_bart.jsonl"
    jl.write_text("".join(json.dumps({"id": i, "embedding": full.embedding(i).tolist(), "caption": full.caption(i)})
                          + "\n" for i in ids))
    assert teacher_cache.import_file(str(jl), str(tmp_path / "imp")) == 86
    imp = teacher_cache.read(str(tmp_path / "imp"))
    assert imp.caption(ids[3]) == full.caption(ids[3])
    np.testing.assert_array_equal(imp.embedding(ids[3]), full.embedding(ids[3]))
    np.savez(tmp_path / "t.npz", ids=np.array(ids), embeddings=np.stack([full.embedding(i) for i in ids]),
             captions=np.array([full.caption(i) for i in ids]))
    assert teacher_cache.import_file(str(tmp_path / "t.npz"), str(tmp_path / "imp2")) == 86
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "a", "embedding": [1.0], "caption": "x"}) + "\n"
                   + json.dumps({"id": "b", "embedding": "oops", "caption": "y"}) + "\n")
    with pytest.raises(InputError, match=r"bad.jsonl:2: 'embedding'"):
        teacher_cache.import_file(str(bad), str(tmp_path / "imp3"))
    with pytest.raises(InputError, match="lacks 1 clip"):
        teacher_cache.read(str(tmp_path / "imp")).check(ids + ["missing"])


@runs.SHARES_M2C_TINY
@pytest.mark.slow
def test_distillation_on_1_and_8_devices_and_captioning(teacher_workdir, cache, tmp_path):
    """Online contrastive KD + L_seq from the cache: 8 devices (one clip each) give the losses of 1 device,
    which holds only if InfoNCE's negatives come from the whole batch; the trained student captions a file
    (the code path of --mode=caption, in process)."""
    common = (f"--config.teacher.workdir={teacher_workdir}", f"--config.teacher.cache_dir={cache}")
    one, eight = str(tmp_path / "one"), str(tmp_path / "eight")
    runs.run("configs/effaac.py:tiny", one, *common)
    runs.run("configs/effaac.py:tiny", eight, *common, "--config.mesh.data=8", "--config.eval.final=False", devices=8)
    a, b = runs.train_rows(one), runs.train_rows(eight)
    assert [r["step"] for r in a] == list(range(1, 7))
    runs.assert_same_losses(a, b, ("loss", "l_sup", "l_seq", "l_enc"))
    assert all(np.isfinite(r["l_enc"]) and r["l_enc"] > 0 for r in a)
    assert json.load(open(os.path.join(eight, "report.json")))["metrics"] == {}  # eval.final=False
    report = json.load(open(os.path.join(one, "report.json")))
    t = report["info"]["teacher"]  # embeddings from the teacher in the step, captions (L_seq) from its cache
    assert (t["kind"], t["source"], t["cache"], t["examples"], t["dim"]) == ("online", "multi2cap", cache, 86, 192)
    # --mode=caption: the test clips' captions equal the evaluation's (predictions/test.jsonl) where a clip fits the
    # evaluation's crop; a longer clip is captioned whole (its seconds say so), not cropped
    out = tmp_path / "captions.jsonl"
    from kdjax.data import real_sounds

    test = runs.write_manifest(tmp_path / "test.jsonl", [{"audio": r["audio"], "id": r["id"]}
                                                         for r in real_sounds.caption_rows()["test"]])
    runs.run_mode("caption", one, f"--input={CLIP}", f"--input={test}", f"--out={out}")
    rows = [json.loads(l) for l in open(out, encoding="utf-8")]
    assert rows[0]["input"] == CLIP and rows[0]["id"] == os.path.basename(CLIP)
    by_id = {r["id"]: r for r in rows[1:]}
    evaluated = [json.loads(l) for l in open(os.path.join(one, "predictions", "test.jsonl"), encoding="utf-8")]
    assert sorted(by_id) == sorted(e["id"] for e in evaluated)
    clip_seconds = effaac_config.get_config("tiny").data.clip_seconds
    fits = [e for e in evaluated if by_id[e["id"]]["seconds"] <= clip_seconds]
    assert fits and all(by_id[e["id"]]["prediction"] == e["prediction"] for e in fits)
    assert any(r["seconds"] > clip_seconds for r in rows)  # whole, not cropped


@pytest.mark.slow
def test_smoke_run_distils_from_the_shipped_teacher_cache(tmp_path):
    """The smoke variant (EfficientNet-B2 student, fewer steps): every loss term falls and the student's
    captions score; its teacher is the Multi2Cap smoke model's cache that ships with kdjax."""
    wd = str(tmp_path / "smoke")
    runs.run("configs/effaac.py:smoke", wd, "--config.train.steps=24", "--config.train.log_every=1", timeout=1200,
             optimize=True)
    rows = runs.train_rows(wd)
    mean = lambda k, rs: float(np.mean([r[k] for r in rs]))  # batches of 8 one-line captions: noisy steps
    for key, factor in (("l_sup", 0.8), ("l_seq", 0.75), ("l_enc", 0.9)):
        assert mean(key, rows[-5:]) < factor * mean(key, rows[:3]), (key, mean(key, rows[:3]), mean(key, rows[-5:]))
    report = json.load(open(os.path.join(wd, "report.json")))
    assert report["info"]["teacher"]["kind"] == "imported" and report["info"]["teacher"]["dim"] == 192
    assert report["metrics"]["test"]["bleu_1"] > 0.05, report["metrics"]


def test_configs_name_what_is_missing_and_refuse_inconsistent_settings(tmp_path):
    from kdjax.systems import effaac

    for variant in ("contra", "mse"):
        p = runs.run(f"configs/effaac.py:{variant}", str(tmp_path / variant), check=False)
        assert p.returncode != 0 and "--config.data.manifest_file=..." in p.stderr
        assert "--config.teacher.workdir=..." in p.stderr
    c = effaac_config.get_config("tiny")
    c.teacher.kind = "none"
    with pytest.raises(InputError, match="teacher.kind is 'none'"):
        effaac.build(c, str(tmp_path / "x"))
    c = effaac_config.get_config("tiny")
    c.train.freeze = ("decoder", "head")
    with pytest.raises(InputError, match=r"unknown part\(s\) \['head'\]"):
        effaac.frozen_filter(c)


def _one_step(cfg, workdir):
    """Build the task and trainer and take one train step: (trainer, batch, metrics, new state)."""
    import jax

    from kdjax.systems import effaac
    from kdjax.train import sharding as shd
    from kdjax.train.trainer import Trainer

    trainer = Trainer(cfg, effaac.build(cfg, workdir), workdir)
    batch = next(trainer.train_iterator())
    state, metrics = trainer.train_step(trainer.state, trainer.frozen_state, trainer.teacher_state,
                                        shd.global_batch(batch, trainer.mesh))
    return trainer, batch, jax.device_get(metrics), state


@runs.SHARES_M2C_TINY
@pytest.mark.slow
def test_mse_kd_with_audio_only_clips(teacher_workdir, cache, tmp_path):
    """KD_mse with an audio-only manifest: each batch is 8 labelled + 8 audio-only clips; the audio-only ones
    get teacher captions (added to the cache on first use) and enter L_seq and L_enc only."""
    from kdjax.data import real_sounds

    extra = real_sounds.caption_rows()["validation"][:5]
    manifest = tmp_path / "audio_only.jsonl"
    manifest.write_text("".join(json.dumps({"audio": r["audio"], "id": "ao/" + r["id"]}) + "\n" for r in extra))
    cache = cache_copy(cache, tmp_path)
    cfg = tiny(teacher_workdir, cache, **{"kd.enc": "mse", "data.audio_only_manifest": str(manifest)})
    trainer, batch, m, _ = _one_step(cfg, str(tmp_path / "w"))
    assert batch["wave"].shape[0] == batch["ao_wave"].shape[0] == 8
    assert "caption_ids" in batch and "ao_caption_ids" not in batch and "ao_teacher_ids" in batch
    assert len(teacher_cache.read(cache)) == 86 + 5
    assert trainer.task.info["audio_only_clips"] == 5
    np.testing.assert_allclose(m["loss"], m["l_sup"] + m["l_seq"] + m["l_enc"], rtol=1e-5)
    # the MSE projection to the teacher's width is part of the student (the decoder reads it)
    assert trainer.state["params"]["enc_proj"]["kernel"].shape[1] == 192
    assert "student_proj" not in trainer.state["params"]


@runs.SHARES_M2C_TINY
@pytest.mark.slow
def test_word_level_kd_reads_the_teachers_distributions_along_its_own_captions(teacher_workdir, cache, tmp_path):
    """kd.word (issue 26 part 5): the teacher's top-k along its cached caption of each clip is written once beside
    the caption cache, teacher-forced by the Multi2Cap teacher (the row of one clip is the top-k of the teacher's own
    logits on it), and grows with clips added later; the batch carries it at the student's words (here both
    vocabularies are words, so every word is aligned and only EOS is not); the loss adds w x L_word."""
    import jax.numpy as jnp

    from kdjax.data import tokenizers
    from kdjax.systems import effaac
    from kdjax.systems.effaac import teacher as teacher_lib
    from kdjax.teachers import cache as cache_lib
    from kdjax.teachers import topk

    from kdjax.data import real_sounds

    # a 6-step teacher captions every clip '' (EOS alone): its caption cache is given the references instead (as a
    # teacher from another framework would be imported) so that there are words to distil along
    full = teacher_cache.read(cache)
    refs = {r["id"]: r["captions"][0] for r in real_sounds.caption_rows()["train"]}
    jl = tmp_path / "captions.jsonl"
    jl.write_text("".join(json.dumps({"id": i, "embedding": full.embedding(i).tolist(), "caption": refs[i]}) + "\n"
                          for i in full.index))
    cache = str(tmp_path / "cache")
    assert teacher_cache.import_file(str(jl), cache) == 86
    cfg = tiny(teacher_workdir, cache, **{"kd.word.weight": 0.5, "kd.word.top_k": 8})
    trainer, batch, m, _ = _one_step(cfg, str(tmp_path / "w"))
    wdir = cache + "_word_top8"
    rows = cache_lib.OutputCache(wdir)
    assert len(rows.index) == 86 and trainer.task.info["kd"]["word"]["cache"] == wdir
    stats = trainer.task.info["kd"]["word"]
    stok = tokenizers.load(str(tmp_path / "w" / "tokenizer"))
    cap_len = cfg.data.max_caption_tokens
    words = sum(min(len(stok(refs[i], add_special_tokens=False)["input_ids"]), cap_len) for i in full.index)
    assert stats["clips"] == 86 and stats["aligned_tokens"] == words  # every word L_seq reads, not EOS
    assert 0.0 < stats["mean_mapped_mass"] <= 1.0

    teacher, ttok = effaac.load_teacher(cfg)
    ids, clips = teacher_lib._clips(cfg, teacher)
    captions = teacher_cache.read(cache)
    wave, mask = clips(ids[:1])
    n = 2 * cfg.data.max_caption_tokens
    cap, lens = tokenizers.encode_captions(ttok, [captions.caption(ids[0])], n)
    logits = teacher.model(wave[:1], mask[:1], jnp.asarray(cap), jnp.asarray(np.arange(n)[None] < lens[:, None]))
    want_lp, want_ids, _ = (np.asarray(a) for a in topk.top_k(logits["logits"], 8))
    got = rows.get(ids[0])
    assert len(got[topk.IDS]) == lens[0]  # the caption's tokens and its EOS
    np.testing.assert_array_equal(got[topk.IDS], want_ids[0, :lens[0]])
    np.testing.assert_allclose(got[topk.LOGPROBS].astype(np.float32), want_lp[0, :lens[0]], atol=2e-3)

    # audio-only clips added later: both caches grow by them, the rows already written stay
    extra = real_sounds.caption_rows()["validation"][:3]
    manifest = runs.write_manifest(tmp_path / "ao.jsonl", [{"audio": r["audio"], "id": "ao/" + r["id"]} for r in extra])
    grow = tiny(teacher_workdir, cache,
                **{"kd.word.weight": 0.5, "kd.word.top_k": 8, "data.audio_only_manifest": manifest})
    effaac.make_teacher_cache(grow, str(tmp_path / "w2"))
    grown = cache_lib.OutputCache(wdir)
    assert len(grown.index) == 86 + 3 and len(teacher_cache.read(cache)) == 86 + 3
    np.testing.assert_array_equal(grown.get(ids[0])[topk.IDS], got[topk.IDS])

    words = (batch["teacher_mask"] * (batch["teacher_ids"] != stok.eos_token_id)).sum(-1)
    # every word of the teacher's caption that L_seq reads, not EOS
    assert (batch["word_mask"].sum(-1) == words).all() and (batch["word_mask"] <= batch["teacher_mask"]).all()
    assert m["l_word"] > 0
    np.testing.assert_allclose(m["loss"], m["l_sup"] + m["l_seq"] + m["l_enc"] + 0.5 * m["l_word"], rtol=1e-5)


@runs.SHARES_M2C_TINY
def test_contra_kd_with_synthetic_labelled_and_audio_only_clips(teacher_workdir, tmp_path):
    """data.source='synthetic' with data.synthetic.num_audio_only: the teacher captions every generated training and
    audio-only clip once (made again when its batch is computed, never all held), and each batch pairs labelled
    clips with audio-only ones that carry the teacher's captions."""
    from kdjax.systems.effaac import pipeline

    cache = str(tmp_path / "cache")
    cfg = tiny(teacher_workdir, cache, **{"data.source": "synthetic", "teacher.online": False,
                                          "data.synthetic": {"num_train": 10, "num_validation": 2, "num_test": 2,
                                                             "seed": 0, "num_audio_only": 6}})
    rows, skipped = pipeline.audio_only_rows(cfg)
    assert skipped == [] and [r["id"] for r in rows] == [f"synthetic-audio_only-{i}" for i in range(6)]
    ao = pipeline.audio_only_wave(rows[2], 16000)
    assert np.array_equal(ao, pipeline.audio_only_wave(rows[2], 16000))  # made again, identical
    train = caption_data.sources(cfg.data)[0]["train"]
    assert all(not np.array_equal(ao, train[i]["wave"]) for i in range(len(train)))  # not a labelled clip
    trainer, batch, m, _ = _one_step(cfg, str(tmp_path / "w"))
    assert len(teacher_cache.read(cache)) == 10 + 6 and trainer.task.info["audio_only_clips"] == 6
    assert batch["wave"].shape[0] == batch["ao_wave"].shape[0] == 8 and "ao_teacher_ids" in batch
    assert "ao_teacher_emb" in batch  # cached embeddings (teacher.online=False) for the audio-only clips too
    np.testing.assert_allclose(m["loss"], m["l_sup"] + m["l_seq"] + m["l_enc"], rtol=1e-5)


@runs.SHARES_M2C_TINY
@pytest.mark.slow
def test_table1_teacher_encoder_in_the_student_then_frozen_decoder(teacher_workdir, cache, tmp_path):
    """Row 2: the frozen teacher encoder feeds a decoder trained from scratch (nothing of the teacher is
    trained or saved). Row 3: that decoder, frozen, under a fresh EfficientNet (only the encoder and the
    decoder's memory projection train)."""
    from kdjax.models.state import flatten
    from kdjax.train.trainer import Trainer
    from kdjax.systems import effaac

    row2 = str(tmp_path / "row2")
    cfg2 = tiny(teacher_workdir, cache, **{"student.memory": "teacher", "kd.enc": "none",
                                           "kd.seq_weight": 0.0, "train.steps": 2})
    Trainer(cfg2, effaac.build(cfg2, row2), row2).run()
    trained2 = runs.final_params(row2)
    assert not any(k.startswith("external_encoder") for k in trained2)
    assert any(k.startswith("decoder.layers.") for k in trained2)

    cfg3 = tiny(teacher_workdir, cache, **{"student.init_from": row2, "train.freeze": ("decoder",),
                                           "kd.enc": "none", "kd.seq_weight": 0.0})
    trainer, _, m, state = _one_step(cfg3, str(tmp_path / "row3"))
    trainable = flatten(state["params"])
    assert any(k.startswith("encoder.") for k in trainable) and any(k.startswith("decoder.memory_proj") for k in
                                                                    trainable)
    assert not any(k.startswith("decoder.layers.") or k.startswith("decoder.embed") for k in trainable)
    frozen = flatten(trainer.frozen_state)
    for k, v in frozen.items():  # row 2's trained decoder, unchanged
        np.testing.assert_array_equal(np.asarray(v), trained2[k], err_msg=k)
    assert np.isfinite(m["loss"])
