"""kdjax entry point.

    python -m kdjax.main --config=configs/dsg_kd.py:smoke --workdir=/tmp/run [--config.train.steps=10]

Any config key can be overridden on the command line; an unknown key fails naming the key. Running
again with the same workdir resumes from its latest checkpoint.
"""

from __future__ import annotations

import inspect
import io
import logging
import os
import sys

from absl import app, flags
from ml_collections import config_flags

from kdjax import cli, platforms

platforms.default_to_cpu_without_accelerators()  # before anything imports jax: no plugin noise on CPU hosts

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/dsg_kd.py:smoke.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, report). "
                               "Default: workdirs/<config name>-<variant>.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "caption", "predict", "teacher_cache", "cost", "export",
                                           "config"],
                          "train; config: print the resolved config (checked, with its overrides) as JSON and "
                          "exit, creating nothing; caption (Multi2Cap, EffAAC) or predict (DSG-KD notes, audio "
                          "tagging): batch inference on --input with a trained --workdir; teacher_cache: write a distillation "
                          "teacher's per-clip outputs (EffAAC) before training; cost: measure the config's "
                          "captioner on this host (parameters, GFLOPs, latency; EffAAC Table 3) into the workdir's "
                          "report.json; export: a trained workdir's model for PyTorch into --out. caption, predict "
                          "and export read the workdir's own config.json (no --config) and never write in it.")
_OUT = flags.DEFINE_string("out", None, "--mode=export: the directory the model is written to; --mode=caption/"
                           "predict: the JSONL file of predictions (default: standard output).")
_INPUT = flags.DEFINE_multi_string("input", [], "--mode=caption/predict: an audio file or note (.txt), a directory "
                                   "of them, or a manifest (.jsonl; .csv for notes); repeatable.")
_MERGE_LORA = flags.DEFINE_bool("merge_lora", False, "--mode=export (Multi2Cap): also write the LLaMA with its LoRA "
                                 "merged, as a plain Hugging Face directory (llama_merged/: the decoder's full size).")
_ALLOW_CHANGE = flags.DEFINE_bool("allow_config_change", False,
                                  "Resume a workdir with a config that differs from its config.json (refused by "
                                  "default, naming the differing keys; the mesh may always change).")
_AUDIO = flags.DEFINE_multi_string("audio", [], "The same as --input (audio files to caption).")
_COST_SECONDS = flags.DEFINE_float("cost_clip_seconds", 10.0, "--mode=cost: the clip's length (the paper's 10 s).")
_COST_TOKENS = flags.DEFINE_integer("cost_tokens", 20, "--mode=cost: tokens generated per caption (the paper's 20).")
_COST_REPEATS = flags.DEFINE_integer("cost_repeats", 10, "--mode=cost: timed runs averaged (the paper's 10).")
# multi-host jobs (kdjax/train/distributed.py): one process per host, all running this same command
_DISTRIBUTED = flags.DEFINE_enum("distributed", "auto", ["auto", "off", "explicit", "slurm", "tpu"],
                                 "How the processes of a multi-host job find each other. auto: explicit when "
                                 "a coordinator is given, else an srun step of >1 tasks, else a Cloud TPU VM, "
                                 "else a single process.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (explicit jobs).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the job (explicit jobs).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's rank (explicit jobs).")

def _default_workdir(config_arg: str) -> str:
    base, _, variant = config_arg.partition(":")
    name = os.path.splitext(os.path.basename(base))[0]
    return os.path.join("workdirs", f"{name}-{variant or 'default'}")


