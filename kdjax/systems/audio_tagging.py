"""Audio classification with CED: the shared audio stack (waveform input, augmentation, log-mel on
device, CED) trained end to end on labelled clips. It fine-tunes a released CED checkpoint on users'
labels, and its `real_sounds` variant is the learning test of the audio stack on the embedded set.
"""

from __future__ import annotations

import dataclasses
import os

import grain
import jax
import ml_collections
import numpy as np
from flax import nnx

from kdjax import assets
from kdjax.audio.augment import AugmentConfig, augment
from kdjax.audio.io import crop_or_pad, load_many
from kdjax.convert import from_pretrained
from kdjax.data import jsonl, real_sounds
from kdjax.errors import InputError
from kdjax.losses.classification import cross_entropy
from kdjax.metrics.classification import multiclass_metrics
from kdjax.models import ced as ced_lib
from kdjax.train.task import Task


def build_model(cfg: ml_collections.ConfigDict, num_classes: int) -> ced_lib.CED:
    m = cfg.model
    overrides = dict(m.overrides)
    if m.depth:
        overrides["depth"] = int(m.depth)
    if m.checkpoint:  # a released CED: keep its encoder, give it a fresh head for these labels
        encoder = from_pretrained(assets.resolve(m.checkpoint), arch=m.arch or None, num_classes=0, **overrides)
        model = ced_lib.CED(dataclasses.replace(encoder.cfg, num_classes=num_classes), rngs=nnx.Rngs(cfg.seed))
        nnx.update(model, nnx.state(encoder))
        return model
    return ced_lib.CED(ced_lib.CedConfig.preset(m.arch, num_classes=num_classes, **overrides),
                       rngs=nnx.Rngs(cfg.seed))


SPLITS = ("train", "validation", "test")


def read_manifest(file: str) -> list[dict]:
    """Users' clips: JSONL rows {"audio": path, "label": name, "split": train|validation|test}; relative
    paths are read from the manifest's folder."""
    rows, root = [], os.path.dirname(os.path.abspath(file))
    for n, row in jsonl.read_rows(file, ("audio", "label", "split")):
        if row["split"] not in SPLITS:
            raise InputError(f"{file}:{n}: split {row['split']!r} is not one of {SPLITS}")
        rows.append({**row, "audio": os.path.join(root, row["audio"])})
    return rows


def load_rows(cfg: ml_collections.ConfigDict) -> dict[str, list[dict]]:
    d = cfg.data
    if d.source == "real_sounds":
        return {s: real_sounds.manifest(split=s) for s in SPLITS}
    if d.source == "manifest":
        rows = read_manifest(d.manifest_file)
        return {s: [r for r in rows if r["split"] == s] for s in SPLITS}
    raise InputError(f"data.source must be 'real_sounds' or 'manifest', got {d.source!r}")


def build(cfg: ml_collections.ConfigDict, workdir: str) -> Task:
    d = cfg.data
    rows = load_rows(cfg)
    labels = list(d.labels)
    index = {lab: i for i, lab in enumerate(labels)}
    length = int(round(d.clip_seconds * d.sample_rate))
    data, skipped = {}, []
    for split, items in rows.items():
        unknown = sorted({r["label"] for r in items} - set(index))
        if unknown:
            raise InputError(f"{split}: labels {unknown} are not in data.labels {labels}")
        waves, kept, bad = load_many([r["audio"] for r in items], d.sample_rate, d.on_bad_input)
        skipped += bad
        data[split] = [{"wave": w, "label": np.int32(index[items[i]["label"]])} for w, i in zip(waves, kept)]

    def fixed(ex):  # evaluation: the clip's start, zero-padded, with its mask
        wave, mask = crop_or_pad(ex["wave"], length)
        return {"wave": wave, "mask": mask, "label": ex["label"]}

    aug_cfg = AugmentConfig.from_config(cfg.augment.ops) if cfg.augment.enabled else None

    def train_transform(ex, rng: np.random.Generator):
        wave = ex["wave"]
        if aug_cfg is not None:
            wave, _ = augment(wave, rng, aug_cfg, crop_to=length)
        wave, mask = crop_or_pad(wave, length, rng)
        return {"wave": wave.astype(np.float32), "mask": mask, "label": ex["label"]}

    model = build_model(cfg, len(labels))

    def loss_fn(model, teacher, batch, rngs):
        out = model(batch["wave"], batch["mask"], deterministic=False, rngs=rngs)
        ce = cross_entropy(out["logits"], batch["label"], label_smoothing=float(cfg.train.label_smoothing))
        acc = (out["logits"].argmax(-1) == batch["label"]).mean()
        return ce, {"ce": ce, "acc": acc}

    def predict_fn(model, batch):
        out = model(batch["wave"], batch["mask"])
        return {"prob": jax.nn.softmax(out["logits"], -1), "label": batch["label"]}

    def evaluate(preds, split):
        return multiclass_metrics(preds["label"], preds["prob"])

    train_labels = np.array([int(e["label"]) for e in data["train"]])
    majority = {s: float(np.mean([int(e["label"]) for e in v] == np.bincount(train_labels).argmax()))
                for s, v in data.items()}
    return Task(
        model=model, loss_fn=loss_fn, predict_fn=predict_fn,
        train_data=grain.MapDataset.source(data["train"]),
        eval_data={"dev": grain.MapDataset.source(data["validation"]).map(fixed),
                   "test": grain.MapDataset.source(data["test"]).map(fixed)},
        evaluate=evaluate, train_transform=train_transform, logical_axes=ced_lib.LOGICAL_AXES,
        info={"num_examples": {s: len(v) for s, v in data.items()}, "labels": labels,
              "majority_class_accuracy": majority, "bad_audio_skipped": len(skipped),
              "bad_audio": skipped[:100], "clip_samples": length,
              "params": int(sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))))})
