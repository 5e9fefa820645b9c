"""Helpers for tests that run `python -m kdjax.main` in a subprocess (the device count is fixed when
JAX starts, so each mesh needs its own process)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# the tests that use conftest's m2c_tiny_run: one xdist worker runs them, so the run is made once
SHARES_M2C_TINY = pytest.mark.xdist_group("m2c_tiny")

# A handful of steps of a tiny model costs mostly compile time, which LLVM's optimisation level 0 cuts by a
# third (the programs run about 3x slower). Runs that train for real pass optimize=True.
QUICK_COMPILE = "--xla_backend_optimization_level=0"


def env(devices: int = 1, optimize: bool = False) -> dict:
    e = dict(os.environ)
    e["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}" + ("" if optimize else " " + QUICK_COMPILE)
    e["JAX_PLATFORMS"] = "cpu"
    e["HF_HUB_OFFLINE"] = "1"
    e["PYTHONPATH"] = REPO + os.pathsep + e.get("PYTHONPATH", "")
    return e


def command(config: str, workdir: str, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "kdjax.main", f"--config={os.path.join(REPO, config)}",
            f"--workdir={workdir}", *overrides]


def run(config: str, workdir: str, *overrides: str, devices: int = 1, check: bool = True,
        timeout: float = 600, optimize: bool = False) -> subprocess.CompletedProcess:
    p = subprocess.run(command(config, workdir, *overrides), env=env(devices, optimize), cwd=REPO,
                       capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"run failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}")
    return p


def run_mode(mode: str, workdir: str, *args: str, check: bool = True, timeout: float = 600
             ) -> subprocess.CompletedProcess:
    """`python -m kdjax.main --mode=<mode> --workdir=<workdir> ...`: a mode that reads the workdir's own config
    (caption, predict, export)."""
    p = subprocess.run([sys.executable, "-m", "kdjax.main", f"--mode={mode}", f"--workdir={workdir}", *args],
                       env=env(1), cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"--mode={mode} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}")
    return p


def snapshot(root: str) -> dict[str, tuple[int, int]]:
    """Every file under `root` with its size and modification time: a workdir that was only read keeps it."""
    return {os.path.join(d, n): (os.stat(os.path.join(d, n)).st_size, os.stat(os.path.join(d, n)).st_mtime_ns)
            for d, _, names in os.walk(root) for n in names}


def write_manifest(path, rows: list[dict]) -> str:
    """A JSONL manifest of `rows` at `path`."""
    import json

    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return str(path)


def train_rows(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["split"] == "train"]


def assert_same_losses(a: list[dict], b: list[dict], keys, rtol: float = 2e-4, atol: float = 0.0) -> None:
    """Two runs' train rows (metrics.jsonl) agree step by step on these loss terms."""
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for x, y in zip(a, b):
        for key in keys:
            np.testing.assert_allclose(x[key], y[key], rtol=rtol, atol=atol, err_msg=f"step {x['step']} {key}")


def final_params(workdir: str) -> dict[str, np.ndarray]:
    """The parameters in the latest checkpoint, restored onto this process's first device whatever
    mesh wrote them."""
    import jax
    import orbax.checkpoint as ocp

    from kdjax.models.state import flatten

    mgr = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"), item_names=("state", "data", "meta"))
    step = mgr.latest_step()
    mgr.close()
    item = os.path.join(workdir, "checkpoints", str(step), "state")
    ckptr = ocp.StandardCheckpointer()
    here = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=here),
                          ckptr.metadata(item).item_metadata)
    state = ckptr.restore(item, target)
    return {k: np.asarray(v) for k, v in flatten(state["params"]).items()} | {"__step__": np.asarray(step)}




def local_launch(config: str, workdir: str, *overrides: str, processes: int = 2, devices: int = 4) -> list[str]:
    """launch/local.py's command for a job of `processes` processes with `devices` simulated CPU devices
    each, joined by jax.distributed on loopback (the way the hosts of a pod or a GPU cluster join)."""
    return [sys.executable, os.path.join(REPO, "launch", "local.py"), f"--processes={processes}",
            f"--devices_per_process={devices}", f"--config={os.path.join(REPO, config)}", f"--workdir={workdir}",
            "--", *overrides]


def process_logs(workdir: str, processes: int) -> list[str]:
    """The logs of processes 1.. (process 0 writes to the launcher's terminal)."""
    out = []
    for i in range(1, processes):
        path = os.path.join(workdir, "logs", f"process-{i}.log")
        out.append(open(path).read() if os.path.exists(path) else "")
    return out


def run_processes(config: str, workdir: str, *overrides: str, processes: int = 2, devices: int = 4,
                  timeout: float = 600, optimize: bool = False) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Runs a multi-process job to its end; returns process 0's output and the other processes' logs."""
    p = subprocess.run(local_launch(config, workdir, *overrides, processes=processes, devices=devices),
                       env=env(1, optimize), cwd=REPO, capture_output=True, text=True, timeout=timeout)
    logs = process_logs(workdir, processes)
    if p.returncode != 0:
        raise AssertionError(f"job failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}\n"
                             + "\n".join(log[-3000:] for log in logs))
    return p, logs
