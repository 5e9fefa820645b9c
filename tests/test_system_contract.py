"""The system contract: the registry, `validate` (every problem named by its config key, before any device
work) and the one description of a batch that the input pipeline, the abstract compile and the trainer share."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from kdjax.systems import checks, contract, registry
from kdjax.train import batch as batch_lib
from tests import overrides, runs


def _configs(module: str, variant: str):
    import importlib

    return importlib.import_module(f"configs.{module}").get_config(variant)


def problems(cfg, **kw) -> list[str]:
    try:
        registry.validate(cfg, **kw)
    except checks.ConfigError as e:
        return e.problems
    return []


def keys(found: list[str]) -> set[str]:
    return {p.split(":")[0] for p in found}


# ------------------------------------------------------------------------------------------- registry
def test_every_system_keeps_the_contract():
    assert set(registry.names()) == {"dsg_kd", "audio_tagging", "multi2cap", "effaac", "distill_lm"}
    for name in registry.names():
        system = registry.get(name)
        assert isinstance(system, contract.System) and system.name == name
        for cap in system.capabilities:
            assert callable(getattr(system, {"caption": "predictor", "predict": "predictor",
                                             "teacher_cache": "make_teacher_cache", "cost": "cost_model",
                                             "export": "export"}[cap]))
    assert registry.get("multi2cap").supports(contract.CAPTION) and registry.get("effaac").supports(contract.CAPTION)
    assert registry.get("dsg_kd").supports(contract.PREDICT) and registry.get("audio_tagging").supports(contract.PREDICT)
    assert registry.get("effaac").supports(contract.TEACHER_CACHE)
    assert not registry.get("dsg_kd").supports(contract.CAPTION) and registry.get("dsg_kd").supports(contract.EXPORT)
    assert registry.get("effaac").supports(contract.COST) and not registry.get("dsg_kd").supports(contract.COST)
    with pytest.raises(checks.ConfigError, match="'bert_kd' is not one of"):
        registry.get("bert_kd")


def test_a_capability_must_be_implemented():
    fns = dict(validate=print, batch_spec=print, build=print, abstract_task=print)
    with pytest.raises(TypeError, match="declares 'caption' but has no predictor"):
        contract.System("broken", capabilities={contract.CAPTION}, **fns)
    with pytest.raises(TypeError, match="has predictor\\(\\) but does not declare 'caption or predict'"):
        contract.System("silent", predictor=print, **fns)
    with pytest.raises(TypeError, match="has make_teacher_cache\\(\\) but does not declare 'teacher_cache'"):
        contract.System("quiet", make_teacher_cache=print, **fns)
    with pytest.raises(TypeError, match="unknown capabilities"):
        contract.System("odd", capabilities={"export_to_onnx"}, **fns)


def test_every_batch_spec_follows_from_the_config_alone():
    """The contract's batch_spec(cfg) needs no built model: the sizes default to the configs' architectures."""
    for module, variant in (("dsg_kd", "tiny"), ("audio_tagging", "real_sounds"), ("multi2cap", "tiny"),
                            ("effaac", "smoke"), ("distill_lm", "tiny")):
        cfg = _configs(module, variant)
        system = registry.get(cfg.system)
        _, batch = system.abstract_task(cfg)
        spec = system.batch_spec(cfg)
        assert {k: (tuple(v.shape[1:]), np.dtype(v.dtype)) for k, v in batch.items()} == \
            {k: (f.shape, f.dtype) for k, f in spec.items()}


# ------------------------------------------------------------------------------------------- validate
@pytest.mark.parametrize("module, variant", [("dsg_kd", "tiny"), ("dsg_kd", "smoke"), ("audio_tagging", "real_sounds"),
                                             ("multi2cap", "tiny"), ("multi2cap", "smoke"), ("effaac", "smoke"),
                                             ("distill_lm", "tiny")])
def test_shipped_variants_validate(module, variant):
    assert problems(_configs(module, variant)) == []


SHARED_BAD = {  # the loop's numbers, the same for every system
    "train.batch_size": 0, "train.steps": -5, "optim.warmup_ratio": 1.0, "optim.lr": -1e-3,
    "train.log_every": 0, "train.keep_checkpoints": 0, "eval.batch_size": -8, "train.early_stopping.mode": "maximum",
    "optim.decay": "step", "mesh.fsdp": 0,
}

SYSTEM_BAD = {
    "dsg_kd": {"data.source": "csv", "kd.attn_keys": "token", "kd.attn_heads": "all", "kd.layer_map": "0-0,1-2",
               "student.classifier_head": "mlp", "data.on_bad_input": "ignore", "data.domain_words": "greek",
               "kd.alpha": -0.5, "data.max_words": 0, "student.tokenizer": "wordpiece:x",
               "train.early_stopping.metric": "bleu_4", "data.num_labels": 3, "data.unlabelled.num_synthetic": -2},
    "audio_tagging": {"data.source": "folder", "model.arch": "ced_huge", "train.label_smoothing": 1.5,
                      "data.clip_seconds": 0.0, "train.early_stopping.metric": "auroc"},
    "multi2cap": {"teacher.kind": "clip", "cfd.loss": "kl", "cfd.negatives": "semi_hard", "audio.chunk_mode": "pool",
                  "cfd.audio_feature": "decoder_mean", "decoder.dtype": "int8", "eval.tokenization": "nltk",
                  "eval.metrics": ("bleu_1", "cider", "cider_d"), "eval.unavailable_metrics": "ignore",
                  "audio.lora.rank": 0, "cfd.weight": -1.0, "data.source": "hub"},
    "effaac": {"kd.enc": "kl", "student.memory": "shared", "teacher.kind": "htsat",
               "student.encoder": "efficientnet-b9",
               "train.freeze": ("encoder", "head"), "kd.label_smoothing": 1.0, "aot.teacher_arch": "ced_giant",
               "data.max_caption_tokens": 1, "kd.word.weight": -1.0},
    "distill_lm": {"data.source": "hub", "data.length": 1, "kd.kind": "kl", "kd.source": "disk", "kd.top_k": 0,
                   "kd.temperature": 0.0, "student.from_teacher_layers": -1, "kd.chunk_tokens": -1},
}
BASE = {"dsg_kd": "tiny", "audio_tagging": "real_sounds", "multi2cap": "tiny", "effaac": "smoke", "distill_lm": "tiny"}


@pytest.mark.parametrize("system", sorted(BASE))
def test_each_bad_value_is_named_by_its_key(system):
    """Every bad option string, number and combination at once: one message, one line per key."""
    cfg = _configs(system, BASE[system])
    bad = {**SHARED_BAD, **SYSTEM_BAD[system]}
    for k, v in bad.items():
        overrides.set_key(cfg, k, v)
    found = problems(cfg)
    missed = set(bad) - keys(found)
    assert not missed, (missed, found)
    # one at a time, each is caught on its own too (no problem hides behind another)
    for k, v in bad.items():
        one = _configs(system, BASE[system])
        overrides.set_key(one, k, v)
        assert k in keys(problems(one)), (k, v, problems(one))


def test_incompatible_options_and_missing_paths(tmp_path):
    # Multi2Cap: an image loss on a dataset without images (a manifest row with no picture), and no teacher
    manifest = tmp_path / "clips.jsonl"
    manifest.write_text(json.dumps({"audio": "a.wav", "caption": "a dog barks", "split": "train"}) + "\n")
    cfg = _configs("multi2cap", "tiny")
    overrides.set_key(cfg, "data.source", "manifest")
    overrides.set_key(cfg, "data.manifest_file", str(manifest))
    found = problems(cfg)
    assert any(p.startswith("cfd.weight: lambda = 0.5 needs a picture of every training clip") and "clips.jsonl:1" in p
               for p in found), found
    overrides.set_key(cfg, "teacher.kind", "none")
    assert any("teacher.kind is 'none'" in p for p in problems(cfg))
    overrides.set_key(cfg, "cfd.weight", 0.0)
    assert problems(cfg) == []  # LOAE on an image-less dataset is fine
    # paths that are set must exist; `require`d ones must be set
    cfg = _configs("multi2cap", "tiny")
    overrides.set_key(cfg, "audio.checkpoint", str(tmp_path / "ced_base.pt"))
    overrides.set_key(cfg, "teacher.checkpoint", str(tmp_path))  # a directory without config.json
    found = problems(cfg)
    assert any(p.startswith("audio.checkpoint: path not found") for p in found), found
    assert any(p.startswith("teacher.checkpoint:") and "has no config.json" in p for p in found), found
    # EffAAC: the teacher's encoder as the student's memory excludes encoder KD; a cache must exist
    cfg = _configs("effaac", "smoke")
    overrides.set_key(cfg, "student.memory", "teacher")
    assert any(p.startswith("student.memory: 'teacher' reads the teacher's encoder: set kd.enc='none'")
               for p in problems(cfg))
    cfg = _configs("effaac", "smoke")
    overrides.set_key(cfg, "teacher.cache_dir", str(tmp_path / "nowhere"))
    assert "teacher.cache_dir" in keys(problems(cfg))
    # DSG-KD's paper variant names every path it needs, each once
    found = problems(_configs("dsg_kd", "paper"))
    for key in ("teacher.hf_dir", "student.hf_dir", "data.train_file", "data.dev_file", "data.test_file"):
        assert sum(p.startswith(f"{key}: must be set") for p in found) == 1, found
    # an abstract compile reads no file: none of that is asked
    assert problems(_configs("dsg_kd", "paper"), paths=False) == []


# --------------------------------------------------------------------------------- metric availability
def _caption_cfg(**over):
    cfg = _configs("multi2cap", "tiny")
    for k, v in over.items():
        overrides.set_key(cfg, k.replace("__", "."), v)
    return cfg


def test_unavailable_metrics_stop_before_training(tmp_path, monkeypatch):
    """Each metric whose tool is hidden is named with what to install or set; with the tools present the same
    config passes."""
    spice = tmp_path / "spice"
    (spice / "lib").mkdir(parents=True)
    for f in ("spice-1.0.jar", "lib/stanford-corenlp-3.6.0.jar", "lib/stanford-corenlp-3.6.0-models.jar"):
        (spice / f).write_bytes(b"")
    echecker, model_dir = tmp_path / "echecker.ckpt", tmp_path / "bert"
    echecker.write_bytes(b"")
    model_dir.mkdir()
    tools = {"spice_jar": str(spice / "spice-1.0.jar"), "echecker": str(echecker), "echecker_model_dir": str(model_dir)}
    everything = ("bleu_1", "rouge_l", "meteor", "cider_d", "spice", "spider", "spider_fl", "sbert", "fense", "fer")
    base = dict(eval__metrics=everything, eval__tokenization="ptb", train__early_stopping__metric="spider")
    assert problems(_caption_cfg(**base, eval__metric_config=tools)) == []  # every tool present

    no_tools = problems(_caption_cfg(**base))  # no SPICE libraries, no FENSE checker
    text = "\n".join(no_tools)
    assert "'spice', 'spider', 'spider_fl' cannot be computed" in text and "stanford-corenlp-3.6.0.jar" in text
    assert "'spider_fl', 'fense', 'fer' cannot be computed" in text or "'fense', 'fer'" in text
    assert "train.early_stopping.metric: 'spider' cannot be computed" in text

    monkeypatch.setenv("KDJAX_JAVA", str(tmp_path / "no-java"))  # Java hidden: METEOR, SPICE and PTB go
    text = "\n".join(problems(_caption_cfg(**base, eval__metric_config=tools)))
    assert "eval.tokenization: 'ptb' cannot run on this install: Java is needed" in text
    assert "'meteor', 'spice', 'spider', 'spider_fl' cannot be computed on this install: Java is needed" in text
    monkeypatch.delenv("KDJAX_JAVA")

    hidden = {**tools, "sbert_model": str(tmp_path / "no-sbert")}  # Sentence-BERT hidden
    text = "\n".join(problems(_caption_cfg(**base, eval__metric_config=hidden)))
    assert "'sbert', 'fense' cannot be computed on this install: no Sentence-BERT model" in text


def test_unavailable_metrics_dropped_when_asked():
    cfg = _caption_cfg(eval__metrics=("bleu_1", "cider_d", "spice", "spider"), train__early_stopping__metric="spider",
                       eval__unavailable_metrics="drop")
    out, notes = registry.validate(cfg)
    assert tuple(out.eval.metrics) == ("bleu_1", "cider_d") and out.train.early_stopping.metric == "cider_d"
    assert any("dropped ['spice', 'spider']" in n for n in notes)
    assert any("train.early_stopping.fallback='cider_d'" in n for n in notes)
    assert tuple(cfg.eval.metrics) == ("bleu_1", "cider_d", "spice", "spider")  # the caller's config is untouched
    overrides.set_key(cfg, "train.early_stopping.fallback", "spice")
    assert any(p.startswith("train.early_stopping.fallback: 'spice' is not among the computable")
               for p in problems(cfg))


VALIDATE_IN_A_FRESH_PROCESS = textwrap.dedent("""
    import json, sys
    from configs import {module} as m
    from kdjax.systems import checks, registry
    cfg = m.get_config("{variant}")
    with cfg.unlocked():
        cfg.train.batch_size = 0
        cfg.train.steps = -5
    try:
        registry.validate(cfg)
        problems = []
    except checks.ConfigError as e:
        problems = e.problems
    from jax._src import xla_bridge
    print(json.dumps({{"problems": problems, "backends": xla_bridge.backends_are_initialized()}}))
