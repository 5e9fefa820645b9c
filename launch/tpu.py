"""Cloud TPU VMs and pod slices through gcloud.

    python launch/tpu.py create  --name=kd --zone=us-west4-a --topology=v5e-16 [--spot]
    python launch/tpu.py install --name=kd --zone=us-west4-a --topology=v5e-16
    python launch/tpu.py run     --name=kd --zone=us-west4-a --topology=v5e-16 \\
        --config=configs/multi2cap.py --workdir=/mnt/kd/m2c -- --config.data.root=...
    python launch/tpu.py resume  ...same flags as run...   # after a preemption: recreate, reinstall, rerun
    python launch/tpu.py push|pull --name=... --workdir=/mnt/kd/m2c --bucket=gs://b/m2c
    python launch/tpu.py mount   --name=... --bucket=gs://b --mount=/mnt/kd
    python launch/tpu.py delete  --name=... --zone=...

Every worker of a slice runs the same command (`--worker=all`); kdjax.main finds the other workers by itself
(jax.distributed on a TPU VM). A multi-slice target (v5e-16x2) is created as a queued resource whose nodes
are <name>-0, <name>-1, ... Every subcommand takes --dry_run and then only prints the gcloud commands.

The workdir of a multi-host slice must be one directory all workers share (Orbax writes each host's
shards of a checkpoint into it): mount a bucket with `mount` (gcsfuse) or an NFS share at the same path.
`push`/`pull` copy a workdir to and from a bucket path (e.g. to keep a single-host run's checkpoints
across a spot preemption).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import REPO, Shell, fail, main_command, parse  # noqa: E402

sys.path.insert(0, REPO)
from kdjax.train import topology  # noqa: E402

REMOTE_DIR = "kdjax"  # under each worker's home
LOG = "kdjax.log"


class Tpu:
    def __init__(self, args: argparse.Namespace, sh: Shell):
        self.args, self.sh = args, sh
        self.target = topology.parse(args.topology) if getattr(args, "topology", None) else None
        self.where = [f"--zone={args.zone}"] + ([f"--project={args.project}"] if args.project else [])

    @property
    def nodes(self) -> list[str]:
        n = self.target.num_slices if self.target else self.args.slices
        return [self.args.name] if n == 1 else [f"{self.args.name}-{i}" for i in range(n)]

    def ssh(self, node: str, command: str) -> None:
        self.sh(["gcloud", "compute", "tpus", "tpu-vm", "ssh", node, *self.where, "--worker=all",
                 f"--command={command}"])

    def create(self) -> None:
        t = self.target
        if t is None:
            fail("create needs --topology")
        spot = ["--spot"] if self.args.spot else []
        if t.num_slices == 1:
            self.sh(["gcloud", "compute", "tpus", "tpu-vm", "create", self.args.name, *self.where,
                     f"--accelerator-type={t.accelerator_type}", f"--version={t.chip.runtime}", *spot])
        else:  # multi-slice: one queued resource of several nodes joined over the data-center network
            self.sh(["gcloud", "compute", "tpus", "queued-resources", "create", self.args.name, *self.where,
                     f"--accelerator-type={t.accelerator_type}", f"--runtime-version={t.chip.runtime}",
                     f"--node-count={t.num_slices}", f"--node-prefix={self.args.name}", *spot])

    def exists(self) -> bool:
        if self.target is not None and self.target.num_slices > 1:
            return self.sh.ok(["gcloud", "compute", "tpus", "queued-resources", "describe", self.args.name,
                               *self.where])
        return self.sh.ok(["gcloud", "compute", "tpus", "tpu-vm", "describe", self.args.name, *self.where])

    def install(self) -> None:
        """This checkout's git HEAD (uncommitted changes are not shipped) and the jax[tpu] matching this
        machine's jax, on every worker."""
        from importlib.metadata import version

        jax_tpu = shlex.quote(f"jax[tpu]=={version('jax')}")
        archive = os.path.join("/tmp", "kdjax-src.tar.gz")
        self.sh(["git", "-C", REPO, "archive", "--format=tar.gz", f"--output={archive}", "HEAD"])
        for node in self.nodes:
            self.sh(["gcloud", "compute", "tpus", "tpu-vm", "scp", archive, f"{node}:~/", *self.where,
                     "--worker=all"])
            self.ssh(node, f"mkdir -p ~/{REMOTE_DIR} && tar -xzf ~/kdjax-src.tar.gz -C ~/{REMOTE_DIR} && "
                           f"pip install -q -e ~/{REMOTE_DIR} {jax_tpu}")

    def run(self) -> None:
        """The same command on every worker of every slice. Detached (nohup) so that a dropped ssh does not
        stop the job; its output goes to ~/kdjax.log on each worker."""
        cmd = shlex.join(main_command(self.args, "python3"))
        detached = f"cd ~/{REMOTE_DIR} && nohup {cmd} > ~/{LOG} 2>&1 &"
        for node in self.nodes:
            self.ssh(node, detached if self.args.detach else f"cd ~/{REMOTE_DIR} && {cmd}")

    def resume(self) -> None:
        """After a preemption the VM is gone (spot) or restarted (maintenance): recreate it if needed,
        reinstall, remount the workdir's bucket and run the same command, which resumes from the workdir's
        latest checkpoint."""
        if not self.exists():
            self.create()
        self.install()
        if self.args.bucket and self.args.mount:
            self.mount()
        self.run()

    def mount(self) -> None:
        if not (self.args.bucket and self.args.mount):
            fail("mount needs --bucket=gs://... and --mount=/path")
        bucket = self.args.bucket.removeprefix("gs://").split("/")[0]
        for node in self.nodes:
            self.ssh(node, f"sudo mkdir -p {self.args.mount} && sudo chown $USER {self.args.mount} && "
                           f"(mountpoint -q {self.args.mount} || gcsfuse --implicit-dirs {bucket} {self.args.mount})")

    def push(self) -> None:
        self._need_bucket()
        self.ssh(self.nodes[0], f"gcloud storage rsync --recursive {self.args.workdir} {self.args.bucket}")

    def pull(self) -> None:
        self._need_bucket()
        for node in self.nodes:
            self.ssh(node, f"mkdir -p {self.args.workdir} && "
                           f"gcloud storage rsync --recursive {self.args.bucket} {self.args.workdir}")

    def _need_bucket(self) -> None:
        if not (self.args.bucket and self.args.bucket.startswith("gs://")):
            fail("this subcommand needs --bucket=gs://bucket/path")

    def delete(self) -> None:
        if self.target is not None and self.target.num_slices > 1:
            self.sh(["gcloud", "compute", "tpus", "queued-resources", "delete", self.args.name, *self.where,
                     "--force", "--quiet"])
        else:
            self.sh(["gcloud", "compute", "tpus", "tpu-vm", "delete", self.args.name, *self.where, "--quiet"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["create", "install", "run", "resume", "mount", "push", "pull", "delete"],
                   help="what to do with the TPU VM")
    p.add_argument("--name", required=True, help="the TPU VM (or queued resource) name")
    p.add_argument("--zone", required=True, help="its zone, e.g. us-west4-a")
    p.add_argument("--project", default="", help="Google Cloud project (default: gcloud's)")
    p.add_argument("--topology", default="", help="v5e-16, v4-32, v5p-128, v6e-8, v5e-16x2 (two slices)")
    p.add_argument("--slices", type=int, default=1, help="without --topology: the number of slices")
    p.add_argument("--spot", action="store_true", help="spot capacity (preemptible; use resume after)")
    p.add_argument("--config", default="", help="run/resume: the kdjax config, e.g. configs/multi2cap.py")
    p.add_argument("--workdir", default="", help="run/resume/push/pull: the workdir on the workers")
    p.add_argument("--bucket", default="", help="gs://bucket/path for push, pull and mount")
    p.add_argument("--mount", default="", help="where mount puts the bucket on every worker")
    p.add_argument("--detach", action=argparse.BooleanOptionalAction, default=True,
                   help="run under nohup, output to ~/kdjax.log (default); --no-detach streams it")
    p.add_argument("--dry_run", action="store_true", help="print the commands instead of running them")
    args = parse(p, argv)
    if args.action in ("run", "resume") and not (args.config and args.workdir):
        p.error(f"{args.action} needs --config and --workdir")
    if args.action in ("push", "pull") and not args.workdir:
        p.error(f"{args.action} needs --workdir")
    try:
        tpu = Tpu(args, Shell(args.dry_run))
        getattr(tpu, args.action)()
    except ValueError as e:  # a bad --topology
        fail(str(e))
    except subprocess.CalledProcessError as e:
        fail(f"command failed ({e.returncode}): {shlex.join(e.cmd)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
