"""python -m kdjax.vggcaps analyse --data=clotho:/data/clotho --data=wavcaps:/data/wavcaps --out=analysis/

Each --data is LAYOUT:PATH (clotho, audiocaps, wavcaps, vggcaps, manifest) or `embedded`; NAME=LAYOUT:PATH
names the row. Writes analysis.json, analysis.md (Table 3.1 and the numbers of Figures 3.2-3.3) and the bar
charts readability.png and diversity.png to --out, and prints the Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from kdjax.errors import InputError


def _spec(text: str) -> tuple[str, str, str]:
    name, _, rest = text.rpartition("=") if "=" in text else ("", "", text)
    layout, _, path = rest.partition(":")
    return name or layout, layout, path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kdjax.vggcaps", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("analyse", help="statistics, readability and lexical diversity of caption sets")
    a.add_argument("--data", action="append", required=True, help="LAYOUT:PATH, NAME=LAYOUT:PATH or embedded")
    a.add_argument("--out", required=True)
    args = p.parse_args(argv)

    from kdjax.vggcaps import analysis

    results = {}
    try:
        for spec in args.data:
            name, layout, path = _spec(spec)
            if name in results:
                raise InputError(f"--data {spec}: the name {name!r} is used twice (NAME=LAYOUT:PATH)")
            results[name] = analysis.analyse(analysis.load(layout, path))
    except (InputError, FileNotFoundError, ValueError) as e:
        sys.exit(f"kdjax.vggcaps: {e}")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "analysis.json"), "w") as f:
        json.dump(results, f, indent=2)
    table = analysis.markdown(results)
    with open(os.path.join(args.out, "analysis.md"), "w") as f:
        f.write(table + "\n")
    analysis.bar_charts(results, args.out)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
