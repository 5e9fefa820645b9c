"""Audio classification with CED: the shared audio stack (waveform input, augmentation, log-mel on
device, CED) trained end to end on labelled clips. It fine-tunes a released CED checkpoint on users'
labels, and its `real_sounds` variant is the learning test of the audio stack on the embedded set.
With `data.multilabel` each clip has a set of labels (sigmoid outputs, binary cross-entropy, mAP), as CED's
AudioSet tagging: the `synthetic` source tags generated clips with their events' (kind, pitch) pairs, and the
trained encoder is another system's audio encoder (`ced_encoder`: Multi2Cap's `audio.checkpoint`).
"""

from __future__ import annotations

import dataclasses
import os

import grain
import jax
import ml_collections
import numpy as np
from flax import nnx

from kdjax import assets, paths
from kdjax.audio.augment import AugmentConfig, augment
from kdjax.audio.io import crop_or_pad, load_many
from kdjax.convert import from_pretrained
from kdjax.data import captions, jsonl, real_sounds
from kdjax.data.synthetic_sounds import TAG_SETS
from kdjax.data.splits import SPLITS
from kdjax.errors import InputError
from kdjax.losses.classification import cross_entropy, sigmoid_cross_entropy
from kdjax.metrics.classification import multiclass_metrics, multilabel_metrics
from kdjax.models import ced as ced_lib
from kdjax.systems import checks as checks_lib
from kdjax.systems import contract, inference
from kdjax.systems.checks import Checks
from kdjax.train import task as task_lib
from kdjax.train.batch import BatchSpec, Field, abstract_batch
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


def ced_encoder(path: str, arch: str | None = None, seed: int = 0, **overrides) -> ced_lib.CED:
    """A CED encoder without its head, for another system's audio encoder: `path` a released CED state dict, a
    directory kdjax wrote for CED (e.g. this system's export), or a trained kdjax audio_tagging workdir (its kept
    best parameters, else its final ones; BatchNorm statistics included). `overrides` replace CedConfig fields
    (e.g. chunk_mode); a workdir's encoder keeps its own depth."""
    from kdjax.train.restore import restore_trained, workdir_config

    if not (paths.isdir(path) and paths.isdir(paths.join(path, "checkpoints"))):
        return from_pretrained(path, arch=arch, **{"num_classes": 0, **overrides})
    cfg = workdir_config(path)
    if cfg.get("system") != "audio_tagging":
        raise InputError(f"{path}: a kdjax {cfg.get('system')!r} workdir, not an audio_tagging one")
    tagger = restore_trained(cfg, build_model(cfg, len(cfg.data.labels)), None, path)
    depth = overrides.pop("depth", tagger.cfg.depth)
    if depth != tagger.cfg.depth:
        raise InputError(f"{path}: its CED has {tagger.cfg.depth} blocks, {depth} asked for")
    if arch and ced_lib.SIZES.get(arch) != (tagger.cfg.embed_dim, tagger.cfg.num_heads):
        raise InputError(f"{path}: its CED is not a {arch}")
    encoder = ced_lib.CED(dataclasses.replace(tagger.cfg, **{**overrides, "num_classes": 0}), rngs=nnx.Rngs(seed))
    state = nnx.state(tagger)
    del state["outputlayer"]
    nnx.update(encoder, state)
    return encoder


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


class _SyntheticTags:
    """One split of the `synthetic` source as {wave, label (multi-hot over data.labels)}, made on access."""

    def __init__(self, d: ml_collections.ConfigDict, split: str):
        self.clips = captions.synthetic_split(d, split)
        self.tags = tuple(d.labels)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        wave, tags = self.clips.tagged(i, self.tags)
        return {"wave": wave, "label": tags}


def make_loss_fn(cfg: ml_collections.ConfigDict):
    smoothing = float(cfg.train.label_smoothing)
    multilabel = bool(cfg.data.multilabel)

    def loss_fn(model, teacher, batch, rngs):
        out = model(batch["wave"], batch["mask"], deterministic=False, rngs=rngs)
        if multilabel:
            ce = sigmoid_cross_entropy(out["logits"], batch["label"], label_smoothing=smoothing)
            acc = ((out["logits"] > 0) == (batch["label"] > 0.5)).mean()
        else:
            ce = cross_entropy(out["logits"], batch["label"], label_smoothing=smoothing)
            acc = (out["logits"].argmax(-1) == batch["label"]).mean()
        return ce, {"ce": ce, "acc": acc}

    return loss_fn


def batch_spec(cfg: ml_collections.ConfigDict) -> BatchSpec:
    """A clip's crop, its validity mask and its label (multi-hot over data.labels when data.multilabel)."""
    n = int(round(cfg.data.clip_seconds * cfg.data.sample_rate))
    label = Field((len(cfg.data.labels),), np.float32) if cfg.data.multilabel else Field((), np.int32)
    return {"wave": Field((n,), np.float32), "mask": Field((n,), np.bool_), "label": label}


