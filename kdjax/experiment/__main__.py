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

# Flags are defined when the command runs, not on import: kdjax.main defines its own --config, and a process may
# import both modules (e.g. to list every module).
_FLAGS: dict = {}


def _define_flags() -> None:
    if _FLAGS:
        return
    _FLAGS["config"] = config_flags.DEFINE_config_file(
        "config", None, "An experiment file, e.g. configs/experiments/x.py:smoke.", lock_config=True)
    _FLAGS["workdir"] = flags.DEFINE_string("workdir", None, "The experiment's directory (its runs, status, tables).")
    _FLAGS["print"] = flags.DEFINE_enum(
        "print", None, ["main", "slurm", "tpu"], "Print one launch command per unfinished run instead of running: "
        "kdjax.main itself, or launch/slurm.py / launch/tpu.py run with --launch_args.")
    _FLAGS["launch_args"] = flags.DEFINE_string("launch_args", "",
                                                "The cluster flags of launch/slurm.py or launch/tpu.py run.")
    _FLAGS["aggregate_only"] = flags.DEFINE_bool("aggregate_only", False,
                                                 "Only write the table and figure of finished runs.")
    _FLAGS["allow_change"] = flags.DEFINE_bool("allow_change", False, "Go on although the rows or overrides differ "
                                               "from the ones the directory's runs were started with.")


_RUN_OVERRIDES: list[str] = []  # kdjax.main's own overrides (after --), for every run


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}: overrides for the runs go after --")
    extra = list(_RUN_OVERRIDES)
    cfg, workdir = _FLAGS["config"].value, _FLAGS["workdir"].value
    if cfg is None or not workdir:
        raise app.UsageError("--config (an experiment file) and --workdir are required")
    bad = [a for a in extra if not a.startswith("--config.")]
    if bad:
        raise app.UsageError(f"after --, only --config.KEY=VALUE overrides for every run, got {bad}")
    from kdjax import paths
    from kdjax.errors import InputError
    from kdjax.experiment import aggregate, runner, spec

    try:
        exp = spec.read(cfg, config_flags.get_config_filename(flags.FLAGS["config"]))
        if _FLAGS["print"].value:
            for line in runner.launch_commands(exp, workdir, extra, _FLAGS["print"].value,
                                               _FLAGS["launch_args"].value):
                print(line)
            return
        status = {} if _FLAGS["aggregate_only"].value else runner.run_all(
            exp, workdir, extra, allow_change=_FLAGS["allow_change"].value)
        summary = aggregate.write(exp, workdir)
    except runner.Stopped:
        sys.exit(143)
    except InputError as e:
        sys.exit(f"kdjax.experiment: {e}")
    print(paths.read_text(paths.join(workdir, "table.md")))
    print(f"table: {workdir}/table.md (.json, .csv)" + (f"; figure: {summary['figure']}"
                                                         if summary.get("figure") else ""))
    if any(s.get("status") in ("failed", "waiting") for s in status.values()):
        sys.exit(1)


def run(argv: list[str]) -> None:
    """Split the command line at -- before absl sees it: the runs' --config.* overrides would otherwise be read as
    overrides of the experiment file (both are --config)."""
    from kdjax.cli import packaged_config

    if "--" in argv:
        i = argv.index("--")
        argv, _RUN_OVERRIDES[:] = argv[:i], argv[i + 1:]
    argv = packaged_config(argv)
    sys.argv = list(argv)  # config_flags reads its overrides from sys.argv itself
    _define_flags()
    from kdjax.cli import help_exits_zero

    def parse(args: list[str]) -> list[str]:
        with help_exits_zero(args):
            return flags.FLAGS(args)

    app.run(main, argv=argv, flags_parser=parse)


def cli() -> None:
    """The `kdjax-experiment` command."""
    run(sys.argv)


if __name__ == "__main__":
    cli()
