"""Per-device memory of the paper configs' train steps on Cloud TPU slices, compiled ahead of time on this
CPU host (`python -m kdjax.aot`, libtpu installed, no TPU).

    python benchmarks/aot_memory.py [--rows=m2c_base,dsg_paper] [--topologies=v5e-16,v4-32] [--timeout=3600]
    python benchmarks/aot_memory.py --cells=m2c_base@v5e-16,dsg_paper@v5e-4

Each (config, topology) compiles in its own process, at the configs' full depth (Multi2Cap's 32-layer
LLaMA-2-7B is a scanned stack, so it compiles like one layer). Prints one JSON line per cell and a final summary
line, and rewrites the table between the markers in benchmarks/RESULTS.md: per-device GiB, % of the chip's HBM,
fits or not, the step's FLOPs per device, compile seconds, and for each config the smallest slice it fits on.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "benchmarks", "RESULTS.md")
BEGIN, END = "<!-- aot_memory:begin -->", "<!-- aot_memory:end -->"

# name -> (config, what it is[, overrides]); the paper recipes as configured (batch, remat, mesh)
ROWS = {
    "m2c_base": ("configs/multi2cap.py", "Multi2Cap base: CED-base + Q-Former + LoRA LLaMA-2-7B + ViT-L/16 "
                                         "teacher, batch 320 (also EffAAC's teacher)"),
    "m2c_small": ("configs/multi2cap.py:small", "Multi2Cap small: as base with a ResNet-50 teacher"),
    "effaac": ("configs/effaac.py", "EffAAC KD_contra: EfficientNet-B2 + 2-layer decoder, online CED-base "
                                    "teacher encoder, batch 32"),
    # the paper's audio-only setting: 16 annotated + 16 audio-only clips per batch (an abstract compile reads no
    # manifest; naming one puts the audio-only fields in the batch)
    "effaac_ao": ("configs/effaac.py", "EffAAC KD_contra with audio-only clips: 16 annotated + 16 audio-only per "
                                       "batch, online CED-base teacher encoder",
                  ("--config.train.batch_size=16", "--config.data.audio_only_manifest=audio_only.jsonl")),
    "dsg_paper": ("configs/dsg_kd.py:paper", "DSG-KD paper: BERT-base teacher and student, batch 32"),
}
TOPOLOGIES = ("v5e-4", "v5e-8", "v5e-16", "v4-8", "v4-16", "v4-32", "v5p-8", "v6e-4", "v6e-8")


def compile_one(config: str, topo: str, timeout: float, *overrides: str) -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, "-m", "kdjax.aot", f"--config={os.path.join(REPO, config)}",
                            f"--topology={topo}", "--json", *overrides], env=env, cwd=REPO, capture_output=True,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"topology": topo, "error": f"compile exceeded {timeout:.0f} s"}
    seconds = time.perf_counter() - t0
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        err = [ln for ln in p.stderr.splitlines() if ln.strip() and not re.match(r"^[WIE]\d{4}|WARNING", ln)]
        return {"topology": topo, "error": (err or ["no output"])[-1][:300]}
    out = json.loads(lines[-1])
    out["wall_seconds"] = seconds
    return out


def cell(row: str, topo: str, timeout: float) -> dict:
    config, _, *overrides = ROWS[row]
    return {"row": row, **compile_one(config, topo, timeout, *(overrides[0] if overrides else ()))}


def table(cells: list[dict]) -> str:
    lines = ["| config | slice | mesh | GiB / device | usable HBM GiB | % | fits | TFLOP / device / step | compile s |",
             "|---|---|---|---:|---:|---:|---|---:|---:|"]
    for c in cells:
        if "error" in c and "fits" not in c:
            lines.append(f"| {c['row']} | {c['topology']} | | | | | error: {c['error']} | | |")
            continue
        if not c["fits"] and "used_gib" not in c:  # the compiler's own RESOURCE_EXHAUSTED
            lines.append(f"| {c['row']} | {c['topology']} | | > HBM | | | no (compiler: out of memory) | | "
                         f"{c['wall_seconds']:.0f} |")
            continue
        mesh = " ".join(f"{k}={v}" for k, v in c["mesh"].items() if v > 1) or "1"
        lines.append(f"| {c['row']} | {c['topology']} | {mesh} | {c['used_gib']:.2f} | {c['hbm_gib']:.2f} | "
                     f"{100 * c['used_gib'] / c['hbm_gib']:.0f} | {'yes' if c['fits'] else 'no'} | "
                     f"{c['flops_per_device'] / 1e12:.1f} | {c['compile_seconds']:.0f} |")
    smallest = smallest_fits(cells)
    lines.append("")
    for row in dict.fromkeys(c["row"] for c in cells):
        lines.append(f"- {row} ({ROWS[row][1]}): the smallest slice tried that fits (least HBM in all): "
                     f"{smallest.get(row) or 'none'}")
    return "\n".join(lines)


def smallest_fits(cells: list[dict]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for row in dict.fromkeys(c["row"] for c in cells):
        fits = [c for c in cells if c["row"] == row and c.get("fits")]
        out[row] = min(fits, key=lambda c: c["chips"] * c["hbm_gib"])["topology"] if fits else None
    return out


def write_results(text: str, command: str) -> None:
    block = f"{BEGIN}\n`{command}`\n\n{text}\n{END}"
    md = open(RESULTS).read()
    if BEGIN in md:
        md = md[:md.index(BEGIN)] + block + md[md.index(END) + len(END):]
    else:
        md += ("\n## Train-step memory on Cloud TPU slices, compiled ahead of time (`benchmarks/aot_memory.py`)\n\n"
               + block + "\n")
    open(RESULTS, "w").write(md)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rows", default=",".join(ROWS))
    p.add_argument("--topologies", default=",".join(TOPOLOGIES))
    p.add_argument("--cells", default="", help="explicit row@topology pairs instead of rows x topologies, "
                   "e.g. m2c_base@v5e-16,dsg_paper@v5e-4")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--no_write", action="store_true", help="do not touch RESULTS.md")
    p.add_argument("--replay", default="", help="re-render the table from an earlier run's printed JSON lines "
                   "(no compiling)")
    args = p.parse_args()
    if args.replay:
        cells = [json.loads(ln) for ln in open(args.replay) if ln.startswith('{"row"')]
        command = open(RESULTS).read().split(BEGIN, 1)[-1].split("`")[1] if BEGIN in open(RESULTS).read() else ""
        write_results(table(cells), command or "python benchmarks/aot_memory.py (replayed)")
        print(json.dumps({"benchmark": "aot_memory", "cells": len(cells), "smallest_fit": smallest_fits(cells)}))
        return
    pairs = ([tuple(x.split("@")) for x in args.cells.split(",")] if args.cells else
             [(r, t) for r in args.rows.split(",") for t in args.topologies.split(",")])
    cells = []
    for row, topo in pairs:
        c = cell(row, topo, args.timeout)
        print(json.dumps(c), flush=True)
        cells.append(c)
    if not args.no_write:
        write_results(table(cells), "python benchmarks/aot_memory.py " + " ".join(sys.argv[1:]))
    print(json.dumps({"benchmark": "aot_memory", "cells": len(cells), "smallest_fit": smallest_fits(cells)}))


if __name__ == "__main__":
    main()
