"""What a system hands the trainer: models, losses, data and evaluation, all system-specific."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import grain
import jax
import numpy as np
from flax import nnx

from kdjax.train.batch import BatchSpec
from kdjax.train.sharding import LogicalAxes

Batch = Mapping[str, jax.Array]
Metrics = dict[str, jax.Array]


@dataclasses.dataclass
class Task:
    model: nnx.Module
    """Everything trainable: the student and any distillation heads (projections)."""

    loss_fn: Callable[[nnx.Module, nnx.Module | None, Batch, nnx.Rngs], tuple[jax.Array, Metrics]]
    """(model, frozen teacher, batch, dropout rngs) -> (scalar loss, per-step metrics). Traced once
    inside the jitted train step."""

    predict_fn: Callable[[nnx.Module, Batch], dict[str, jax.Array]]
    """Deterministic forward for evaluation; every output has the batch as its leading axis."""

    train_data: grain.MapDataset
    """Training examples (dicts of numpy arrays); the trainer shards, shuffles, repeats and batches."""

    eval_data: Mapping[str, grain.MapDataset]
    """Split name -> examples; 'dev' drives early stopping and keep-best, 'test' the final report."""

    evaluate: Callable[[dict[str, np.ndarray], str], dict[str, float]]
    """(predictions of a whole split, split name) -> metrics, on the host."""

    prediction_rows: Callable[[dict[str, np.ndarray], str], list[dict]] | None = None
    """(predictions of a split, split name) -> one JSON object per example for predictions/<split>.jsonl, called
    after `evaluate` on the same predictions: "id", "input" (the file or record read), "prediction" (caption text,
    or label and probability), "references" and, where the metrics give them, per-example "scores"."""

    train_transform: Callable[[dict[str, np.ndarray], np.random.Generator], dict[str, np.ndarray]] | None = None
    """Per-example random transform (augmentation, random crop) applied on the host after shuffling and
    repeating; its generator comes from (seed, position in the stream), so a resumed run draws
    exactly what the uninterrupted run would have."""

    logical_axes: LogicalAxes = ()
    frozen: Any = None
    """nnx filter selecting parameters of `model` that stay fixed (a pretrained base under LoRA): they are
    never differentiated, never in the optimiser and never in the train checkpoint; `build` must recreate
    them identically (from the pretrained checkpoint or a seed) so that a resumed run is exact."""
    teacher: nnx.Module | None = None
    """Frozen: never differentiated, never in the optimiser, never checkpointed."""
    teacher_logical_axes: LogicalAxes = ()

    report: Callable[[nnx.Module, dict[str, dict[str, float]], dict[str, dict[str, np.ndarray]], str],
                     dict[str, Any]] | None = None
    """Optional extras for the final report (plots, baselines):
    (best model, split -> metrics, split -> predictions, workdir) -> report entries."""

    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Facts recorded in the report (data sizes, tokenizers, skipped rows...)."""

    table_scale: float = 100.0
    """The closing table prints metrics times this (100: fractions as percentages; 1 for perplexities)."""
    batch_spec: BatchSpec | None = None
    """The system's description of one training example after `train_transform` (System.batch_spec); the
    trainer checks the first batch against it and names every field that differs."""


def abstract(model: nnx.Module, loss_fn: Callable, batch_size: int, **kw: Any) -> Task:
    """A Task for ahead-of-time compilation only (abstract modules from nnx.eval_shape): no data, no
    evaluation; `kw` are the Task's sharding and teacher fields."""
    return Task(model=model, loss_fn=loss_fn, predict_fn=lambda m, x: {},
                train_data=grain.MapDataset.range(batch_size), eval_data={}, evaluate=lambda p, s: {}, **kw)


class ShapeTokenizer:
    """Stands in for a tokenizer when only shapes matter (abstract compilation): fixed ids, a vocabulary
    size."""

    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size

    def __len__(self) -> int:
        return self.vocab_size

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": [3 + i for i in range(len(text.split()) + text.count("\n"))]}
