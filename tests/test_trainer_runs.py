"""End-to-end runs of the trainer through `python -m kdjax.main` on the tiny DSG-KD config."""

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from kdjax.systems import dsg_kd
from tests import runs

TINY = "configs/dsg_kd.py:tiny"


# its tests run in one xdist worker, which makes the run once
SHARES_SINGLE_DEVICE_RUN = pytest.mark.xdist_group("dsg_tiny_one")


@pytest.fixture(scope="module")
def single_device_run(tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("one"))
    runs.run(TINY, wd, devices=1)
    return wd


@SHARES_SINGLE_DEVICE_RUN
@pytest.mark.slow
def test_same_losses_on_1_and_8_devices(single_device_run, tmp_path):
    """All three mesh axes at once (data x fsdp x tensor = 2 x 2 x 2): batch, width and heads/MLP are
    all sharded, and the losses are the single-device ones."""
    wd = str(tmp_path / "eight")
    out = runs.run(TINY, wd, "--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=2",
                   "--config.eval.final=False", devices=8)
    assert "mesh data=" in out.stderr
    one, eight = runs.train_rows(single_device_run), runs.train_rows(wd)
    assert [r["step"] for r in one] == [r["step"] for r in eight] == list(range(1, 25))
    runs.assert_same_losses(one, eight, ("loss", "ce", "hidn", "attn"), atol=1e-6)
    # The run learns something at all: the KD losses fall.
    assert one[-1]["hidn"] < one[0]["hidn"]


MESH_2X2X2 = ("--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=2")


