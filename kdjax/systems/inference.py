"""Batch inference with a trained workdir (`--mode=caption`, `--mode=predict`), shared by every system.

Inputs are files, directories (searched recursively, in name order) or manifests (JSONL rows naming a file or,
for notes, holding the text; CSV for notes), all listed and checked before anything is written. Each input is
then read on its own: one that cannot be read (a damaged file, a manifest row whose file is missing) is named,
skipped and counted, never fatal. Examples sharing a shape (clips of the same number of training-length chunks)
go through one compiled program in fixed-size batches; rows come out in the inputs' order as JSONL.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from typing import Any, Callable, Hashable, Iterable, Sequence, TextIO

import numpy as np

from kdjax import paths
from kdjax.data import jsonl
from kdjax.errors import InputError

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aif", ".aiff")
TEXT_EXTENSIONS = (".txt",)


@dataclasses.dataclass(frozen=True)
class Item:
    """One input: its id, where it came from (a file, or a manifest row), and what to read: a file to load, or the
    text a manifest row holds."""
    id: str
    input: str
    path: str | None = None
    text: str | None = None


@dataclasses.dataclass(frozen=True)
class Predictor:
    """What a system gives `run`: how to read one input into an example, which examples share a compiled shape,
    and a batch's predictions (one JSON-ready dict per example)."""
    kind: str  # "audio" or "text": which files and manifest fields are inputs
    batch_size: int
    load: Callable[[Item], Any]  # raises (any exception) on an input it cannot read
    shape: Callable[[Any], Hashable]
    predict: Callable[[list[Any]], list[dict]]  # at most batch_size examples of one shape
    text_column: str = "text"  # notes: the manifest's text field (the training data's column)


# ---------------------------------------------------------------------------------------------------- inputs
def _manifest_items(path: str, kind: str, text_column: str) -> list[Item]:
    root = paths.parent(path)
    key = "audio" if kind == "audio" else text_column
    items = []
    if path.lower().endswith(".csv"):  # notes only (list_inputs)
        with paths.open(path) as f:
            reader = csv.DictReader(io.StringIO(f.read()))
            if key not in (reader.fieldnames or []):
                raise InputError(f"{path}: no column {key!r} (has {reader.fieldnames})")
            for n, row in enumerate(reader, start=2):
                items.append(Item(str(row.get("id") or f"{os.path.basename(path)}:{n}"), f"{path}:{n}",
                                  text=row[key] or ""))
        return items
    for n, row in jsonl.read_rows(path, (key,)):
        rid = str(row.get("id") or f"{os.path.basename(path)}:{n}")
        if kind == "audio":
            items.append(Item(rid, f"{path}:{n}", path=paths.join(root, str(row[key]))))
        else:
            items.append(Item(rid, f"{path}:{n}", text=str(row[key])))
    return items


def list_inputs(inputs: Sequence[str], kind: str, text_column: str = "text") -> list[Item]:
    """The items of `inputs` (local paths or URIs), in order: files of the kind (audio, or .txt notes),
    directories (their files of the kind, recursively, in name order), .jsonl manifests ({"audio": path relative
    to the manifest} or the notes' text column; "id" optional) and, for notes, .csv manifests. A path that does
    not exist or is none of these is an InputError naming it: nothing has been read or written yet."""
    if kind not in ("audio", "text"):
        raise ValueError(kind)
    exts = AUDIO_EXTENSIONS if kind == "audio" else TEXT_EXTENSIONS
    manifests = (".jsonl",) if kind == "audio" else (".jsonl", ".csv")
    if not inputs:
        raise InputError("no inputs: give files, directories or manifests (--input, repeatable)")
    items: list[Item] = []
    for p in inputs:
        low = p.lower()
        if paths.isdir(p):
            found = [paths.join(p, f) for f in paths.walk_files(p) if f.lower().endswith(exts)]
            if not found:
                raise InputError(f"{p}: a directory without {'audio' if kind == 'audio' else 'note (.txt)'} files "
                                 f"({', '.join(exts)})")
            items += [Item(f[len(p.rstrip("/")) + 1:], f, path=f) for f in found]
        elif not paths.exists(p):
            raise InputError(f"{p}: no such file or directory")
        elif low.endswith(manifests):
            items += _manifest_items(p, kind, text_column)
        elif low.endswith(exts):
            items.append(Item(os.path.basename(p), p, path=p))
        else:
            raise InputError(f"{p}: not {'an audio file' if kind == 'audio' else 'a note (.txt)'} "
                             f"({', '.join(exts)}), a directory or a manifest ({', '.join(manifests)})")
    return items


