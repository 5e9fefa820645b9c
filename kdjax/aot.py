"""Compile a config's real train step for a Cloud TPU slice or GPU nodes on this (CPU) host and say whether it
fits.

    python -m kdjax.aot --config=configs/multi2cap.py --topology=v5e-16 [--config.train.batch_size=256]

Models, losses, optimiser and shardings are the training run's; the shapes are abstract, so no weight is
read or allocated. Prints per-device bytes, the chip's HBM and the headroom, and the step's FLOPs; exits 2
with the compiler's out-of-memory message and the settings that would shrink the step when it does not fit.
Needs libtpu (`pip install "jax[tpu]==<jax version>"`), not a TPU; for GPUs (`--topology=h100-8`) jax's CUDA
plugin and a CUDA toolkit's ptxas, not a GPU.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from absl import app, flags

# The compile-only devices need neither an accelerator backend nor libtpu's one-process-per-host lock (which
# guards real chips): this CLI compiles on the host CPU, also next to a training job on a TPU VM.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

from kdjax.main import _CONFIG, _parse
from kdjax.train import topology

flags.declare_key_flag("config")  # defined in kdjax.main: shown in this command's --help

_TOPOLOGY = flags.DEFINE_string("topology", None, "Target slice: v5e-4/16/64/256, v4-8/32, v5p-8/128, v6e-4, ...; "
                                "append xN for N slices (v5e-16x2); GPUs: h100-8 (a node), h100-16 (two).")
_JSON = flags.DEFINE_bool("json", False, "Print one JSON line instead of the table.")

OOM = "RESOURCE_EXHAUSTED"


def knobs(cfg, target: topology.Target) -> list[str]:
    """Settings that shrink the per-device step, in the order worth trying."""
    b, n = int(cfg.train.batch_size), target.num_devices
    out = [f"--config.train.batch_size={max(b // 2, 1)} (now {b}: {b / n:g} per chip)"]
    for part in ("decoder", "audio", "student"):
        node = cfg.get(part)
        if node is not None and "remat" in node and not node.remat:
            out.append(f"--config.{part}.remat=True (recompute activations in the backward pass)")
    mesh = dict(cfg.mesh)
    if mesh.get("fsdp", 1) not in (-1, n):
        out.append(f"--config.mesh.fsdp=-1 --config.mesh.data=1 (shard parameters and optimiser state over all "
                   f"{n} chips)")
    if mesh.get("tensor", 1) == 1:
        out.append("--config.mesh.tensor=2 or 4 with --config.mesh.fsdp=-1 (split heads and MLPs as well)")
    out.append("a larger slice (--topology)")
    return out


def compile_for(cfg, target: topology.Target) -> dict[str, Any]:
    """Compile `cfg`'s train step for `target`; the result of compile_train_step plus HBM and headroom."""
    from kdjax.systems import registry
    from kdjax.train.compile import compile_train_step

    system, cfg, _ = registry.resolve(cfg, paths=False)  # an abstract compile reads no file
    devices = topology.devices(target)
    task, batch = system.abstract_task(cfg)
    out = compile_train_step(cfg, task, batch, devices)
    hbm = target.hbm_gib
    out.update({"topology": target.name, "chips": target.num_devices, "hbm_gib": hbm,
                "used_gib": out["peak_gib"] + out["per_device_gib"]["generated_code"]})
    out["headroom_gib"] = hbm - out["used_gib"]
    out["fits"] = out["headroom_gib"] >= 0
    return out


def table(out: dict[str, Any]) -> str:
    m = out["per_device_gib"]
    rows = [f"{out['topology']}: {out['chips']} devices, mesh " + " x ".join(f"{k}={v}" for k, v in out["mesh"].items()),
            "per device (GiB):",
            *(f"  {k:<15}{m[k]:9.3f}" for k in ("argument", "output", "temp", "generated_code", "alias")),
            f"  {'total':<15}{out['used_gib']:9.3f}   (arguments + outputs + temporaries + code - aliased)",
            f"  {'HBM':<15}{out['hbm_gib']:9.3f}",
            f"  {'headroom':<15}{out['headroom_gib']:9.3f}   ({100 * out['used_gib'] / out['hbm_gib']:.0f}% used)",
            f"step FLOPs: {out['flops_per_device']:.4g} per device, {out['flops_per_device'] * out['chips']:.4g} "
            f"in all (XLA's count of {out['flops_source']}, {out['flops_xla']:.4g}, "
            + (f"plus {out['flops_scan_added']:.4g} of matmuls in the scan iterations it counts once)"
               if out["flops_scan_added"] else "no scanned layers)"),
            f"parameters: {out['trainable_params']:,} trained, {out['frozen_params']:,} frozen; compiled in "
            f"{out['compile_seconds']:.1f} s"]
    return "\n".join(rows)


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cfg = _CONFIG.value
    if cfg is None or not _TOPOLOGY.value:
        raise app.UsageError("--config and --topology are required, e.g. --config=configs/multi2cap.py "
                             "--topology=v5e-16")
    try:
        target = topology.parse(_TOPOLOGY.value)
        out = compile_for(cfg, target)
    except ValueError as e:
        sys.exit(f"kdjax.aot: {e}")
    except Exception as e:  # noqa: BLE001 - the compiler's own error type differs between backends
        msg = str(e)
        if OOM not in msg:
            raise
        first = next((ln for ln in msg.splitlines() if OOM in ln), msg.splitlines()[0])
        print(f"kdjax.aot: the step does not fit {target.name}: {first.strip()}", file=sys.stderr)
        print("settings that shrink it:\n" + "\n".join(f"  {k}" for k in knobs(cfg, target)), file=sys.stderr)
        if _JSON.value:
            print(json.dumps({"topology": target.name, "fits": False, "error": first.strip()}))
        sys.exit(2)
    print(json.dumps(out) if _JSON.value else table(out))


def cli() -> None:
    """The `kdjax-aot` command."""
    app.run(main, flags_parser=_parse)


if __name__ == "__main__":
    cli()