@SHARES_SINGLE_DEVICE_RUN
@pytest.mark.slow
def test_two_process_job_preempted_and_resumed_matches_one_process(single_device_run, tmp_path):
    """A real multi-host job: two processes with 4 CPU devices each, joined by jax.distributed on loopback,
    each reading only its half of every batch. SIGTERM reaches both (via launch/local.py, as SLURM or a TPU
    maintenance event would): they agree on a step, write one checkpoint collectively and exit 143; the
    resumed job ends with the single-process losses, evaluation and parameters. Only process 0 logs."""
    wd = str(tmp_path / "two")
    job = (*MESH_2X2X2, "--config.train.checkpoint_every=2", "--config.train.stop_check_every=2")
    proc = subprocess.Popen(runs.local_launch(TINY, wd, *job), env=runs.env(1), cwd=runs.REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = os.path.join(wd, "checkpoints")
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (
            os.path.isdir(ckpt) and any(d.isdigit() for d in os.listdir(ckpt))):
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, (out[-2000:], err[-4000:], runs.process_logs(wd, 2))
    assert "SIGTERM: checkpoint written at step" in err
    stopped = sorted(int(d) for d in os.listdir(ckpt) if d.isdigit())[-1]
    assert 2 <= stopped < 24 and stopped % 2 == 0

    p0, (log1,) = runs.run_processes(TINY, wd, *job, processes=2, devices=4)
    assert f"resumed from step {stopped}" in p0.stderr
    assert "process 0 of 2, 4 local of 8 devices" in p0.stderr
    assert "report:" in p0.stdout and "Evaluation" in p0.stdout
    assert "Gloo" in log1  # process 1 ran, quietly
    assert "report:" not in log1 and "Evaluation" not in log1 and "train:" not in log1
    one, two = runs.train_rows(single_device_run), runs.train_rows(wd)
    assert [r["step"] for r in two] == list(range(1, 25))
    runs.assert_same_losses(one, two, ("loss", "ce", "hidn", "attn"), atol=1e-6)
    # Evaluation gathers every process's predictions back into the split's order. Compared example by
    # example: AUROC of a barely trained model flips with 1e-7 changes between near-tied notes.
    ra = json.load(open(os.path.join(single_device_run, "report.json")))["metrics"]
    rb = json.load(open(os.path.join(wd, "report.json")))["metrics"]
    assert ra.keys() == rb.keys() == {"dev", "test"} and ra["dev"].keys() == rb["dev"].keys()
    for split in ("dev", "test"):
        pa, pb = (np.load(os.path.join(w, "predictions", f"{split}.npz")) for w in (single_device_run, wd))
        np.testing.assert_array_equal(pa["label"], pb["label"])
        assert len(np.unique(pa["label"])) == 2  # a permutation of the notes would show
        np.testing.assert_allclose(pa["prob"], pb["prob"], rtol=1e-4, atol=1e-6, err_msg=split)
        assert dsg_kd.evaluate(dict(pa), split) == ra[split]  # the saved predictions are the reported ones
    pa, pb = runs.final_params(single_device_run), runs.final_params(wd)
    assert pa.keys() == pb.keys()
    for k in pa:
        np.testing.assert_allclose(pa[k], pb[k], rtol=1e-3, atol=1e-5, err_msg=k)


@SHARES_SINGLE_DEVICE_RUN
def test_report_and_outputs(single_device_run):
    wd = single_device_run
    report = json.load(open(os.path.join(wd, "report.json")))
    assert set(report["metrics"]) == {"dev", "test"}
    assert {"accuracy", "auroc", "auprc", "recall", "precision", "f1", "average"} <= set(report["metrics"]["test"])
    assert report["info"]["hidden_projection"] is True  # student 16 wide, teacher 32
    assert report["info"]["layer_map"] == [[0, 0], [1, 1], [2, 2]]
    assert os.listdir(os.path.join(wd, "tensorboard"))
    assert os.path.isdir(os.path.join(wd, "best"))
    dev_rows = [json.loads(l) for l in open(os.path.join(wd, "metrics.jsonl")) if '"dev"' in l]
    assert [r["step"] for r in dev_rows] == [12, 24]
    # predictions/<split>.jsonl: one readable row per note, in the split's order, the npz's numbers
    for split in ("dev", "test"):
        rows = [json.loads(l) for l in open(os.path.join(wd, "predictions", f"{split}.jsonl"), encoding="utf-8")]
        npz = np.load(os.path.join(wd, "predictions", f"{split}.npz"))
        assert [r["id"] for r in rows] == [f"{split}-{i}" for i in range(len(npz["label"]))]  # generated notes
        assert all(r["input"].strip() for r in rows)
        np.testing.assert_allclose([[r["probabilities"][k] for k in ("0", "1")] for r in rows], npz["prob"], atol=1e-6)
        assert [r["references"] for r in rows] == [[str(int(y))] for y in npz["label"]]
        assert np.mean([r["scores"]["correct"] for r in rows]) == pytest.approx(report["metrics"][split]["accuracy"])


@SHARES_SINGLE_DEVICE_RUN
def test_predict_notes_gives_the_evaluation_probabilities(single_device_run, tmp_path):
    """--mode=predict on notes (a JSONL manifest of the dev notes, a .txt note, a CSV manifest): the trained student's
    probabilities of each dev note equal the evaluation's (predictions/dev.jsonl); an empty note is skipped."""
    wd = single_device_run
    dev = [json.loads(l) for l in open(os.path.join(wd, "predictions", "dev.jsonl"), encoding="utf-8")]
    manifest = runs.write_manifest(tmp_path / "dev.jsonl", [{"id": r["id"], "text": r["input"]} for r in dev])
    (tmp_path / "one.txt").write_text(dev[0]["input"], encoding="utf-8")
    import csv

    with open(tmp_path / "notes.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("text", "id"), (dev[1]["input"], "b"), ("", "empty")])
    out = tmp_path / "p.jsonl"
    p = runs.run_mode("predict", wd, f"--input={manifest}", f"--input={tmp_path / 'one.txt'}",
                      f"--input={tmp_path / 'notes.csv'}", f"--out={out}")
    rows = [json.loads(l) for l in open(out, encoding="utf-8")]
    assert [r["id"] for r in rows] == [r["id"] for r in dev] + ["one.txt", "b"]
    assert "notes.csv:3: an empty note" in p.stderr
    for r, e in zip(rows, dev + dev[:2]):
        np.testing.assert_allclose([r["probabilities"][k] for k in ("0", "1")],
                                   [e["probabilities"][k] for k in ("0", "1")], atol=2e-5)
        assert r["prediction"]["label"] == e["prediction"]["label"] and r["truncated"] in (True, False)


KILL_RUN = ("--config.train.steps=120", "--config.train.checkpoint_every=15", "--config.eval.every=0",
            "--config.train.early_stopping.metric=")


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("ref"))
    runs.run(TINY, wd, *KILL_RUN)
    return wd


def _start_and_stop(wd: str, sig: int, after_step: int) -> list[int]:
    """Start (or resume) the run in `wd`, send `sig` once a checkpoint beyond `after_step` exists;
    returns the saved steps."""
    proc = subprocess.Popen(runs.command(TINY, wd, *KILL_RUN), env=runs.env(1), cwd=runs.REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = os.path.join(wd, "checkpoints")
    steps = lambda: sorted(int(d) for d in (os.listdir(ckpt) if os.path.isdir(ckpt) else []) if d.isdigit())
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if steps() and steps()[-1] > after_step:
            break
        time.sleep(0.005)
    os.kill(proc.pid, sig)
    proc.wait(timeout=120)
    # 143: the SIGTERM handler wrote its checkpoint and exited (it exits only after saving).
    assert proc.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 143)
    saved = steps()
    assert saved and after_step < saved[-1] < 120, f"the run was not stopped mid-training: {saved}"
    return saved


@pytest.mark.slow
def test_killed_run_resumes_exactly(uninterrupted_run, tmp_path):
    """Preempted (SIGTERM: the run writes a checkpoint at the current step and exits), resumed, killed
    (SIGKILL: resume from the last periodic checkpoint), resumed again: the run ends bit-identical to
    an uninterrupted one."""
    wd = str(tmp_path / "killed")
    first = _start_and_stop(wd, signal.SIGTERM, 0)
    _start_and_stop(wd, signal.SIGKILL, first[-1])
    runs.run(TINY, wd, *KILL_RUN)
    a, b = runs.final_params(uninterrupted_run), runs.final_params(wd)
    assert int(a["__step__"]) == int(b["__step__"]) == 120
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    ra, rb = runs.train_rows(uninterrupted_run), runs.train_rows(wd)
    assert [r["loss"] for r in ra] == [r["loss"] for r in rb]


def test_unknown_config_key_names_the_key(tmp_path):
    p = runs.run(TINY, str(tmp_path), "--config.train.stepz=3", check=False)
    assert p.returncode != 0
    assert "unknown config key '--config.train.stepz'" in p.stderr


def test_paper_config_names_missing_paths(tmp_path):
    p = runs.run("configs/dsg_kd.py:paper", str(tmp_path), check=False)
    assert p.returncode != 0
    for key in ("teacher.hf_dir", "student.hf_dir", "data.train_file"):
        assert f"--config.{key}=" in p.stderr


def test_early_stopping_keeps_best(tmp_path):
    # With a zero learning rate the dev metric never improves after the first evaluation.
    wd = str(tmp_path / "es")
    runs.run(TINY, wd, "--config.optim.lr=0", "--config.optim.groups.head.lr=0", "--config.eval.every=4",
             "--config.train.early_stopping.patience=2")
    report = json.load(open(os.path.join(wd, "report.json")))
    assert report["stopped_early"] is True
    assert report["step"] == 12  # evals at 4 (best), 8, 12 (second without improvement)
    assert report["params"] == "best (step 4)"


def test_users_notes_files_with_bad_rows(tmp_path):
    from kdjax.data.synthetic_notes import generate_notes

    paths = {}
    for split, n, seed in (("train", 64, 0), ("dev", 16, 1), ("test", 16, 2)):
        rows = [{"note": x.text, "y": str(x.label)} for x in generate_notes(n, seed)]
        if split == "train":
            rows.insert(3, {"note": "", "y": "1"})
            rows.insert(5, {"note": "fever", "y": "urgent"})
        p = tmp_path / f"{split}.jsonl"
        p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        paths[split] = str(p)
    common = ["--config.data.source=files", f"--config.data.train_file={paths['train']}",
              f"--config.data.dev_file={paths['dev']}", f"--config.data.test_file={paths['test']}",
              "--config.data.text_column=note", "--config.data.label_column=y", "--config.train.steps=4",
              "--config.eval.every=4"]
    p = runs.run(TINY, str(tmp_path / "strict"), *common, check=False)
    assert p.returncode != 0 and "train.jsonl:4: empty text" in p.stderr
    assert "Traceback" not in p.stderr  # one clear line, not a stack trace
    wd = str(tmp_path / "skip")
    runs.run(TINY, wd, *common, "--config.data.on_bad_input=skip")
    info = json.load(open(os.path.join(wd, "report.json")))["info"]
    assert info["num_examples"] == {"train": 64, "dev": 16, "test": 16}
    assert info["bad_rows_skipped"] == 2
    assert "train.jsonl:6: label 'urgent' is not in the label set" in info["bad_rows"][1]


def test_paper_recipe_from_hf_directories(tmp_path, minilm_dir):
    """The paper variant as users run it: teacher and student from HF directories (here the real
    MiniLM for both), the reference code's index key alignment, a few steps on notes files."""
    from kdjax.data.synthetic_notes import generate_notes

    p = tmp_path / "notes.jsonl"
    p.write_text("".join(json.dumps({"text": n.text, "label": n.label}, ensure_ascii=False) + "\n"
                         for n in generate_notes(40, 3)))
    wd = str(tmp_path / "paper")
    runs.run("configs/dsg_kd.py:paper", wd, f"--config.teacher.hf_dir={minilm_dir}",
             f"--config.student.hf_dir={minilm_dir}", f"--config.data.train_file={p}",
             "--config.data.split_ratios=(0.6,0.2,0.2)", "--config.data.teacher_max_length=64",
             "--config.data.student_max_length=64", "--config.train.batch_size=4", "--config.train.steps=2",
             "--config.train.log_every=1",
             "--config.eval.every=2", "--config.report.plot=False", "--config.report.baselines=False")
    report = json.load(open(os.path.join(wd, "report.json")))
    assert report["info"]["num_examples"] == {"train": 24, "dev": 8, "test": 8}
    assert report["info"]["hidden_projection"] is False and len(report["info"]["layer_map"]) == 7
    rows = runs.train_rows(wd)
    assert len(rows) == 2 and all(r["attn"] > 0 and r["hidn"] > 0 for r in rows)
    cfg = json.load(open(os.path.join(wd, "config.json")))
    assert cfg["kd"]["attn_keys"] == "index" and cfg["optim"]["groups"]["head"]["lr"] == 0.01


def test_resume_after_a_best_save_without_its_regular_checkpoint(tmp_path):
    """Killed after `best/` saved a step and before the next regular checkpoint (here: the regular checkpoints from
    the best step on deleted, as `rm -rf W/checkpoints/24` would): the resumed run reaches that evaluation again and
    finishes (StepAlreadyExistsError before), with the uninterrupted run's parameters."""
    import shutil

    wd = str(tmp_path / "w")
    args = ("--config.eval.every=4", "--config.train.keep_checkpoints=8", "--config.eval.final=False")
    runs.run(TINY, wd, *args)
    done = runs.final_params(wd)
    best = max(int(d) for d in os.listdir(os.path.join(wd, "best")) if d.isdigit())
    for d in os.listdir(os.path.join(wd, "checkpoints")):
        if d.isdigit() and int(d) >= best:
            shutil.rmtree(os.path.join(wd, "checkpoints", d))
    p = runs.run(TINY, wd, *args)
    assert "resumed from step" in p.stderr and f"best model of step {best} already saved" in p.stderr
    again = runs.final_params(wd)
    for k in done:
        np.testing.assert_array_equal(done[k], again[k], err_msg=k)


def test_divergence_stops_the_run_and_no_checkpoint_holds_it(tmp_path):
    """A learning rate of 1e6: the non-finite steps are not applied, the run stops after train.max_bad_steps of
    them naming the steps and the terms, exits non-zero, and every checkpoint it wrote is finite."""
    wd = str(tmp_path / "w")
    p = runs.run(TINY, wd, "--config.optim.lr=1e6", "--config.optim.groups.head.lr=1e6",
                 "--config.train.checkpoint_every=2", "--config.train.keep_checkpoints=20", check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "training diverged: steps 3-7 (5 in a row, train.max_bad_steps=5)" in p.stderr and "grad_norm" in p.stderr
    assert not os.path.exists(os.path.join(wd, "report.json"))
    steps = sorted(int(d) for d in os.listdir(os.path.join(wd, "checkpoints")) if d.isdigit())
    assert steps == [2, 4, 6]
    import jax
    import orbax.checkpoint as ocp

    for s in steps:
        state = ocp.StandardCheckpointer().restore(os.path.join(wd, "checkpoints", str(s), "state"))
        assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(state["params"])), s
    rows = runs.train_rows(wd)  # each bad step is counted as skipped
    assert [r["skipped_steps"] for r in rows][:4] == [0, 0, 1, 2]


def test_one_run_per_workdir(tmp_path):
    """A second run on a workdir in use refuses at once naming the first; a lock left by a SIGKILLed run is taken
    over, and a finished run leaves none."""
    wd = tmp_path / "w"
    proc = subprocess.Popen(runs.command(TINY, str(wd), "--config.train.steps=200", "--config.eval.final=False"),
                            env=runs.env(1), cwd=runs.REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = wd / ".kdjax.lock"
    deadline = time.time() + 120
    while time.time() < deadline and not lock.exists():
        time.sleep(0.05)
    assert lock.exists(), proc.communicate(timeout=60)
    try:
        p = runs.run(TINY, str(wd), check=False)
        assert p.returncode == 1 and f"another run is using this workdir (pid {proc.pid} on" in p.stderr
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    assert lock.exists()  # SIGKILL leaves it behind
    p = runs.run(TINY, str(wd), "--config.eval.final=False")
    assert f"taking over a stale lock (pid {proc.pid} is gone)" in p.stderr and not lock.exists()


def test_resume_with_another_config_is_refused_naming_the_keys(tmp_path):
    """The workdir's checkpoints were trained with config.json: resuming with other values is refused naming each
    key, unless --allow_config_change; a fresh workdir and a changed mesh are not refused."""
    from kdjax.train import resume_config

    wd = str(tmp_path / "w")
    args = ("--config.train.steps=4", "--config.eval.final=False")
    runs.run(TINY, wd, *args)
    p = runs.run(TINY, wd, *args, "--config.optim.lr=0.5", "--config.data.max_words=7", check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "resuming with a config that differs" in p.stderr
    assert "optim.lr: 0.001 -> 0.5" in p.stderr and "data.max_words: 32 -> 7" in p.stderr
    assert "--allow_config_change" in p.stderr
    p = runs.run(TINY, wd, *args, "--config.optim.lr=0.5", "--allow_config_change")
    assert "resuming with a changed config (--allow_config_change): optim.lr: 0.001 -> 0.5" in p.stderr
    stored = json.load(open(os.path.join(wd, "config.json")))
    assert stored["optim"]["lr"] == 0.5  # the workdir now describes what it continued with
    moved = {**stored, "mesh": {"data": 8, "fsdp": 1, "tensor": 1}}
    assert resume_config.differences(stored, moved) == []
    assert resume_config.differences(stored, {**stored, "seed": 7}) == [f"seed: {stored['seed']} -> 7"]
    # a key added after a workdir was written reads, in it, as the value that computes what it computed
    old, new = {"kd": {"enc": "contra"}}, {"kd": {"enc": "contra", "word": {"weight": 0.0, "top_k": 32}}}
    assert resume_config.differences(old, new) == []
    assert resume_config.differences(old, {"kd": {"enc": "contra", "word": {"weight": 1.0, "top_k": 32}}}) == [
        "kd.word.weight: 0.0 -> 1.0"]


def test_sigkill_after_a_best_save_resumes(tmp_path):
    """Item 1 with a real SIGKILL: killed once the first best model is saved (best/ holds that step, no regular
    checkpoint does), the rerun reaches the same evaluation and finishes (StepAlreadyExistsError before)."""
    wd = tmp_path / "w"
    args = ("--config.train.steps=400", "--config.eval.every=4", "--config.train.checkpoint_every=1000",
            "--config.eval.final=False")
    proc = subprocess.Popen(runs.command(TINY, str(wd), *args), env=runs.env(1), cwd=runs.REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:  # until the first best/ save is complete (sealed)
        if (wd / "best").is_dir() and any((d / "kdjax_checksums.json").exists() for d in (wd / "best").iterdir()):
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    best = sorted(int(d) for d in os.listdir(wd / "best") if d.isdigit())
    assert best and best[0] < 400
    p = runs.run(TINY, str(wd), *args)
    assert f"best model of step {best[0]} already saved" in p.stderr
    assert json.load(open(wd / "report.json"))["step"] > best[0]  # finished (early stopping may end it before 400)
