"""Caption-set statistics (thesis Table 3.1), readability (Figure 3.2) and lexical diversity (Figure 3.3)
for any caption dataset in a layout kdjax reads: AudioCaps CSVs, Clotho CSVs, WavCaps JSON files, a VggCaps
directory, a kdjax JSONL manifest, or the embedded set."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from kdjax.errors import InputError
from kdjax.metrics import lexical, readability

MEASURES = {"readability": tuple(readability.SCORES), "diversity": ("ttr", "herdan_vm", "yule_k", "simpson_d")}


def _layouts() -> dict[str, Callable[[str], dict[str, list[dict]]]]:
    from kdjax.data import captions, real_sounds, tfds_builders

    return {"clotho": tfds_builders.clotho_rows, "audiocaps": tfds_builders.audiocaps_rows,
            "wavcaps": tfds_builders.wavcaps_rows, "vggcaps": tfds_builders.vggcaps_rows,
            "manifest": captions.read_manifest, "embedded": lambda _path: real_sounds.caption_rows()}


def load(layout: str, path: str = "") -> list[dict]:
    """Every row of every split: {"id", "audio", "captions", optional "image", optional "duration"}."""
    layouts = _layouts()
    if layout not in layouts:
        raise InputError(f"unknown caption-set layout {layout!r}; known: {', '.join(sorted(layouts))}")
    return [r for rows in layouts[layout](path).values() for r in rows]


def _duration(row: dict) -> float | None:
    if row.get("duration") is not None:
        return float(row["duration"])
    audio = row.get("audio")
    if not audio or not os.path.isfile(audio):
        return None
    import soundfile

    try:
        return float(soundfile.info(audio).duration)
    except RuntimeError:  # unreadable audio: no length, counted as missing
        return None


def statistics(rows: Sequence[dict]) -> dict[str, Any]:
    """Table 3.1's columns. Audio lengths come from a row's "duration" or its audio file's header; clips
    without either are counted in `audio_missing`, not guessed."""
    if not rows:
        raise InputError("the caption set is empty")
    clips = {r.get("audio") or r["id"] for r in rows}
    durations = [d for d in map(_duration, rows) if d is not None]
    lengths = [len(lexical.words(c)) for r in rows for c in r["captions"]]
    return {"rows": len(rows), "audio_clips": len(clips),
            "audio_seconds_mean": float(np.mean(durations)) if durations else None,
            "audio_seconds_std": float(np.std(durations)) if durations else None,
            "audio_missing": len(rows) - len(durations), "captions": len(lengths),
            "caption_words_mean": float(np.mean(lengths)), "caption_words_std": float(np.std(lengths)),
            "extra_modality": "image" if any(r.get("image") for r in rows) else "-"}


def analyse(rows: Sequence[dict], top: int = 20) -> dict[str, Any]:
    from kdjax.vggcaps import words

    captions = [c for r in rows for c in r["captions"]]
    nouns, verbs = words.nouns_and_verbs(captions)
    return {"statistics": statistics(rows), "readability": readability.readability(captions),
            "diversity": lexical.diversity(captions), "nouns": dict(nouns.most_common(top)),
            "verbs": dict(verbs.most_common(top)), "_counts": {"nouns": nouns, "verbs": verbs}}


def word_clouds(results: dict[str, dict[str, Any]], out_dir: str) -> list[str]:
    """Figures 3.4 and 3.5: <name>_nouns.png and <name>_verbs.png per dataset."""
    from kdjax.vggcaps import words

    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, r in results.items():
        for kind, counts in r["_counts"].items():
            if counts:
                paths.append(words.word_cloud_png(counts, os.path.join(out_dir, f"{name}_{kind}.png")))
    return paths


def markdown(results: dict[str, dict[str, Any]]) -> str:
    """Table 3.1 and the two figures' numbers as Markdown tables, a row per dataset."""
    def fmt(v, digits=2):
        return "-" if v is None else (f"{v:,}" if isinstance(v, int) else
                                      f"{v:.{digits}f}" if isinstance(v, float) else str(v))

    out = ["| dataset | rows | audio clips | audio s (mean ± std) | captions | words (mean ± std) | extra |",
           "|---|---:|---:|---:|---:|---:|---|"]
    for name, r in results.items():
        s = r["statistics"]
        audio = ("-" if s["audio_seconds_mean"] is None
                 else f"{s['audio_seconds_mean']:.2f} ± {s['audio_seconds_std']:.2f}")
        out.append(f"| {name} | {s['rows']:,} | {s['audio_clips']:,} | {audio} | {s['captions']:,} | "
                   f"{s['caption_words_mean']:.2f} ± {s['caption_words_std']:.2f} | {s['extra_modality']} |")
    for part, keys in MEASURES.items():
        out += ["", f"| dataset | {' | '.join(keys)} |", "|---|" + "---:|" * len(keys)]
        out += [f"| {name} | " + " | ".join(fmt(r[part][k], 3) for k in keys) + " |" for name, r in results.items()]
    out += ["", "| dataset | most frequent nouns | most frequent verbs |", "|---|---|---|"]
    out += [f"| {name} | {', '.join(list(r['nouns'])[:8])} | {', '.join(list(r['verbs'])[:8])} |"
            for name, r in results.items()]
    return "\n".join(out)


def bar_charts(results: dict[str, dict[str, Any]], out_dir: str) -> list[str]:
    """Figures 3.2 and 3.3: one panel per measure, a bar per dataset. Returns the PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    paths = []
    names = list(results)
    for part, keys in MEASURES.items():
        fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.2))
        for ax, key in zip(axes, keys):
            ax.bar(names, [results[n][part][key] for n in names], color=[f"C{i}" for i in range(len(names))])
            ax.set_title(key.replace("_", " "))
            ax.tick_params(axis="x", rotation=45)
        fig.tight_layout()
        path = os.path.join(out_dir, f"{part}.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths
