"""SPICE 1.0 through its jar (Anderson et al. 2016): F-score of scene-graph tuples.

The jar needs Stanford CoreNLP 3.6.0 (`stanford-corenlp-3.6.0.jar` and `stanford-corenlp-3.6.0-models.jar`
in the `lib/` directory beside `spice-1.0.jar`), which cannot be downloaded here, so SPICE runs only
when the user provides them (`KDJAX_SPICE_JAR` or the `spice_jar` argument pointing to a spice-1.0.jar
whose lib/ holds them; pycocoevalcap's wheel ships the jar and every other lib). Invocation and output
handling follow pycocoevalcap 1.2: input JSON of {image_id, test, refs}, `-subset -silent`, an 8 GB
heap, the per-item "All" F-score, corpus score = their mean.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile

import numpy as np

from kdjax.metrics.captioning import java

CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "kdjax", "spice")


def score(cand: list[str], refs: list[list[str]], jar: str | None = None
          ) -> tuple[float, np.ndarray]:
    """(corpus SPICE, per-item) for tokenised sentences; ToolUnavailable when the jars are missing."""
    path = java.locate(java.SPICE, jar)
    os.makedirs(CACHE_DIR, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = os.path.join(tmp, "in.json"), os.path.join(tmp, "out.json")
        with open(inp, "w") as f:
            json.dump([{"image_id": i, "test": c, "refs": list(r)} for i, (c, r) in enumerate(zip(cand, refs))], f)
        cmd = [java.java_executable(), "-Xmx8G", "-jar", path, inp, "-cache", CACHE_DIR, "-out", out,
               "-subset", "-silent"]
        proc = subprocess.run(cmd, cwd=os.path.dirname(path), capture_output=True)
        if proc.returncode != 0 or not os.path.isfile(out):
            raise RuntimeError(f"SPICE ({path}) failed with code {proc.returncode}: "
                               f"{proc.stderr.decode(errors='replace')[-2000:]}")
        with open(out) as f:
            results = json.load(f)
    by_id = {int(r["image_id"]): r["scores"]["All"]["f"] for r in results}
    missing = [i for i in range(len(cand)) if i not in by_id]
    if missing:
        raise RuntimeError(f"SPICE output lacks items {missing[:10]} (of {len(missing)})")

    def num(v):
        try:
            return float(v)
        except (TypeError, ValueError):  # the jar writes NaN as a string or null
            return float("nan")

    per_item = np.array([num(by_id[i]) for i in range(len(cand))])
    return float(np.mean(per_item)), per_item
