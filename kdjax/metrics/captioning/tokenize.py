"""Caption tokenisations applied before scoring; which one was used is recorded with the scores.

- "ptb": the COCO standard. Stanford CoreNLP 3.4.1's PTBTokenizer (`-preserveLines -lowerCase`, one
  sentence per line, run through Java on the jar pycocoevalcap ships), then the tokens in
  `PTB_PUNCTUATION` dropped. Because the lower-casing happens first, "-lrb-"/"-rrb-" (from parentheses)
  are *not* in that list and stay, exactly as in the COCO code.
- "loae": LOAE's scoring code: lower-case, delete punctuation characters (Unicode category P plus
  ASCII symbols such as `$`; "dog's" -> "dogs"), collapse whitespace. Runs in Python.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import unicodedata

from kdjax.metrics.captioning import java

PTB_PUNCTUATION = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",",
                             ":", "-", "--", "...", ";"])
MODES = ("ptb", "loae")


def ptb(texts: list[str], jar: str | None = None) -> list[str]:
    """PTB-tokenise `texts` in one Java call; returns space-joined lower-cased tokens."""
    if not texts:
        return []
    path = java.locate(java.CORENLP_PTB, jar)
    body = "\n".join(t.replace("\r", " ").replace("\n", " ") for t in texts)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", delete=False) as f:
        f.write(body)
    try:
        proc = subprocess.run([java.java_executable(), "-cp", path, "edu.stanford.nlp.process.PTBTokenizer",
                               "-preserveLines", "-lowerCase", f.name], capture_output=True)
    finally:
        os.remove(f.name)
    if proc.returncode != 0:
        raise RuntimeError(f"PTB tokenizer ({path}) failed with code {proc.returncode}: "
                           f"{proc.stderr.decode(errors='replace')[-2000:]}")
    lines = proc.stdout.decode("utf-8").split("\n")
    if len(lines) < len(texts):
        raise RuntimeError(f"PTB tokenizer returned {len(lines)} lines for {len(texts)} sentences")
    return [" ".join(w for w in line.rstrip().split(" ") if w not in PTB_PUNCTUATION)
            for line in lines[:len(texts)]]


def _is_punct(ch: str) -> bool:
    return unicodedata.category(ch).startswith("P") or ch in "$+<=>^`|~"


_SPACE = re.compile(r"\s+")


def loae(texts: list[str]) -> list[str]:
    """Lower-case, delete punctuation characters, collapse whitespace."""
    return [_SPACE.sub(" ", "".join(c for c in t.lower() if not _is_punct(c))).strip() for t in texts]


def tokenize(texts: list[str], mode: str, *, ptb_jar: str | None = None) -> list[str]:
    if mode == "ptb":
        return ptb(texts, ptb_jar)
    if mode == "loae":
        return loae(texts)
    raise ValueError(f"tokenization={mode!r}; expected one of {MODES}")