class _QuietLibraries(logging.Filter):
    """Orbax and grain log every save/restore at INFO; keep their warnings, drop the chatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        noisy = ("/orbax/" in record.pathname or "/grain/" in record.pathname
                 or "/etils/" in record.pathname)
        return record.levelno >= logging.WARNING or not noisy


def main(argv) -> None:
    for handler in logging.getLogger().handlers:
        handler.addFilter(_QuietLibraries())
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _MODE.value == "export":
        _export()
        return
    if _MODE.value in ("caption", "predict"):
        _infer(_MODE.value)
        return
    cfg = _CONFIG.value
    if cfg is None:
        raise app.UsageError("--config is required, e.g. --config=configs/dsg_kd.py:smoke")
    from kdjax.errors import InputError
    from kdjax.systems import contract, registry

    # Every problem of the config at once, before JAX touches a device, a checkpoint or a dataset. Captioning
    # reads the trained workdir, not the training data, so it does not need the data paths to exist.
    try:
        system, cfg, adjustments = registry.resolve(cfg, paths=_MODE.value != contract.COST)
    except InputError as e:
        sys.exit(f"kdjax: {e}")
    if _MODE.value == "config":
        print(cfg.to_json_best_effort(indent=2, sort_keys=True))
        if adjustments:
            print("kdjax: adjusted: " + "; ".join(adjustments), file=sys.stderr)
        return
    if _MODE.value in contract.CAPABILITIES and not system.supports(_MODE.value):
        sys.exit(f"kdjax: system {system.name!r} has no --mode={_MODE.value} (it supports: "
                 f"{', '.join(['train', *sorted(system.capabilities)])})")
    from kdjax.train import distributed

    try:
        join = distributed.plan(_DISTRIBUTED.value, _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    except ValueError as e:
        sys.exit(f"kdjax: {e}")
    distributed.initialize(join)
    workdir = _WORKDIR.value or _default_workdir(config_flags.get_config_filename(flags.FLAGS["config"]))
    from kdjax import paths

    paths.makedirs(workdir)
    logging.info("workdir %s", os.fspath(paths.path(workdir)))

    from kdjax.train.logging import is_main_process
    from kdjax.train.trainer import Trainer

    if _MODE.value == contract.COST:
        from kdjax.metrics import cost

        try:
            setup = cost.CostSetup(_COST_SECONDS.value, _COST_TOKENS.value, _COST_REPEATS.value,
                                   int(cfg.eval.generate.num_beams))
            model, tok = system.cost_model(cfg)
            result = cost.measure(model, int(cfg.data.sample_rate), setup, eos_token_id=tok.eos_token_id or 2,
                                  pad_token_id=tok.pad_token_id or 0)
        except (InputError, FileNotFoundError, ValueError) as e:
            sys.exit(f"kdjax: {e}")
        print(f"report: {cost.write_report(workdir, system.name, cfg, result)}")
        return
    if _MODE.value == "teacher_cache":
        try:
            print(f"teacher cache: {system.make_teacher_cache(cfg, workdir)}")
        except (InputError, FileNotFoundError) as e:
            sys.exit(f"kdjax: {e}")
        return
    from kdjax.train.trainer import DivergenceError
    from kdjax.train.workdir_lock import WorkdirLock

    lock = WorkdirLock(workdir)  # one run per workdir (process 0 holds it for a multi-host job)
    try:
        if is_main_process():
            lock.acquire()
        from kdjax.train import resume_config

        changed = resume_config.check(workdir, cfg, _ALLOW_CHANGE.value)
        if changed:
            logging.warning("resuming with a changed config (--allow_config_change): %s", "; ".join(changed))
        task = system.build(cfg, workdir)
        if adjustments:
            task.info["config_adjustments"] = adjustments
        result = Trainer(cfg, task, workdir).run()
    except (InputError, FileNotFoundError, DivergenceError) as e:  # bad input, a batch that differs from the
        sys.exit(f"kdjax: {e}")                                      # system's description, divergence
    finally:
        lock.release()
    if is_main_process():
        print(f"report: {result.report_path}")


def _export() -> None:
    """--mode=export: everything is checked before anything is written; the workdir is only read."""
    from kdjax import paths
    from kdjax.errors import InputError
    from kdjax.systems import contract, registry
    from kdjax.train.restore import workdir_config

    if not _WORKDIR.value or not _OUT.value:
        sys.exit("kdjax: --mode=export needs --workdir=W (a trained run) and --out=DIR")
    if _CONFIG.value is not None:
        sys.exit("kdjax: --mode=export reads the workdir's own config.json; drop --config")
    try:
        cfg = workdir_config(_WORKDIR.value)
        system = registry.get(cfg.get("system", ""))
    except (InputError, FileNotFoundError, KeyError, ValueError) as e:
        sys.exit(f"kdjax: {e}")
    if not system.supports(contract.EXPORT):
        sys.exit(f"kdjax: system {system.name!r} has no --mode=export yet")
    if paths.isdir(_OUT.value) and paths.listdir(_OUT.value) or paths.isfile(_OUT.value):
        sys.exit(f"kdjax: --out={_OUT.value} exists and is not empty; give a new directory")
    options = {}
    if _MERGE_LORA.value:
        if "merge_lora" not in inspect.signature(system.export).parameters:
            sys.exit(f"kdjax: --merge_lora: system {system.name!r} exports no LoRA-adapted decoder")
        options["merge_lora"] = True
    try:  # the exporters write through transformers and safetensors, which need a local directory
        with paths.local_dir(_OUT.value) as local:
            written = [paths.join(_OUT.value, os.path.relpath(p, local))
                       for p in system.export(_WORKDIR.value, local, **options)]
    except (InputError, FileNotFoundError) as e:
        sys.exit(f"kdjax: {e}")
    for path in written:
        print(path)


def _infer(mode: str) -> None:
    """--mode=caption/predict: the workdir and every input are checked, and --out is refused if it exists, before
    the model is read or anything is written; the workdir is only read. Unreadable inputs are named on stderr,
    skipped and counted; the exit status is 1 when none could be read."""
    from kdjax import paths
    from kdjax.errors import InputError
    from kdjax.systems import contract, inference, registry
    from kdjax.train.restore import workdir_config

    if not _WORKDIR.value:
        sys.exit(f"kdjax: --mode={mode} needs --workdir=W (a trained run) and --input=... (repeatable)")
    if _CONFIG.value is not None:
        sys.exit(f"kdjax: --mode={mode} reads the workdir's own config.json; drop --config")
    out = _OUT.value
    try:
        cfg = workdir_config(_WORKDIR.value)
        system = registry.get(cfg.get("system", ""))
        if not system.supports(mode):
            other = [m for m in contract.INFERENCE if system.supports(m)]
            sys.exit(f"kdjax: system {system.name!r} has no --mode={mode}"
                     + (f"; use --mode={other[0]}" if other else ""))
        items = inference.list_inputs([*_INPUT.value, *_AUDIO.value], system.inputs,
                                      str(cfg.data.get("text_column", "text")))
        if out and paths.exists(out):
            sys.exit(f"kdjax: --out={out} exists; give a new file")
        predictor = system.predictor(cfg, _WORKDIR.value)
    except (InputError, FileNotFoundError, KeyError, ValueError) as e:
        sys.exit(f"kdjax: {e}")
    if out and paths.is_remote(out):  # one whole object, written when every row is in
        buf = io.StringIO()
        summary = inference.run(predictor, items, buf)
        paths.write_text(out, buf.getvalue())
    elif out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out + ".partial", "w", encoding="utf-8") as f:
            summary = inference.run(predictor, items, f)
        os.replace(out + ".partial", out)
    else:
        summary = inference.run(predictor, items, sys.stdout)
    for why in summary["skipped_inputs"]:
        print(f"kdjax: skipped {why}", file=sys.stderr)
    print(f"kdjax: {summary['written']} of {len(items)} inputs predicted"
          + (f", {summary['skipped']} skipped (unreadable)" if summary["skipped"] else "")
          + (f"; written to {out}" if out else ""), file=sys.stderr)
    if summary["written"] == 0:
        sys.exit(1)


def _parse(argv: list[str]) -> list[str]:
    """absl flag parsing, with config override errors (unknown keys, bad values) as one clean line."""
    argv = cli.packaged_config(argv)
    try:
        with cli.help_exits_zero(argv):
            return flags.FLAGS(argv)
    except (AttributeError, KeyError, TypeError, ValueError, flags.Error) as e:
        err: object = e
        while isinstance(err, BaseException) and err.args:  # ml_collections nests KeyError in AttributeError
            err = err.args[0]
        msg = " ".join(str(err).split())
        if isinstance(e, (AttributeError, KeyError)):
            key = msg.split("'")[1] if msg.count("'") >= 2 else msg
            culprits = [a.split("=")[0] for a in argv if a.startswith("--config.") and key in a.split("=")[0]]
            msg = f"unknown config key {culprits[0] if culprits else key!r}: {msg}"
        sys.exit(f"kdjax: bad command line: {msg}")


def run() -> None:
    app.run(main, flags_parser=_parse)


if __name__ == "__main__":
    run()
