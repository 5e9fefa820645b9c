"""Run outputs: metrics as JSON lines and TensorBoard events, a progress bar, the report table."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from typing import Any, Mapping

import jax

from kdjax import paths


def is_main_process() -> bool:
    return jax.process_index() == 0


class MetricWriter:
    """Appends {"step": s, "split": ..., metrics} to workdir/metrics.jsonl and TensorBoard scalars.

    Only process 0 writes. Lines already logged past the resume step are not repeated: a resumed run
    truncates the file to the last checkpoint so the log reads like one uninterrupted run.
    """

    def __init__(self, workdir: str, resume_step: int | None = None):
        self.enabled = is_main_process()
        self.path = paths.join(workdir, "metrics.jsonl")
        self._tb = None
        if not self.enabled:
            return
        if resume_step is not None and paths.exists(self.path):
            with paths.open(self.path) as f:
                rows = [(ln, json.loads(ln)) for ln in f if ln.strip()]
            # Evaluation of the finished run is redone on resume; drop its old lines.
            keep = [ln for ln, r in rows
                    if r.get("step", 0) <= resume_step and not r.get("split", "").startswith("final_")]
            paths.write_text(self.path, "".join(keep))
        elif resume_step is None and paths.exists(self.path):
            paths.remove(self.path)
        try:
            from tensorboardX import SummaryWriter

            # tensorboardX reaches buckets only through TensorFlow: a remote workdir's events are staged here
            # and uploaded when the writer closes (the JSONL log is the record either way)
            self._tb_dir = paths.join(workdir, "tensorboard")
            self._tb_stage = tempfile.mkdtemp(prefix="kdjax-tb-") if paths.is_remote(workdir) else None
            self._tb = SummaryWriter(self._tb_stage or self._tb_dir)
        except ImportError:  # TensorBoard is optional; the JSONL log is the record
            self._tb = None

    def write(self, step: int, split: str, metrics: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in metrics.items() if _is_number(v)}
        paths.append_text(self.path, json.dumps({"step": int(step), "split": split, **clean}) + "\n")
        if self._tb is not None:
            for k, v in clean.items():
                self._tb.add_scalar(f"{split}/{k}", v, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            if self._tb_stage is not None:
                paths.upload_tree(self._tb_stage, self._tb_dir)
                shutil.rmtree(self._tb_stage, ignore_errors=True)


def _is_number(v) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def progress_bar(total: int, desc: str, unit: str = "it", *, leave: bool = True, min_total: int = 1):
    """A tqdm bar on stderr for a long step (evaluation, a teacher cache, a conversion, a dataset build): process 0
    only, and none for fewer than `min_total` items. Use as a context manager; `.update(n)`."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True, file=sys.stderr,
                mininterval=1.0, disable=not is_main_process() or total < min_total)


class Progress:
    """tqdm bar over training steps showing loss and steps/s (process 0 only)."""

    def __init__(self, total: int, initial: int = 0, desc: str = "train"):
        self.bar = None
        self._t, self._s = time.perf_counter(), initial
        if is_main_process():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True,
                            file=sys.stderr, mininterval=1.0)

    def update(self, step: int, **postfix) -> float:
        now = time.perf_counter()
        rate = (step - self._s) / max(now - self._t, 1e-9)
        self._t, self._s = now, step
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix({**{k: f"{v:.4g}" for k, v in postfix.items()}, "steps/s": f"{rate:.2f}"},
                                 refresh=True)
        return rate

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def format_table(rows: Mapping[str, Mapping[str, float]], scale: float = 1.0) -> str:
    """{row name: {column: value}} -> a fixed-width text table."""
    cols: list[str] = []
    for r in rows.values():
        cols += [c for c in r if c not in cols]
    name_w = max([len(n) for n in rows] + [5])
    widths = [max(len(c), 8) for c in cols]
    lines = [" ".join([" " * name_w] + [c.rjust(w) for c, w in zip(cols, widths)])]
    for name, r in rows.items():
        cells = [(f"{r[c] * scale:.2f}" if c in r and _is_number(r[c]) else "-").rjust(w)
                 for c, w in zip(cols, widths)]
        lines.append(" ".join([name.ljust(name_w)] + cells))
    return "\n".join(lines)
