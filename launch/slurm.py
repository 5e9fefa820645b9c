"""A SLURM multi-node, multi-GPU job: one kdjax process per node driving all of its GPUs.

    python launch/slurm.py --nodes=4 --gpus_per_node=8 --time=24:00:00 --partition=gpu \\
        --config=configs/multi2cap.py --workdir=/shared/runs/m2c [--venv=/shared/venvs/kdjax] [--dry_run] \\
        -- --config.data.root=...

writes <workdir>/kdjax.sbatch and submits it with sbatch (--dry_run prints both instead). Inside the job,
`srun` starts the processes and kdjax.main joins them with jax.distributed from SLURM's variables. SLURM
sends SIGTERM `--grace` seconds before the time limit: kdjax writes a checkpoint and exits with 143, and
the script requeues the job, which resumes from that checkpoint. The workdir must be on a filesystem every
node mounts.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import REPO, Shell, add_run_args, fail, main_command, parse  # noqa: E402

TEMPLATE = """#!/bin/bash
#SBATCH --job-name={name}
#SBATCH --nodes={nodes}
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node={gpus_per_node}
#SBATCH --cpus-per-task={cpus_per_task}
#SBATCH --time={time}
#SBATCH --signal=TERM@{grace}
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output={workdir}/slurm-%j.out
{extra}
# written by launch/slurm.py; re-submitting it (or a requeue) resumes from the workdir's latest checkpoint
set -uo pipefail
cd {repo}
{activate}export PYTHONPATH={repo}${{PYTHONPATH:+:$PYTHONPATH}}
srun --kill-on-bad-exit=1 {command}
rc=$?
if [ $rc -eq 143 ]; then
  # SIGTERM before the time limit (or a preemption): the checkpoint is written, continue in a new allocation
  scontrol requeue "$SLURM_JOB_ID"
fi
exit $rc
"""


def render(args: argparse.Namespace) -> str:
    extra = []
    for key in ("partition", "account", "qos"):
        if getattr(args, key):
            extra.append(f"#SBATCH --{key}={getattr(args, key)}")
    activate = f"source {shlex.quote(os.path.join(args.venv, 'bin', 'activate'))}\n" if args.venv else ""
    return TEMPLATE.format(name=args.job_name, nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                           cpus_per_task=args.cpus_per_task, time=args.time, grace=args.grace,
                           workdir=args.workdir, extra="\n".join(extra), repo=REPO,
                           activate=activate,
                           command=shlex.join(main_command(args, "python", "--distributed=slurm")))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(p)
    p.add_argument("--nodes", type=int, required=True, help="nodes of the job (one kdjax process each)")
    p.add_argument("--gpus_per_node", type=int, default=8, help="GPUs each process drives")
    p.add_argument("--cpus_per_task", type=int, default=16, help="data-loading threads per node")
    p.add_argument("--time", default="24:00:00", help="the job's time limit (sbatch --time)")
    p.add_argument("--grace", type=int, default=180, help="seconds between SIGTERM and the time limit")
    p.add_argument("--partition", default="", help="sbatch --partition")
    p.add_argument("--account", default="", help="sbatch --account")
    p.add_argument("--qos", default="", help="sbatch --qos")
    p.add_argument("--job_name", default="kdjax", help="sbatch --job-name")
    p.add_argument("--venv", default="", help="a virtualenv every node can activate")
    args = parse(p, argv)
    args.workdir = os.path.abspath(args.workdir)  # the job runs from the repository
    if args.nodes < 1 or args.gpus_per_node < 0:
        p.error("--nodes must be >= 1 and --gpus_per_node >= 0")
    script = render(args)
    path = os.path.join(args.workdir, "kdjax.sbatch")
    sh = Shell(args.dry_run)
    if args.dry_run:
        print(f"# {path}\n{script}")
    else:
        os.makedirs(args.workdir, exist_ok=True)
        with open(path, "w") as f:
            f.write(script)
    try:
        sh(["sbatch", path])
    except FileNotFoundError:
        fail("sbatch is not on PATH: run this on a SLURM login node")
    except subprocess.CalledProcessError as e:
        fail(f"sbatch failed ({e.returncode})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
