"""Running an experiment's runs one after another on this host (finished ones skipped, a cut one resumed, a failed
one reported while the others go on), or printing one launch command per run for a cluster."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

from kdjax import paths
from kdjax.errors import InputError
from kdjax.experiment.spec import Experiment, Run
from kdjax.train import resume_config

STATUS, RECORD = "status.json", "experiment.json"
LAUNCHERS = ("main", "slurm", "tpu")


def finished(run: Run) -> bool:
    """A run is done when kdjax.main wrote its report (the last thing a run does)."""
    return paths.isfile(paths.join(run.workdir, "report.json"))


def gate_failures(exp: Experiment, run: Run) -> list[str]:
    """The conditions of its row's gate a finished run's report does not meet ('path = value, not op threshold', in
    the table's unit); [] when it meets them all or its row has none."""
    if not run.row.gate:
        return []
    from kdjax.experiment.aggregate import report_value
    from kdjax.experiment.spec import GATE_OPS

    path = paths.join(run.workdir, "report.json")
    report = _read_json(path, "the run's results")
    out = []
    for key, op, value in run.row.gate:
        got = report_value(report, key, path) * exp.scale
        if not GATE_OPS[op](got, value):
            out.append(f"{key} = {got:.6g}, not {op} {value:g}")
    return out


def started(run: Run) -> bool:
    return resume_config.resuming(run.workdir)


def _record(exp: Experiment, extra: list[str]) -> dict[str, Any]:
    """What decides the runs' results: a second invocation on the same directory must agree on it (seeds may be
    added; names, metrics, paper numbers and figures only change the aggregate)."""
    return {"rows": [{"name": r.name, "config": r.config, "overrides": r.overrides,
                      **({"mode": r.mode} if r.mode != "train" else {})} for r in exp.rows],
            "overrides": list(extra)}


def _read_json(path: str, what: str) -> dict:
    try:
        out = json.loads(paths.read_text(path))
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: unreadable ({e}); it records {what}: fix or delete it") from None
    if not isinstance(out, dict):
        raise InputError(f"{path}: expected a JSON object; it records {what}: fix or delete it")
    return out


def check_record(root: str, exp: Experiment, extra: list[str], allow_change: bool) -> None:
    path = paths.join(root, RECORD)
    mine = _record(exp, extra)
    if paths.isfile(path):
        theirs = _read_json(path, "the settings the directory's runs were started with")
        if not isinstance(theirs.get("rows"), list) or not isinstance(theirs.get("overrides"), list):
            raise InputError(f"{path}: expected rows and overrides; fix or delete it")
        diff = resume_config.differences(
            {"rows": {r["name"]: r for r in theirs["rows"]}, "overrides": theirs["overrides"]},
            {"rows": {r["name"]: r for r in mine["rows"]}, "overrides": mine["overrides"]})
        diff = [d for d in diff if not (d.startswith("rows.") and "<absent>" in d)]  # rows added or dropped
        if diff and not allow_change:
            raise InputError(f"{root}: its runs were started with other settings ({path}):\n  " + "\n  ".join(diff)
                             + "\nUse another --workdir, or --allow_change to go on (finished runs are kept)")
    paths.write_text(path, json.dumps(mine, indent=2))


def load_status(root: str) -> dict[str, dict]:
    path = paths.join(root, STATUS)
    if not paths.isfile(path):
        return {}
    return _read_json(path, "how each run went")


def _save_status(root: str, status: dict[str, dict]) -> None:
    paths.write_text(paths.join(root, STATUS), json.dumps(status, indent=2, sort_keys=True))


def _last_error(log: str) -> str:
    """The line a failed run ended with (kdjax prints 'kdjax: <what went wrong>')."""
    try:
        text = paths.read_bytes(log).decode("utf-8", errors="replace")
        lines = [ln.strip() for ln in text.splitlines()[-200:] if ln.strip()]
    except OSError:
        return ""
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("kdjax:"):  # its message may go on over the next lines (a list of problems)
            return " ".join(lines[i:])[:500]
    for ln in reversed(lines):
        if "Error" in ln:
            return ln[:500]
    return lines[-1][:500] if lines else ""


class Stopped(Exception):
    """The runner was asked to stop (SIGTERM/SIGINT); the run in progress wrote a checkpoint and can resume."""


def _execute(cmd: list[str], log: str, env: dict | None) -> int:
    """Run one kdjax command, its output appended to `log`; SIGTERM/SIGINT to the runner reach the run (which
    checkpoints and exits) and then stop the experiment. A log in a bucket is written here and appended there when
    the run ends (objects cannot be appended to while a process writes them)."""
    remote = paths.is_remote(log)
    staged = tempfile.NamedTemporaryFile(prefix="kdjax-run-", suffix=".log", delete=False).name if remote else log
    if not remote:
        os.makedirs(os.path.dirname(log), exist_ok=True)
    stop: list[int] = []
    with open(staged, "a", encoding="utf-8") as f:
        f.write(f"\n$ {shlex.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)

        def forward(sig, _frame):
            stop.append(sig)
            proc.send_signal(signal.SIGTERM)

        old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            rc = proc.wait()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
    if remote:
        paths.makedirs(os.path.dirname(log))
        paths.append_text(log, paths.read_text(staged))
        os.remove(staged)
    if stop:
        raise Stopped(f"stopped by signal {stop[0]}; the run in progress exited {rc}")
    return rc


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def run_all(exp: Experiment, root: str, extra: list[str], *, allow_change: bool = False,
            python: str = sys.executable, env: dict | None = None,
            say: Callable[[str], None] = lambda s: print(s, flush=True)) -> dict[str, dict]:
    """Run every run of `exp` not yet finished, in order, under `root`; returns the status of each run (also in
    root/status.json). A failed run is recorded and the next one starts; running again retries it. The runs share
    one persistent XLA compilation cache (root/compile_cache, unless JAX_COMPILATION_CACHE_DIR is set): the seeds
    of a row compile the same programs, which takes a CPU run about as long as its training."""
    paths.makedirs(root)
    env = dict(os.environ if env is None else env)
    cache = (os.path.join(tempfile.gettempdir(), "kdjax-compile-cache") if paths.is_remote(root)  # not a request
             else os.path.join(os.path.abspath(root), "compile_cache"))                          # per program
    env.setdefault("JAX_COMPILATION_CACHE_DIR", cache)
    check_record(root, exp, extra, allow_change)
    status = load_status(root)
    runs = exp.runs(root)
    todo = [r for r in runs if not finished(r)]
    for r in runs:
        if finished(r):
            status.setdefault(r.name, {"status": "finished"})["status"] = "finished"
    say(f"{exp.name}: {len(runs)} runs ({len(exp.rows)} rows, seeds {', '.join(map(str, exp.seeds))}), "
        f"{len(runs) - len(todo)} finished, {len(todo)} to run")
    took: list[float] = []
    by_name = {(r.row.name, r.seed): r for r in runs}
    for k, run in enumerate(todo):
        # a later stage whose earlier stage did not meet its row's gate: not run, said so (on every invocation: the
        # gate is read again from the earlier run's report)
        gated = {f"{n} / seed {s}": gate_failures(exp, by_name[(n, s)]) for n, s in run.after
                 if finished(by_name[(n, s)])}
        gated = {n: f for n, f in gated.items() if f}
        if gated:
            status[run.name] = {"status": "gated", "by": gated}
            say(f"[run {run.index} of {len(runs)}] {run.row.name}, seed {run.seed}: not run, the gate of "
                + "; ".join(f"{n} failed ({', '.join(f)})" for n, f in gated.items()))
            _save_status(root, status)
            continue
        waiting = [f"{n} / seed {s}" for n, s in run.after if not finished(by_name[(n, s)])]
        if waiting:  # a later stage whose earlier stage failed: not run, said so
            status[run.name] = {"status": "waiting", "for": waiting}
            say(f"[run {run.index} of {len(runs)}] {run.row.name}, seed {run.seed}: not started, it starts from "
                f"{', '.join(waiting)}, which has not finished")
            _save_status(root, status)
            continue
        eta = f", about {_clock(sum(took) / len(took) * (len(todo) - k))} left" if took else ""
        say(f"[run {run.index} of {len(runs)}] {run.row.name}, seed {run.seed}: "
            f"{'resuming' if started(run) else 'starting'}{eta}")
        log = paths.join(run.workdir, "run.log")
        t0 = time.time()
        try:
            rc = _execute(run.command(extra, python), log, env)
        except Stopped as e:
            status[run.name] = {"status": "stopped", "workdir": run.workdir, "log": log}
            _save_status(root, status)
            say(f"[run {run.index} of {len(runs)}] {e}; run the same command again to resume")
            raise
        seconds = time.time() - t0
        took.append(seconds)
        if rc == 0 and finished(run):
            status[run.name] = {"status": "finished", "seconds": round(seconds, 1), "workdir": run.workdir}
            say(f"[run {run.index} of {len(runs)}] {run.row.name}, seed {run.seed}: finished in {_clock(seconds)}")
            if run.row.gate:
                failures = gate_failures(exp, run)
                status[run.name]["gate"] = {"passed": not failures, "failed": failures}
                say(f"[run {run.index} of {len(runs)}] gate: " + (f"FAILED ({', '.join(failures)}): the runs that "
                                                                  "start from it will not run" if failures else
                                                                  "passed"))
        else:
            error = _last_error(log)
            status[run.name] = {"status": "failed", "exit_code": rc, "error": error, "log": log,
                                "workdir": run.workdir}
            say(f"[run {run.index} of {len(runs)}] {run.row.name}, seed {run.seed}: FAILED (exit {rc}): {error} "
                f"(log: {log}); going on with the others")
        _save_status(root, status)
    failed = [n for n, s in status.items() if s.get("status") in ("failed", "waiting", "gated")]
    say(f"{exp.name}: {sum(finished(r) for r in runs)} of {len(runs)} runs finished"
        + (f"; failed: {', '.join(failed)}" if failed else ""))
    return status


def launch_commands(exp: Experiment, root: str, extra: list[str], launcher: str = "main",
                    launch_args: str = "") -> list[str]:
    """One shell command per run not yet finished: kdjax.main itself, or launch/slurm.py / launch/tpu.py run with
    `launch_args` (the cluster's flags); each resumes its run when given again. A run that starts from another
    row's run (a fine-tuning stage) ends in a comment naming it: launch it once that one has finished. Runs whose
    earlier stage failed its row's gate are left out."""
    if launcher not in LAUNCHERS:
        raise InputError(f"--print: one of {', '.join(LAUNCHERS)}, got {launcher!r}")
    out = []
    runs = exp.runs(root)
    by_name = {(r.row.name, r.seed): r for r in runs}
    for run in runs:
        if finished(run) or any(finished(by_name[a]) and gate_failures(exp, by_name[a]) for a in run.after):
            continue  # done, or never to run: an earlier stage it starts from failed its gate
        where = [f"--config={run.row.config}", f"--workdir={run.workdir}"]
        if launcher == "main":
            out.append(shlex.join(["python", "-m", "kdjax.main", *where, *run.mode_flags(), *run.overrides(extra)]))
        else:
            script = ["python", "launch/slurm.py"] if launcher == "slurm" else ["python", "launch/tpu.py", "run"]
            out.append(shlex.join([*script, *shlex.split(launch_args), *where, "--", *run.mode_flags(),
                                   *run.overrides(extra)]))
        if run.after:
            out[-1] += f"  # after: {', '.join(f'{n} / seed {s}' for n, s in run.after)}"
    return out
