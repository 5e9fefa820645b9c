"""METEOR 1.5 through its jar, as the COCO caption evaluation code runs it.

Denkowski & Lavie (2014): the jar aligns candidate and references (exact, stem, synonym, paraphrase
modules for English), computes per-item statistics ("SCORE" lines) and aggregates them ("EVAL"); the
corpus score is the jar's aggregate over all items' statistics, not a mean of item scores. Arguments
(`-l en -norm`, `-stdio`, 2 GB heap) and the protocol are those of pycocoevalcap 1.2, so the scores are
identical; unlike that wrapper, requests are pipelined (one write of all SCORE lines by a thread while
the answers are read) instead of one round trip per item, and the JVM is kept running between calls
(`shared()`), because starting it costs ~10 s of paraphrase-table loading while scoring 1,000 items
takes ~1 s.
"""

from __future__ import annotations

import atexit
import subprocess
import threading

import numpy as np

from kdjax.metrics.captioning import java

_SHARED: dict[tuple[str, str], "Meteor"] = {}


class Meteor:
    """A running METEOR process. Thread-safe; close() (or process exit) stops it."""

    def __init__(self, jar: str | None = None):
        self.jar = java.locate(java.METEOR, jar)
        # ParallelGC only changes how fast the JVM loads the paraphrase table (~15% on 2 cores).
        self.cmd = [java.java_executable(), "-Xmx2G", "-XX:+UseParallelGC", "-jar", self.jar, "-", "-",
                    "-stdio", "-l", "en", "-norm"]
        self._proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE)
        self._lock = threading.Lock()

    def _readline(self) -> str:
        line = self._proc.stdout.readline()
        if not line:
            err = self._proc.stderr.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"METEOR ({self.jar}) stopped unexpectedly: {err}")
        return line.decode().strip()

    def score(self, cand: list[str], refs: list[list[str]]) -> tuple[float, np.ndarray]:
        """(corpus METEOR, per-item) for tokenised sentences."""
        clean = lambda s: s.replace("|||", "").replace("  ", " ").replace("\n", " ")
        lines = [" ||| ".join(["SCORE", " ||| ".join(clean(r) for r in rs), clean(c)]) + "\n"
                 for c, rs in zip(cand, refs)]
        with self._lock:
            writer = threading.Thread(target=self._write, args=(lines,), daemon=True)
            writer.start()
            stats = [self._readline() for _ in lines]
            writer.join()
            self._write(["EVAL ||| " + " ||| ".join(stats) + "\n"])
            per_item = np.array([float(self._readline()) for _ in lines])
            corpus = float(self._readline())
        return corpus, per_item

    def _write(self, lines: list[str]) -> None:
        self._proc.stdin.write("".join(lines).encode())
        self._proc.stdin.flush()

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()
            self._proc.kill()
            self._proc.wait()


def shared(jar: str | None = None) -> Meteor:
    """One METEOR process per jar for the whole Python process (evaluations during training reuse it)."""
    key = (java.locate(java.METEOR, jar), java.java_executable())
    m = _SHARED.get(key)
    if m is None or m._proc.poll() is not None:
        m = _SHARED[key] = Meteor(jar)
    return m


@atexit.register
def _close_all() -> None:
    for m in _SHARED.values():
        m.close()