""")


@pytest.mark.parametrize("module, variant", sorted(BASE.items()))
def test_validate_fires_before_any_device_work(module, variant):
    """In a fresh process: validating imports the system (models, losses, data) and finds the problems, and
    JAX has not initialised a backend."""
    p = subprocess.run([sys.executable, "-c", VALIDATE_IN_A_FRESH_PROCESS.format(module=module, variant=variant)],
                       env=runs.env(1), cwd=runs.REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert keys(out["problems"]) >= {"train.batch_size", "train.steps"} and out["backends"] is False


def test_the_cli_stops_at_once_naming_every_key(tmp_path):
    wd = tmp_path / "never"
    p = runs.run("configs/dsg_kd.py:tiny", str(wd), "--config.train.batch_size=0", "--config.kd.attn_keys=token",
                 "--config.optim.warmup_ratio=1.5", check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "the config has 3 problems:" in p.stderr
    for line in ("train.batch_size: must be > 0, got 0", "kd.attn_keys: 'token' is not one of 'word', 'index'",
                 "optim.warmup_ratio: must be < 1, got 1.5"):
        assert line in p.stderr
    assert not wd.exists()  # nothing was created
    # --mode that the system does not declare
    p = runs.run("configs/dsg_kd.py:tiny", str(wd), "--mode=cost", check=False)
    assert p.returncode == 1 and "has no --mode=cost (it supports: train, export, predict)" in p.stderr
    assert not wd.exists()


# ------------------------------------------------------------------------------------------ batch spec
def test_batch_mismatches_are_named_field_by_field():
    spec = {"wave": batch_lib.Field((4,), np.float32), "label": batch_lib.Field((), np.int32),
            "mask": batch_lib.Field((4,), np.bool_)}
    good = {"wave": np.zeros((2, 4), np.float32), "label": np.zeros(2, np.int32), "mask": np.ones((2, 4), bool)}
    assert batch_lib.mismatches(spec, good) == []
    bad = {"wave": np.zeros((2, 5), np.float32), "label": np.zeros(2, np.int64), "extra": np.zeros(2)}
    found = batch_lib.mismatches(spec, bad)
    assert found == ["mask: described bool[4] but missing from the batch",
                     "extra: in the batch (float64[]) but not described",
                     "label: described int32[], the batch has int64[]",
                     "wave: described float32[4], the batch has float32[5]"]
    with pytest.raises(batch_lib.InputError, match="the first training batch"):
        batch_lib.check(spec, bad, "the first training batch")
    abstract = batch_lib.abstract_batch(spec, 8)
    assert abstract["wave"].shape == (8, 4) and abstract["label"].shape == (8,)


def _first_example(task) -> dict:
    ex = task.train_data[0]
    if task.train_transform is not None:
        ex = task.train_transform(ex, np.random.default_rng(0))
    return ex


def _same_fields(system, cfg, workdir):
    task = system.build(cfg, workdir)
    ex = _first_example(task)
    _, batch = system.abstract_task(cfg)
    real = {k: (np.asarray(v).shape, np.asarray(v).dtype) for k, v in ex.items()}
    abstract = {k: (tuple(v.shape[1:]), np.dtype(v.dtype)) for k, v in batch.items()}
    assert real == abstract
    assert batch_lib.mismatches(task.batch_spec, ex, batched=False) == []
    return real


CASES = [
    ("dsg_kd", "tiny", {}),
    ("dsg_kd", "smoke", {}),
    ("dsg_kd", "tiny", {"data.unlabelled.num_synthetic": 8}),  # each note paired with an unlabelled one (u_*)
    ("dsg_kd", "tiny", {"data.unlabelled.num_synthetic": 8, "teacher.cache.enabled": True}),
    ("audio_tagging", "real_sounds", {}),
    ("multi2cap", "tiny", {}),
    ("multi2cap", "smoke", {}),
    ("multi2cap", "tiny", {"teacher.cache": True}),  # the image teacher's features instead of the picture
    ("multi2cap", "tiny", {"cfd.weight": 0.0, "teacher.kind": "none"}),  # LOAE: no image at all
    ("effaac", "smoke", {}),  # embeddings and captions from the shipped cache
    ("effaac", "smoke", {"kd.enc": "none"}),  # L_seq only
    ("distill_lm", "tiny", {}),
    ("distill_lm", "tiny", {"kd.source": "topk", "kd.top_k": 8}),  # the cached top-k at the student's tokens
    ("distill_lm", "tiny", {"kd.source": "sampled", "kd.top_k": 8}),  # 8 draws, in the same form
]


@pytest.mark.slow
@pytest.mark.parametrize("module, variant, over", CASES)
def test_abstract_batch_equals_the_first_real_batch(module, variant, over, tmp_path):
    cfg = _configs(module, variant)
    for k, v in over.items():
        overrides.set_key(cfg, k, v)
    system, cfg, _ = registry.resolve(cfg)
    _same_fields(system, cfg, str(tmp_path))


@runs.SHARES_M2C_TINY
@pytest.mark.slow
def test_effaac_abstract_batch_with_audio_only_clips_and_an_online_teacher(m2c_tiny_run, tmp_path):
    """The paper's setting: labelled + audio-only clips in every batch; with an online teacher its embeddings
    come from the step, with a cached one from the batch. kdjax.aot sizes exactly what the pipeline emits."""
    from kdjax.data import real_sounds

    extra = real_sounds.caption_rows()["validation"][:3]
    manifest = tmp_path / "audio_only.jsonl"
    manifest.write_text("".join(json.dumps({"audio": r["audio"], "id": "ao/" + r["id"]}) + "\n" for r in extra))
    for online in (True, False):
        cfg = _configs("effaac", "tiny")
        overrides.set_key(cfg, "teacher.workdir", m2c_tiny_run)
        overrides.set_key(cfg, "teacher.cache_dir", str(tmp_path / "cache"))
        overrides.set_key(cfg, "data.audio_only_manifest", str(manifest))
        overrides.set_key(cfg, "teacher.online", online)
        overrides.set_key(cfg, "kd.word.weight", 0.0 if online else 1.0)  # word-level KD's top-k along the teacher's captions
        system, cfg, _ = registry.resolve(cfg)
        fields = _same_fields(system, cfg, str(tmp_path / f"wd{online}"))
        assert {"ao_wave", "ao_mask", "ao_teacher_ids", "ao_teacher_mask"} <= set(fields)
        assert ("teacher_emb" in fields) is (not online) and ("ao_teacher_emb" in fields) is (not online)
        assert ({"word_logprobs", "ao_word_ids", "ao_word_mask"} <= set(fields)) is (not online)


@pytest.mark.slow
def test_a_run_with_dropped_metrics_selects_checkpoints_by_the_fallback(tmp_path):
    """No SPICE jar: with eval.unavailable_metrics='drop' the run trains, keeps its best checkpoint by the
    fallback metric and says so in the report (without it, it would stop before training)."""
    wd = tmp_path / "m2c"
    args = ("--config.eval.metrics=('bleu_1','cider_d','spice','spider')",
            "--config.train.early_stopping.metric=spider", "--config.eval.every=3")
    p = runs.run("configs/multi2cap.py:tiny", str(wd), *args, check=False)
    assert p.returncode == 1 and "'spice', 'spider' cannot be computed on this install" in p.stderr
    runs.run("configs/multi2cap.py:tiny", str(wd), *args, "--config.eval.unavailable_metrics=drop")
    report = json.load(open(wd / "report.json"))
    notes = report["info"]["config_adjustments"]
    assert any("dropped ['spice', 'spider']" in n for n in notes) and any("fallback='cider_d'" in n for n in notes)
    assert report["params"].startswith("best (step")
    assert set(report["metrics"]["test"]) == {"bleu_1", "cider_d"}
    dev = [json.loads(line) for line in open(wd / "metrics.jsonl") if '"split": "dev"' in line]
    assert len(dev) == 2 and all("cider_d" in r and "spider" not in r for r in dev)
