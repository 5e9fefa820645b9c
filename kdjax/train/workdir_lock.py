"""One run per workdir: a lock file that a second run refuses at once, naming the first, and that a killed run
does not leave stuck (a lock whose process is gone is taken over).

Only process 0 of a multi-host job locks (the workdir is shared; the other processes follow its lead). The same
lock keeps two `python -m kdjax.vggcaps build`s off one output folder (each would pay the LLM for the same items).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time

from kdjax import paths
from kdjax.errors import InputError

LOCK = ".kdjax.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


class WorkdirLock:
    """`with WorkdirLock(workdir):` holds the workdir for this run; InputError if a live run holds it."""

    def __init__(self, workdir: str, *, who: str = "run", what: str = "workdir", flag: str = "--workdir"):
        self.path = paths.join(workdir, LOCK)
        self.held = False
        self.who, self.what, self.flag = who, what, flag  # for the message: "another run is using this workdir"

    def acquire(self) -> None:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(2):
            try:
                paths.create_exclusive(self.path, json.dumps(me))
            except FileExistsError:
                other = self._read()
                if other is None or (other.get("host") == me["host"] and not _alive(int(other.get("pid", -1)))):
                    logging.warning("workdir lock %s: taking over a stale lock (%s)", self.path,
                                    "unreadable" if other is None else f"pid {other.get('pid')} is gone")
                    try:
                        paths.remove(self.path)
                    except FileNotFoundError:
                        pass
                    continue
                raise InputError(f"{os.path.dirname(self.path)}: another {self.who} is using this {self.what} (pid "
                                 f"{other.get('pid')} on {other.get('host')}, started {other.get('started')}); wait "
                                 f"for it or stop it, or use another {self.flag} (if that {self.who} is gone, "
                                 f"delete {self.path})") from None
            self.held = True
            return
        raise InputError(f"{self.path}: could not take the workdir lock")

    def _read(self) -> dict | None:
        try:
            with paths.open(self.path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self.held:
            try:
                paths.remove(self.path)
            except FileNotFoundError:
                pass
            self.held = False

    def __enter__(self) -> "WorkdirLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
