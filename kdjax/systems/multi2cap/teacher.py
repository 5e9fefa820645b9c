"""Multi2Cap's image teacher behind the teacher interface: the frozen image model in the step (online), or its
features of each training picture computed once into a cache (`teacher.cache`)."""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from kdjax import assets
from kdjax.data import images as img_lib

from kdjax.systems.multi2cap.models import teacher_dim, teacher_normalization


def cached_image_features(cfg: ml_collections.ConfigDict, teacher: nnx.Module, examples, workdir: str
                          ) -> tuple[Any, dict]:
    """The image teacher's features of each training clip's picture (centre crop), computed once into the
    teacher interface's cache (`teacher.cache_dir`, default <workdir>/teacher_cache; resumable, refused when it
    holds another teacher's features). Returns the cache (read by example index) and what writing it took."""
    from kdjax.teachers import cache as cache_lib

    t, d = cfg.teacher, cfg.data
    out = t.cache_dir or os.path.join(workdir, "teacher_cache")
    size, b = int(d.image_size), 16
    gdef, state = nnx.split(teacher)
    run = jax.jit(lambda s, x: nnx.merge(gdef, s)(x)["features"])
    stats_of_images = teacher_normalization(cfg)

    def compute(ids: list[str]) -> list[dict]:
        imgs = [img_lib.normalize(img_lib.center_crop(examples[int(i)]["image"], size), *stats_of_images)
                for i in ids]
        imgs += [imgs[-1]] * (b - len(imgs))  # one compiled shape
        feats = np.asarray(run(state, jnp.asarray(np.stack(imgs))), np.float32)
        return [{"id": i, "features": feats[j]} for j, i in enumerate(ids)]

    fingerprint = {"teacher": t.checkpoint and os.path.abspath(assets.resolve(t.checkpoint))
                   or f"random init (seed {int(cfg.seed) + 7}) {t.kind} {dict(t.random)}",
                   "feature": t.feature, "image_size": size, "data": d.source,
                   "normalization": [np.asarray(v).tolist() for v in stats_of_images],
                   "dataset": d.manifest_file or d.tfds_dir or "embedded", "train_clips": len(examples)}
    ids = [str(i) for i in range(len(examples))]
    stats = cache_lib.fill(out, ids, compute, {"features": cache_lib.field(np.float32, (teacher_dim(cfg),))},
                           batch_size=b, shard_size=b * 64, teacher=f"Multi2Cap image teacher ({t.kind})",
                           fingerprint=fingerprint, progress="image teacher cache")
    cache = cache_lib.OutputCache(out)
    cache.check(ids)
    return cache, stats


def uses_teacher(cfg: ml_collections.ConfigDict) -> bool:
    return float(cfg.cfd.weight) > 0 and cfg.teacher.kind != "none"
