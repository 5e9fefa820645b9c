"""Run a paper's experiment and aggregate it into the paper's table and figure.

    python -m kdjax.experiment --config=configs/experiments/dsg_kd_table2_4.py --workdir=experiments/t24 \
        [--config.seeds="(0,1,2)"] [-- --config.data.train_file=... (applied to every run)]
    python -m kdjax.experiment ... --print=slurm --launch_args="--nodes=1 --partition=gpu"   # commands only
    python -m kdjax.experiment ... --aggregate_only      # the table from whatever has finished

Runs go to DIR/runs/<row>/seed<k> (each a kdjax workdir: running again skips finished runs and resumes a cut
one); DIR/status.json says how each went; DIR/table.{md,json,csv} and DIR/figure.png hold the aggregate.
Exit status: 0 when every run finished, 1 when some failed (the table holds the others), 143 when stopped.
"""

from __future__ import annotations

import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "An experiment file, e.g. configs/experiments/x.py:smoke.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "The experiment's directory (its runs, status and tables).")
_PRINT = flags.DEFINE_enum("print", None, ["main", "slurm", "tpu"],
                           "Print one launch command per unfinished run instead of running: kdjax.main itself, or "
                           "launch/slurm.py / launch/tpu.py run with --launch_args.")
_LAUNCH_ARGS = flags.DEFINE_string("launch_args", "", "The cluster flags of launch/slurm.py or launch/tpu.py run.")
_AGGREGATE_ONLY = flags.DEFINE_bool("aggregate_only", False, "Only write the table and figure of finished runs.")
_ALLOW_CHANGE = flags.DEFINE_bool("allow_change", False, "Go on although the rows or overrides differ from the "
                                  "ones the directory's runs were started with.")


_RUN_OVERRIDES: list[str] = []  # kdjax.main's own overrides (after --), for every run


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}: overrides for the runs go after --")
    extra = list(_RUN_OVERRIDES)
    if _CONFIG.value is None or not _WORKDIR.value:
        raise app.UsageError("--config (an experiment file) and --workdir are required")
    bad = [a for a in extra if not a.startswith("--config.")]
    if bad:
        raise app.UsageError(f"after --, only --config.KEY=VALUE overrides for every run, got {bad}")
    from kdjax.errors import InputError
    from kdjax.experiment import aggregate, runner, spec

    try:
        exp = spec.read(_CONFIG.value, config_flags.get_config_filename(flags.FLAGS["config"]))
        if _PRINT.value:
            for line in runner.launch_commands(exp, _WORKDIR.value, extra, _PRINT.value, _LAUNCH_ARGS.value):
                print(line)
            return
        status = {} if _AGGREGATE_ONLY.value else runner.run_all(exp, _WORKDIR.value, extra,
                                                                 allow_change=_ALLOW_CHANGE.value)
        summary = aggregate.write(exp, _WORKDIR.value)
    except runner.Stopped:
        sys.exit(143)
    except InputError as e:
        sys.exit(f"kdjax.experiment: {e}")
    print(open(f"{_WORKDIR.value}/table.md", encoding="utf-8").read())
    print(f"table: {_WORKDIR.value}/table.md (.json, .csv)" + (f"; figure: {summary['figure']}"
                                                                if summary.get("figure") else ""))
    if any(s.get("status") in ("failed", "waiting") for s in status.values()):
        sys.exit(1)


def run(argv: list[str]) -> None:
    """Split the command line at -- before absl sees it: the runs' --config.* overrides would otherwise be read as
    overrides of the experiment file (both are --config)."""
    if "--" in argv:
        i = argv.index("--")
        argv, _RUN_OVERRIDES[:] = argv[:i], argv[i + 1:]
    sys.argv = list(argv)  # config_flags reads its overrides from sys.argv itself
    app.run(main, argv=argv)


if __name__ == "__main__":
    run(sys.argv)