# ------------------------------------------------------------------------------------------------------- run
def run(predictor: Predictor, items: Sequence[Item], out: TextIO, *, chunk: int | None = None) -> dict[str, Any]:
    """Predict every item, writing one JSON row per readable item to `out` in the items' order ({"id", "input",
    **the prediction}); returns {"written", "skipped", "skipped_inputs": ["input: why", ...]}. Items are read and
    predicted a chunk at a time (8 batches), so memory stays bounded and rows appear as they are done."""
    chunk = chunk or 8 * predictor.batch_size
    written, skipped = 0, []
    from kdjax.train.logging import progress_bar

    with progress_bar(len(items), "predict", "input") as bar:
        for start in range(0, len(items), chunk):
            part = items[start:start + chunk]
            examples: dict[int, Any] = {}
            for k, item in enumerate(part):
                try:
                    examples[k] = predictor.load(item)
                except Exception as e:  # noqa: BLE001  any unreadable input is named and skipped, never fatal
                    skipped.append(f"{item.input}: {str(e) or type(e).__name__}")
                    bar.update(1)
            by_shape: dict[Hashable, list[int]] = {}
            for k, ex in examples.items():
                by_shape.setdefault(predictor.shape(ex), []).append(k)
            rows: dict[int, dict] = {}
            for ks in by_shape.values():
                for b in range(0, len(ks), predictor.batch_size):
                    batch = ks[b:b + predictor.batch_size]
                    for k, pred in zip(batch, predictor.predict([examples[k] for k in batch])):
                        rows[k] = {"id": part[k].id, "input": part[k].input, **pred}
                    bar.update(len(batch))
            for k in sorted(rows):
                out.write(json.dumps(rows[k], ensure_ascii=False) + "\n")
                written += 1
            out.flush()
    return {"written": written, "skipped": len(skipped), "skipped_inputs": skipped}


# ------------------------------------------------------------------------------------------- audio helpers
def audio_predictor(sample_rate: int, chunk_samples: int, batch_size: int,
                    run_batch: Callable[[np.ndarray, np.ndarray], Iterable[dict]]) -> Predictor:
    """A Predictor over audio files: each clip is loaded whole at `sample_rate` and zero-padded to a whole number
    of `chunk_samples` (the training clip length), never cropped; clips of the same number of chunks share one
    compiled program. `run_batch(waves (batch_size, n), masks)` gives one dict per row; short batches are padded
    with copies of their first clip, whose outputs are dropped."""
    from kdjax.audio.io import load_audio

    def load(item: Item) -> np.ndarray:
        return load_audio(item.path, sample_rate)

    def chunks(wave: np.ndarray) -> int:
        return max(1, math.ceil(len(wave) / chunk_samples))

    def predict(waves: list[np.ndarray]) -> list[dict]:
        n = chunks(waves[0]) * chunk_samples
        batch = np.zeros((batch_size, n), np.float32)
        mask = np.zeros((batch_size, n), np.bool_)
        for i in range(batch_size):
            w = waves[i] if i < len(waves) else waves[0]
            batch[i, :len(w)], mask[i, :len(w)] = w, True
        outs = list(run_batch(batch, mask))[:len(waves)]
        return [{"seconds": round(len(w) / sample_rate, 3), **o} for w, o in zip(waves, outs)]

    return Predictor("audio", batch_size, load, chunks, predict)


def caption_predictor(cfg: Any, model: Any, tok: Any) -> Predictor:
    """Captions of audio files by a trained captioner (any model with `caption(wave, mask, generate_cfg)`), with
    the config's evaluation decoding (eval.generate) and batch size."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from kdjax.data import tokenizers
    from kdjax.systems.captioning import clip_samples, generation

    gen_cfg = generation(cfg.eval.generate, tok)
    gdef, state = nnx.split(model)
    step = jax.jit(lambda s, w, m: nnx.merge(gdef, s).caption(w, m, gen_cfg)[0])
    decode = tokenizers.text_decoder(tok)

    def run_batch(waves, masks):
        return [{"prediction": t} for t in decode(np.asarray(step(state, jnp.asarray(waves), jnp.asarray(masks))))]

    return audio_predictor(int(cfg.data.sample_rate), clip_samples(cfg.data), int(cfg.eval.batch_size), run_batch)


def label_rows(probs: np.ndarray, labels: Sequence[str], multilabel: bool = False) -> list[dict]:
    """Classifier outputs as rows: the predicted label and its probability (multi-label: the labels above 1/2) and
    every label's probability."""
    out = []
    for p in np.asarray(probs, np.float64):
        every = {lab: round(float(v), 6) for lab, v in zip(labels, p)}
        if multilabel:
            pred: dict[str, Any] = {"labels": [lab for lab, v in every.items() if v > 0.5]}
        else:
            k = int(np.argmax(p))
            pred = {"label": labels[k], "probability": every[labels[k]]}
        out.append({"prediction": pred, "probabilities": every})
    return out