def abstract_task(cfg: ml_collections.ConfigDict) -> tuple[Task, dict]:
    """The training Task with an abstract CED (the preset architecture; no checkpoint read) and the global
    batch's shapes."""
    m = cfg.model
    overrides = {**dict(m.overrides), **({"depth": int(m.depth)} if m.depth else {})}
    arch = m.arch or "ced_base"
    model = nnx.eval_shape(lambda: ced_lib.CED(ced_lib.CedConfig.preset(arch, num_classes=len(cfg.data.labels),
                                                                         **overrides), rngs=nnx.Rngs(0)))
    b = int(cfg.train.batch_size)
    task = task_lib.abstract(model, make_loss_fn(cfg), b, logical_axes=ced_lib.LOGICAL_AXES)
    return task, abstract_batch(batch_spec(cfg), b)


def validate(cfg: ml_collections.ConfigDict, c: Checks) -> None:
    source = c.one_of("data.source", ("real_sounds", "manifest", "synthetic"))
    if source == "manifest":
        c.path("data.manifest_file", "file", required=True, why="data.source='manifest'")
    labels = tuple(c.get("data.labels") or ())
    multilabel = c.get("data.multilabel")
    if source == "synthetic":
        if labels not in TAG_SETS.values() or multilabel is not True:
            c.problem("data.labels", "data.source='synthetic' tags clips with one of kdjax.data.synthetic_sounds."
                                     f"TAG_SETS ({', '.join(TAG_SETS)}; data.multilabel=True)")
        for key in ("num_train", "num_validation", "num_test"):
            c.number(f"data.synthetic.{key}", integer=True, gt=0)
        c.number("data.synthetic.seed", integer=True, ge=0)
    elif multilabel:
        c.problem("data.multilabel", f"data.source={source!r} gives one label per clip; only 'synthetic' is "
                                     "multi-label so far")
    if len(labels) < 2 or len(set(labels)) != len(labels):
        c.problem("data.labels", f"needs two or more distinct labels, got {labels}")
    c.number("data.sample_rate", integer=True, gt=0)
    c.number("data.clip_seconds", gt=0)
    c.one_of("data.on_bad_input", ("error", "skip"))
    arch = c.get("model.arch") or ""
    if arch and arch not in ced_lib.SIZES:
        c.problem("model.arch", f"{arch!r} is not one of {', '.join(ced_lib.SIZES)}")
    if not arch and not c.get("model.checkpoint"):
        c.problem("model.arch", "set a CED architecture or model.checkpoint")
    c.path("model.checkpoint", "file")
    c.number("model.depth", integer=True, ge=0)
    c.number("train.label_smoothing", ge=0, lt=1)
    es = c.get("train.early_stopping.metric", "") or ""
    dev = ("mAP", "auroc", "accuracy") if multilabel else ("accuracy", "balanced_accuracy", "macro_f1")
    if es and es not in dev:
        c.problem("train.early_stopping.metric", f"{es!r} is not a dev metric of this system ({', '.join(dev)})")
    checks_lib.augment(c)




def build(cfg: ml_collections.ConfigDict, workdir: str) -> Task:
    d = cfg.data
    labels = list(d.labels)
    index = {lab: i for i, lab in enumerate(labels)}
    length = int(round(d.clip_seconds * d.sample_rate))
    data, skipped, where = {}, [], {}
    rows = {} if d.source == "synthetic" else load_rows(cfg)
    if d.source == "synthetic":
        data = {s: _SyntheticTags(d, s) for s in SPLITS}
        where = {s: [(f"synthetic-{s}-{i}", None) for i in range(len(v))] for s, v in data.items()}
    for split, items in rows.items():
        unknown = sorted({r["label"] for r in items} - set(index))
        if unknown:
            raise InputError(f"{split}: labels {unknown} are not in data.labels {labels}")
        waves, kept, bad = load_many([r["audio"] for r in items], d.sample_rate, d.on_bad_input)
        skipped += bad
        data[split] = [{"wave": w, "label": np.int32(index[items[i]["label"]])} for w, i in zip(waves, kept)]
        where[split] = [(str(items[i].get("id") or os.path.basename(items[i]["audio"])), items[i]["audio"])
                        for i in kept]

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
    loss_fn = make_loss_fn(cfg)

    def predict_fn(model, batch):
        out = model(batch["wave"], batch["mask"])
        prob = jax.nn.sigmoid(out["logits"]) if d.multilabel else jax.nn.softmax(out["logits"], -1)
        return {"prob": prob, "label": batch["label"]}

    def evaluate(preds, split):
        return (multilabel_metrics if d.multilabel else multiclass_metrics)(preds["label"], preds["prob"])

    def prediction_rows(preds, split):
        """Per clip: the predicted label (multi-label: the labels above 1/2), every label's probability, and the
        true label(s)."""
        out = []
        rows = inference.label_rows(preds["prob"], labels, bool(d.multilabel))
        for (clip, path), row, label in zip(where["validation" if split == "dev" else split], rows, preds["label"]):
            pred = row["prediction"]
            refs = ([lab for lab, t in zip(labels, label) if t > 0.5] if d.multilabel else [labels[int(label)]])
            got = pred["labels"] if d.multilabel else [pred["label"]]
            out.append({"id": clip, "input": path, **row, "references": refs,
                        "scores": {"correct": float(set(got) == set(refs))}})
        return out

    majority = None  # the accuracy of always answering the training set's most frequent class
    if not d.multilabel:
        train_labels = np.array([int(e["label"]) for e in data["train"]])
        majority = {s: float(np.mean([int(e["label"]) for e in v] == np.bincount(train_labels).argmax()))
                    for s, v in data.items()}
    return Task(
        model=model, loss_fn=loss_fn, predict_fn=predict_fn,
        train_data=grain.MapDataset.source(data["train"]),
        eval_data={"dev": grain.MapDataset.source(data["validation"]).map(fixed),
                   "test": grain.MapDataset.source(data["test"]).map(fixed)},
        evaluate=evaluate, prediction_rows=prediction_rows, train_transform=train_transform,
        logical_axes=ced_lib.LOGICAL_AXES,
        info={"num_examples": {s: len(v) for s, v in data.items()}, "labels": labels,
              "majority_class_accuracy": majority, "bad_audio_skipped": len(skipped),
              "bad_audio": skipped[:100], "clip_samples": length,
              "params": int(sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))))},
        batch_spec=batch_spec(cfg))


