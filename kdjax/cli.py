"""What kdjax's command lines share: the configs installed with kdjax, and --help that exits 0."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

HELP = ("--help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")


def packaged_config(argv: list[str]) -> list[str]:
    """`argv` with a `--config=configs/...` that does not exist here pointed at the configs installed with kdjax
    (the wheel ships them as the `configs` package), so the README's commands work from any directory."""
    import importlib.util

    out = []
    for a in argv:
        if a.startswith("--config="):
            path, sep, variant = a[len("--config="):].partition(":")
            norm = path.replace(os.sep, "/")
            if not os.path.exists(path) and norm.startswith("configs/"):
                spec = importlib.util.find_spec("configs")
                for root in (spec.submodule_search_locations or []) if spec else []:
                    candidate = os.path.join(root, *norm.split("/")[1:])
                    if os.path.isfile(candidate):
                        a = f"--config={candidate}{sep}{variant}"
                        break
        out.append(a)
    return out


@contextlib.contextmanager
def help_exits_zero(argv: list[str]) -> Iterator[None]:
    """absl prints the usage for --help and exits 1; asking for help is not an error."""
    try:
        yield
    except SystemExit as e:
        if e.code == 1 and any(a in HELP for a in argv[1:]):
            sys.exit(0)
        raise
