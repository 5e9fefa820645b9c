"""VggCaps: build the dataset, analyse caption sets, rate captions.

    python -m kdjax.vggcaps build --videos=vggsound/video --csv=vggsound.csv --out=vggcaps \
        --base_url=https://api.openai.com/v1 --model=gpt-4o [--tfds_dir=data/tfds] [--concurrency=8]
    python -m kdjax.vggcaps analyse --data=clotho:/data/clotho --data=wavcaps:/data/wavcaps --out=analysis/
    python -m kdjax.vggcaps rate --serve --data=vggcaps --db=ratings.sqlite     (then --aggregate --out=mos/)

build: see kdjax/vggcaps/build.py (the API key comes from --api_key or OPENAI_API_KEY; the endpoint and model
also from OPENAI_BASE_URL and VGGCAPS_MODEL). Re-running resumes; --retry_failed asks the LLM again for
items it refused or failed on.

analyse: each --data is LAYOUT:PATH (clotho, audiocaps, wavcaps, vggcaps, manifest) or `embedded`;
NAME=LAYOUT:PATH names the row. Writes analysis.json, analysis.md (Table 3.1 and the numbers of Figures
3.2-3.3), the bar charts readability.png and diversity.png, and per dataset the word clouds of its nouns and
verbs (<name>_nouns.png, <name>_verbs.png; Figures 3.4-3.5) to --out, and prints the Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from kdjax import platforms
from kdjax.errors import InputError

platforms.default_to_cpu_without_accelerators()  # the analysis and the builder's TFDS writer import jax later


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
    a.add_argument("--out", required=True, help="directory for the tables and figures")
    b = sub.add_parser("build", help="videos + VggSound CSV -> (audio, snapshot, caption) dataset")
    b.add_argument("--videos", required=True, help="directory of the VggSound videos")
    b.add_argument("--csv", required=True, help="VggSound's CSV (youtube id, start, label, split)")
    b.add_argument("--out", required=True, help="the VggCaps directory written (resumed if it exists)")
    b.add_argument("--base_url", default="", help="OpenAI-compatible endpoint of the captioning LLM")
    b.add_argument("--model", default="", help="the LLM's model name at that endpoint")
    b.add_argument("--api_key", default="", help="the endpoint's key (default: $OPENAI_API_KEY)")
    b.add_argument("--timeout", type=float, default=120.0, help="seconds per LLM request")
    b.add_argument("--max_retries", type=int, default=5, help="retries of a failed LLM request")
    b.add_argument("--concurrency", type=int, default=4, help="LLM requests in flight")
    b.add_argument("--snapshot", default="middle", help="'middle' of the labelled segment, or seconds")
    b.add_argument("--limit", type=int, default=0, help="first N rows of the CSV only")
    b.add_argument("--seed", type=int, default=0, help="draws the 1 %% test split")
    b.add_argument("--retry_failed", action="store_true", help="ask again for the items that failed before")
    b.add_argument("--tfds_dir", default="", help="also write the array_record dataset here")
    r = sub.add_parser("rate", help="serve the MOS rating page, or aggregate its ratings")
    mode = r.add_mutually_exclusive_group(required=True)
    mode.add_argument("--serve", action="store_true", help="serve the rating page")
    mode.add_argument("--aggregate", action="store_true", help="print the mean opinion scores of the ratings")
    r.add_argument("--db", required=True, help="SQLite file holding the ratings")
    r.add_argument("--data", default="", help="a VggCaps directory (--serve)")
    r.add_argument("--items", type=int, default=100, help="clips each rater rates")
    r.add_argument("--split", default="test", help="the VggCaps split rated")
    r.add_argument("--seed", type=int, default=0, help="draws the rated clips")
    r.add_argument("--host", default="127.0.0.1",
                   help="address the page listens on (default: 127.0.0.1, this machine only; 0.0.0.0 lets raters "
                        "on other machines in)")
    r.add_argument("--port", type=int, default=8765, help="port (default: 8765; 0 picks a free one)")
    r.add_argument("--out", default="", help="where --aggregate writes mos.json and mos_histogram.png")
    args = p.parse_args(argv)
    if args.command == "build":
        return _build(args)
    if args.command == "rate":
        return _rate(args)

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
    analysis.word_clouds(results, args.out)
    for r in results.values():
        r.pop("_counts")
    with open(os.path.join(args.out, "analysis.json"), "w") as f:
        json.dump(results, f, indent=2)
    table = analysis.markdown(results)
    with open(os.path.join(args.out, "analysis.md"), "w") as f:
        f.write(table + "\n")
    analysis.bar_charts(results, args.out)
    print(table)
    return 0


def _rate(args) -> int:
    from kdjax.vggcaps import rating

    try:
        if args.serve:
            if not args.data:
                raise InputError("rate --serve needs --data (a VggCaps directory)")
            items = rating.sample_items(args.data, args.items, args.seed, args.split)
            server = rating.make_server(args.data, args.db, items, args.host, args.port)
            print(f"rating {len(items)} items at http://{args.host}:{server.server_address[1]}/ "
                  f"(ratings in {args.db}; Ctrl-C stops)", flush=True)
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                pass
            return 0
        summary = rating.aggregate(rating.RatingStore(args.db))
    except InputError as e:
        sys.exit(f"kdjax.vggcaps: {e}")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "mos.json"), "w") as f:
            json.dump(summary, f, indent=2)
        rating.histogram_png(summary, os.path.join(args.out, "mos_histogram.png"))
    print(f"MOS {summary['mos']:.2f} ± {summary['std']:.2f} over {summary['ratings']} ratings of "
          f"{summary['items']} items by {summary['raters']} raters; histogram {summary['histogram']}")
    return 0


def _build(args) -> int:
    from kdjax.vggcaps import build, llm

    snapshot = args.snapshot if args.snapshot == "middle" else float(args.snapshot)
    try:
        client = llm.ChatClient.from_env(args.base_url, args.model, args.api_key, timeout=args.timeout,
                                         max_retries=args.max_retries)
        manifest = build.build(args.videos, args.csv, args.out, client, snapshot=snapshot,
                               concurrency=args.concurrency, limit=args.limit, seed=args.seed,
                               retry_failed=args.retry_failed, tfds_dir=args.tfds_dir)
    except (InputError, llm.LLMError) as e:
        sys.exit(f"kdjax.vggcaps: {e}")
    summary = {k: v for k, v in manifest.items() if k != "failures"}
    print(json.dumps(summary))
    return 0


def cli() -> None:
    """The `kdjax-vggcaps` command."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