_README = """# CED audio tagger exported by kdjax

From the kdjax workdir `{workdir}` (checkpoint `{checkpoint}`). `model.safetensors` is the state dict of the
original CED code's model (github.com/RicherMans/CED, `models/audiotransformer.py`: {arch}, depth {depth},
{num_classes} classes; front-end buffers included), loaded with `strict=True`; `labels.json` names the classes
in the order of its logits. Input: mono 16 kHz audio; kdjax evaluated clips of {clip_seconds} s.

```python
import json, torch
from safetensors.torch import load_file
state = load_file("{out}/model.safetensors")
model = ...  # CED's AudioTransformer for {arch} with num_classes={num_classes} (and depth={depth})
model.load_state_dict(state, strict=True)
labels = json.load(open("{out}/labels.json"))
```
"""


def export(workdir: str, out: str) -> list[str]:
    """`out`: the trained CED encoder and head as the original CED code's state dict, the label names, a README."""
    import json

    from kdjax.convert import save_pretrained
    from kdjax.train.restore import restore_trained, trained_checkpoint, workdir_config

    cfg = workdir_config(workdir)
    labels = list(cfg.data.labels)
    model = restore_trained(cfg, build_model(cfg, len(labels)), None, workdir)
    save_pretrained(model, out)
    with open(os.path.join(out, "labels.json"), "w", encoding="utf-8") as f:
        json.dump(labels, f, indent=1)
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
        f.write(_README.format(workdir=os.path.abspath(workdir), checkpoint=trained_checkpoint(workdir), out=out,
                               arch={v: k for k, v in ced_lib.SIZES.items()}.get(
                                   (model.cfg.embed_dim, model.cfg.num_heads), "CED"), depth=model.cfg.depth, num_classes=len(labels),
                               clip_seconds=cfg.data.clip_seconds))
    return sorted(os.path.join(out, n) for n in os.listdir(out))


def predictor(cfg: ml_collections.ConfigDict, workdir: str) -> inference.Predictor:
    """--mode=predict: labels of audio files by the tagger trained in `workdir` (whole clips, never cropped)."""
    import jax.numpy as jnp

    from kdjax.train.restore import restore_trained

    labels, multilabel = list(cfg.data.labels), bool(cfg.data.get("multilabel", False))
    model = restore_trained(cfg, build_model(cfg, len(labels)), None, workdir)
    gdef, state = nnx.split(model)
    act = jax.nn.sigmoid if multilabel else (lambda x: jax.nn.softmax(x, -1))
    step = jax.jit(lambda s, w, m: act(nnx.merge(gdef, s)(w, m)["logits"]))

    def run_batch(waves, masks):
        return inference.label_rows(np.asarray(step(state, jnp.asarray(waves), jnp.asarray(masks))), labels,
                                    multilabel)

    return inference.audio_predictor(int(cfg.data.sample_rate), batch_spec(cfg)["wave"].shape[0],
                                     int(cfg.eval.batch_size), run_batch)


SYSTEM = contract.System("audio_tagging", validate=validate, batch_spec=lambda cfg, **dims: batch_spec(cfg),
                         build=build, abstract_task=abstract_task, capabilities={contract.EXPORT, contract.PREDICT},
                         export=export, predictor=predictor)
