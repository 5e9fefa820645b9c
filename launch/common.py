"""What the launch scripts share: a shell that prints each command and, unless it is a dry run, runs it."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from collections.abc import Sequence

REPO = __file__.rsplit("/launch/", 1)[0]


class Shell:
    def __init__(self, dry_run: bool):
        self.dry_run = dry_run

    def __call__(self, cmd: Sequence[str], check: bool = True) -> int:
        print("+ " + shlex.join(cmd), flush=True)
        if self.dry_run:
            return 0
        return subprocess.run(list(cmd), check=check).returncode

    def ok(self, cmd: Sequence[str]) -> bool:
        """Whether a probing command succeeds (a dry run assumes it fails, so it prints the whole plan)."""
        print("+ " + shlex.join(cmd) + "   # probe", flush=True)
        if self.dry_run:
            return False
        return subprocess.run(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="e.g. configs/multi2cap.py:small")
    p.add_argument("--workdir", required=True, help="run directory; running again resumes from it")
    p.add_argument("--dry_run", action="store_true", help="print the commands instead of running them")


def split_overrides(argv: list[str] | None) -> tuple[list[str], list[str]]:
    """(launcher arguments, kdjax config overrides): the overrides are everything after `--`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def main_command(args: argparse.Namespace, python: str = "python", *extra: str) -> list[str]:
    """The kdjax command every process of the job runs."""
    return [python, "-m", "kdjax.main", f"--config={args.config}", f"--workdir={args.workdir}", *extra,
            *args.overrides]


def parse(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Launcher flags, then `--` and kdjax's own flags and config overrides (passed through untouched)."""
    mine, overrides = split_overrides(argv)
    args = p.parse_args(mine)
    args.overrides = overrides
    return args


def fail(msg: str) -> None:
    sys.exit(f"{sys.argv[0]}: {msg}")
