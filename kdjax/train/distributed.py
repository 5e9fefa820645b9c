"""Joining the processes of a multi-host job (`jax.distributed`) before JAX touches a device.

One process runs per host (TPU VM worker, GPU node or SLURM task). Three ways in, picked by `plan`:
- explicit: `--coordinator_address=host:port --num_processes=N --process_id=i` (or JAX's own
  JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID variables), for any cluster;
- SLURM: an `srun` step of more than one task; JAX reads the coordinator, the task count and the rank
  from SLURM's variables;
- Cloud TPU: a TPU VM (JAX asks the metadata server which worker this is and who the others are).

A single process on one machine initialises nothing, so the same command runs everywhere.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
from collections.abc import Mapping
from typing import Any

import jax

MODES = ("auto", "off", "explicit", "slurm", "tpu")


@dataclasses.dataclass(frozen=True)
class Plan:
    kind: str  # "single", "explicit", "slurm" or "tpu"
    kwargs: dict[str, Any]  # for jax.distributed.initialize

    def describe(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"{self.kind}" + (f" ({shown})" if shown else "")


def _on_tpu_vm() -> bool:
    # a TPU VM exposes its chips as /dev/accel* (v2-v4) or VFIO devices (v5e and later)
    return bool(glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"))


def plan(mode: str = "auto", coordinator_address: str | None = None, num_processes: int | None = None,
         process_id: int | None = None, environ: Mapping[str, str] | None = None,
         tpu_vm: bool | None = None) -> Plan:
    """How this process joins the job. `environ` and `tpu_vm` default to this machine's (tests pass
    their own)."""
    env = os.environ if environ is None else environ
    if mode not in MODES:
        raise ValueError(f"--distributed={mode!r} is not one of {MODES}")
    coordinator_address = coordinator_address or env.get("JAX_COORDINATOR_ADDRESS") or None
    if num_processes is None and env.get("JAX_NUM_PROCESSES"):
        num_processes = int(env["JAX_NUM_PROCESSES"])
    if process_id is None and env.get("JAX_PROCESS_ID"):
        process_id = int(env["JAX_PROCESS_ID"])
    explicit = {"coordinator_address": coordinator_address, "num_processes": num_processes,
                "process_id": process_id}
    given = {k for k, v in explicit.items() if v is not None}
    if mode == "off":
        return Plan("single", {})
    if mode == "explicit" or (mode == "auto" and given):
        if given != set(explicit):
            missing = sorted(set(explicit) - given)
            raise ValueError("an explicit multi-process job needs --coordinator_address, --num_processes and "
                             f"--process_id; missing: {', '.join('--' + m for m in missing)}")
        if not 0 <= process_id < num_processes:
            raise ValueError(f"--process_id={process_id} is not in [0, {num_processes})")
        return Plan("explicit", explicit)
    slurm_tasks = int(env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS") or 0)
    if mode == "slurm" or (mode == "auto" and "SLURM_JOB_ID" in env and "SLURM_PROCID" in env
                           and slurm_tasks > 1):
        if "SLURM_PROCID" not in env:
            raise ValueError("--distributed=slurm outside an srun step: SLURM_PROCID is not set")
        return Plan("slurm", {})
    if mode == "tpu" or (mode == "auto" and (_on_tpu_vm() if tpu_vm is None else tpu_vm)):
        return Plan("tpu", {})
    return Plan("single", {})


def initialize(p: Plan) -> None:
    """Join the job (before any device is used) and quiet every process but the first."""
    if p.kind == "single":
        return
    jax.distributed.initialize(**p.kwargs)
    logging.info("jax.distributed: %s; process %d of %d, %d local of %d devices", p.describe(),
                 jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count())
    if jax.process_index() != 0:
        # every process runs the same program; one log is enough (warnings and errors still show)
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.WARNING)
        logging.getLogger().setLevel(logging.WARNING)
