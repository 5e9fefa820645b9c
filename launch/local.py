"""One machine: a single process, or several processes joined by jax.distributed on loopback.

    python launch/local.py --config=configs/dsg_kd.py:smoke --workdir=workdirs/x
    python launch/local.py --processes=2 --devices_per_process=4 --config=... --workdir=... -- --config.mesh.fsdp=2

Several processes on one host are how multi-host code is exercised without a cluster (on CPU each gets
`--devices_per_process` simulated devices). Process 0 writes to this terminal, process i to
<workdir>/logs/process-<i>.log. SIGTERM and Ctrl-C are passed on to every process (each writes its
checkpoint part), and the exit status is the first failure's.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import REPO, add_run_args, main_command, parse  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def commands(args: argparse.Namespace) -> list[tuple[list[str], dict[str, str]]]:
    """(argv, extra environment) per process."""
    env = {}
    if args.devices_per_process:
        flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", os.environ.get("XLA_FLAGS", ""))
        env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={args.devices_per_process}".strip()
    if args.processes == 1:
        return [(main_command(args, sys.executable), env)]
    addr = f"127.0.0.1:{args.port or _free_port()}"
    return [(main_command(args, sys.executable, f"--coordinator_address={addr}",
                          f"--num_processes={args.processes}", f"--process_id={i}"), env)
            for i in range(args.processes)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(p)
    p.add_argument("--processes", type=int, default=1, help="kdjax processes started on this machine")
    p.add_argument("--devices_per_process", type=int, default=0,
                   help="simulated CPU devices per process (XLA_FLAGS); 0 leaves the devices alone")
    p.add_argument("--port", type=int, default=0, help="coordinator port (default: a free one)")
    args = parse(p, argv)
    if args.processes < 1:
        p.error("--processes must be >= 1")
    plan = commands(args)
    logs = os.path.join(args.workdir, "logs")
    for i, (cmd, env) in enumerate(plan):
        where = "" if i == 0 else f" > {os.path.join(logs, f'process-{i}.log')} 2>&1"
        print("+ " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + (" " if env else "")
              + shlex.join(cmd) + where, flush=True)
    if args.dry_run:
        return 0
    if len(plan) > 1:
        os.makedirs(logs, exist_ok=True)
    procs: list[subprocess.Popen] = []

    def forward(sig, _frame):
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(sig)

    # before the first process starts, so that no signal can leave a process behind
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    pythonpath = REPO + os.pathsep + os.environ.get("PYTHONPATH", "")
    for i, (cmd, env) in enumerate(plan):
        out = None if i == 0 else open(os.path.join(logs, f"process-{i}.log"), "w")
        procs.append(subprocess.Popen(cmd, env={**os.environ, **env, "PYTHONPATH": pythonpath}, stdout=out,
                                      stderr=subprocess.STDOUT if out else None))
    return _wait(procs)


def _wait(procs: list[subprocess.Popen], grace: float = 60.0) -> int:
    """The first non-zero exit status, or 0. When one process fails the others would wait for it in their
    next collective, so they are stopped (SIGTERM, then SIGKILL after `grace` seconds)."""
    first, deadline = 0, None
    while any(p.poll() is None for p in procs):
        failed = [p.returncode for p in procs if p.returncode not in (None, 0)]
        if failed and not first:
            first, deadline = failed[0], time.time() + grace
            for p in procs:
                if p.poll() is None:
                    p.terminate()
        if deadline is not None and time.time() > deadline:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        time.sleep(0.2)
    return first or next((p.returncode for p in procs if p.returncode), 0)


if __name__ == "__main__":
    sys.exit(main())
