"""launch/: every script's dry run prints the commands it would run (the local launcher also runs for real
in test_trainer_runs.py's two-process job)."""

import os
import shlex
import subprocess
import sys

from tests import runs

LAUNCH = os.path.join(runs.REPO, "launch")


def dry(script: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, os.path.join(LAUNCH, script), "--dry_run", *args], capture_output=True,
                       text=True, cwd=runs.REPO, timeout=120)
    assert (p.returncode == 0) == ok, (p.stdout, p.stderr)
    return p


def commands(out: str) -> list[list[str]]:
    return [shlex.split(line[2:].split("   # probe")[0]) for line in out.splitlines() if line.startswith("+ ")]


def test_local_dry_run_joins_processes_on_loopback(tmp_path):
    wd = str(tmp_path / "w")
    out = dry("local.py", "--processes=3", "--devices_per_process=4", "--config=configs/dsg_kd.py:tiny",
              f"--workdir={wd}", "--", "--config.train.steps=5").stdout
    lines = [ln for ln in out.splitlines() if ln.startswith("+ ")]
    assert len(lines) == 3
    addr = {c.split("=", 1)[1] for c in shlex.split(lines[0]) if c.startswith("--coordinator_address=")}
    assert len(addr) == 1 and next(iter(addr)).startswith("127.0.0.1:")
    for i, line in enumerate(lines):
        argv = shlex.split(line[2:])
        assert argv[0].startswith("XLA_FLAGS=") and argv[0].endswith(" --xla_force_host_platform_device_count=4")
        assert argv[0].count("device_count") == 1  # replaces the caller's count
        assert argv[2:4] == ["-m", "kdjax.main"]
        assert f"--process_id={i}" in argv and "--num_processes=3" in argv
        assert argv[-1 if i == 0 else -4] == "--config.train.steps=5"  # overrides pass through untouched
        assert (f"{wd}/logs/process-{i}.log" in line) == (i > 0)  # process 0 writes to the terminal
    assert not os.path.exists(wd)  # a dry run changes nothing


def test_tpu_pod_lifecycle_dry_run():
    common = ("--name=kd", "--zone=us-west4-a", "--project=p", "--topology=v5e-16")
    create = commands(dry("tpu.py", "create", *common, "--spot").stdout)
    assert create == [["gcloud", "compute", "tpus", "tpu-vm", "create", "kd", "--zone=us-west4-a", "--project=p",
                       "--accelerator-type=v5litepod-16", "--version=v2-alpha-tpuv5-lite", "--spot"]]
    run = commands(dry("tpu.py", "run", *common, "--config=configs/multi2cap.py", "--workdir=/mnt/kd/m2c",
                       "--", "--config.train.steps=10").stdout)
    assert len(run) == 1 and run[0][:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "kd"]
    assert "--worker=all" in run[0]  # the same command on every host of the slice
    remote = run[0][-1].removeprefix("--command=")
    assert ("python3 -m kdjax.main --config=configs/multi2cap.py --workdir=/mnt/kd/m2c --config.train.steps=10"
            in remote) and remote.startswith("cd ~/kdjax && nohup ")
    # after a preemption: probe, recreate, reinstall (matching jax[tpu]), remount the bucket, rerun
    resume = commands(dry("tpu.py", "resume", *common, "--config=c.py", "--workdir=/mnt/kd/m2c",
                          "--bucket=gs://b/runs", "--mount=/mnt/kd").stdout)
    verbs = [c[4] if c[0] == "gcloud" else c[0] for c in resume]
    assert verbs == ["describe", "create", "git", "scp", "ssh", "ssh", "ssh"]
    assert "jax[tpu]==" in resume[4][-1] and "gcsfuse --implicit-dirs b /mnt/kd" in resume[5][-1]
    push = commands(dry("tpu.py", "push", *common, "--workdir=/mnt/kd/m2c", "--bucket=gs://b/runs").stdout)
    assert push[0][-1] == "--command=gcloud storage rsync --recursive /mnt/kd/m2c gs://b/runs"
    pull = commands(dry("tpu.py", "pull", *common, "--workdir=/w", "--bucket=gs://b/runs").stdout)
    assert "gcloud storage rsync --recursive gs://b/runs /w" in pull[0][-1]


def test_tpu_multislice_and_generations():
    two = commands(dry("tpu.py", "create", "--name=kd", "--zone=z", "--topology=v5p-128x2").stdout)
    assert two[0][:5] == ["gcloud", "compute", "tpus", "queued-resources", "create"]
    assert {"--accelerator-type=v5p-128", "--runtime-version=v2-alpha-tpuv5", "--node-count=2",
            "--node-prefix=kd"} <= set(two[0])
    run = commands(dry("tpu.py", "run", "--name=kd", "--zone=z", "--topology=v5p-128x2", "--config=c",
                       "--workdir=w").stdout)
    assert [c[5] for c in run] == ["kd-0", "kd-1"]
    for topo, acc, version in (("v4-32", "v4-32", "tpu-ubuntu2204-base"), ("v6e-8", "v6e-8", "v2-alpha-tpuv6e")):
        c = commands(dry("tpu.py", "create", "--name=kd", "--zone=z", f"--topology={topo}").stdout)[0]
        assert f"--accelerator-type={acc}" in c and f"--version={version}" in c
    bad = dry("tpu.py", "create", "--name=kd", "--zone=z", "--topology=v5e-12", ok=False)
    assert "v5e-12: no v5e slice of 12" in bad.stderr and "Traceback" not in bad.stderr
    assert "needs --config and --workdir" in dry("tpu.py", "run", "--name=kd", "--zone=z", ok=False).stderr


def test_slurm_dry_run_renders_a_requeueing_job(tmp_path):
    wd = str(tmp_path / "m2c")
    out = dry("slurm.py", "--nodes=4", "--gpus_per_node=8", "--time=02:00:00", "--grace=240",
              "--partition=gpu", "--venv=/shared/venv", "--config=configs/multi2cap.py", f"--workdir={wd}",
              "--", "--config.train.steps=10").stdout
    assert not os.path.exists(wd)
    script = out.split(f"# {wd}/kdjax.sbatch\n", 1)[1].split("\n+ sbatch")[0]
    for line in ("#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --time=02:00:00", "#SBATCH --signal=TERM@240", "#SBATCH --requeue",
                 "#SBATCH --partition=gpu", "source /shared/venv/bin/activate"):
        assert line in script.splitlines(), line
    srun = next(ln for ln in script.splitlines() if ln.startswith("srun "))
    assert shlex.split(srun)[2:] == ["python", "-m", "kdjax.main", "--config=configs/multi2cap.py",
                                      f"--workdir={wd}", "--distributed=slurm", "--config.train.steps=10"]
    assert 'if [ $rc -eq 143 ]; then' in script and 'scontrol requeue "$SLURM_JOB_ID"' in script
    assert commands(out) == [["sbatch", f"{wd}/kdjax.sbatch"]]
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0  # the script parses
