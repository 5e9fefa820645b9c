"""The teacher interface's cache (kdjax.teachers.cache) and DSG-KD's cached teacher: outputs written once per
example, resumable, refused when they came from another teacher, read back by the input pipeline, and a cached
run's losses equal to the online run's."""

import json
import os

import numpy as np
import pytest

from kdjax.errors import InputError
from kdjax.teachers import cache as cache_lib
from tests import runs

FIELDS = {"emb": cache_lib.field(np.float32, (3,)), "rows": cache_lib.field(np.float32, (2, -1)),
          "caption": cache_lib.field(str)}


def _rows(ids):
    return [{"id": i, "emb": np.full(3, float(i)), "rows": np.ones((2, int(i) % 3 + 1)), "caption": f"clip {i}"}
            for i in ids]


def test_fill_resumes_after_a_killed_writer_and_reads_by_id(tmp_path):
    d = str(tmp_path / "c")
    calls = []

    def compute(ids):
        calls.append(list(ids))
        return _rows(ids)

    ids = [str(i) for i in range(10)]
    stats = cache_lib.fill(d, ids[:6], compute, FIELDS, batch_size=2, shard_size=4, fingerprint={"teacher": "a"})
    assert stats["computed"] == 6 and stats["bytes_written"] > 0
    # a writer killed in its next shard leaves a temporary file and nothing in the meta: ignored, redone
    open(os.path.join(d, "part-h000-00002.array_record.tmp"), "wb").write(b"partial")
    calls.clear()
    stats = cache_lib.fill(d, ids, compute, FIELDS, batch_size=2, shard_size=4, fingerprint={"teacher": "a"})
    assert stats["computed"] == 4 and sorted(i for c in calls for i in c) == ids[6:]
    c = cache_lib.OutputCache(d)
    assert len(c) == 10 and c.check(ids) is None
    got = c.get("7")
    np.testing.assert_array_equal(got["emb"], np.full(3, 7.0))
    assert got["rows"].shape == (2, 2) and got["caption"] == "clip 7"
    with pytest.raises(InputError, match="lacks 1 example"):
        c.check(ids + ["99"])
    # outputs of another teacher are not mixed in
    with pytest.raises(InputError, match=r"written by another teacher or preprocessing \(differs in \['teacher'\]\)"):
        cache_lib.fill(d, ids, compute, FIELDS, batch_size=2, shard_size=4, fingerprint={"teacher": "b"})
    with pytest.raises(InputError, match="field 'emb' has shape"):
        cache_lib.write_shard(str(tmp_path / "e"), [{**_rows(["1"])[0], "emb": np.zeros(4)}], FIELDS)


def test_one_writer_per_host(tmp_path, monkeypatch):
    """Host p of P computes ids p, p + P, ... into its own shards and meta file; a reader sees them all."""
    d = str(tmp_path / "c")
    ids = [str(i) for i in range(7)]
    for host in (0, 1):
        monkeypatch.setattr(cache_lib, "_host", lambda h=host: (h, 2))
        cache_lib.fill(d, ids, _rows, FIELDS, batch_size=2, shard_size=2)
    assert sorted(f for f in os.listdir(d) if f.startswith("meta")) == ["meta-h000.json", "meta-h001.json"]
    assert json.load(open(os.path.join(d, "meta-h001.json")))["count"] == 3
    assert sorted(cache_lib.OutputCache(d).index) == sorted(ids)


def test_reads_the_first_format(tmp_path):
    """EffAAC's shipped smoke cache (format 1: meta.json, no id sidecars) reads through the same class."""
    from configs.effaac import SMOKE_TEACHER_CACHE
    from kdjax import assets

    c = cache_lib.OutputCache(assets.resolve(SMOKE_TEACHER_CACHE))
    assert len(c) == 86 and c.fields["embedding"] == {"dtype": "float32", "shape": [192]}
    row = c.get(next(iter(c.index)))
    assert row["embedding"].shape == (192,) and isinstance(row["caption"], str) and row["caption"]


@pytest.mark.slow
def test_dsg_kd_cached_teacher_gives_the_online_losses(tmp_path):
    """The teacher's span-pooled targets cached once per note: every step's losses equal the online run's
    (to float rounding), the step holds no teacher, the report records the cache, and a resumed run reuses it."""
    online, cached = str(tmp_path / "online"), str(tmp_path / "cached")
    quick = ("--config.eval.final=False",)
    runs.run("configs/dsg_kd.py:tiny", online, *quick)
    p = runs.run("configs/dsg_kd.py:tiny", cached, *quick, "--config.teacher.cache.enabled=True")
    assert "256 examples computed" in p.stderr
    a, b = runs.train_rows(online), runs.train_rows(cached)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 25))
    runs.assert_same_losses(a, b, ("loss", "ce", "hidn", "attn"), rtol=1e-5, atol=1e-7)
    info = json.load(open(os.path.join(cached, "report.json")))["info"]["teacher"]
    assert info["kind"] == "cached" and info["examples"] == 256 and 0 < info["bytes_per_example"] < 50_000
    # the same workdir again, extended by two steps (an explicit config change): the cache is complete,
    # nothing is recomputed
    p = runs.run("configs/dsg_kd.py:tiny", cached, *quick, "--config.teacher.cache.enabled=True",
                 "--config.train.steps=26", "--allow_config_change")
    assert "256 of this host's 256 examples cached, 0 to compute" in p.stderr


@pytest.mark.parametrize("keys, heads", [("word", "auto"), ("index", "match"), ("index", "mean")])
def test_dsg_kd_cached_targets_equal_the_teachers_in_process(keys, heads, tmp_path):
    """The paper's alignment (key positions, head by head) and the others: targets read back from the cache,
    padded to the full grid, are the teacher's own, and the loss on them is the online loss."""
    import jax
    from flax import nnx

    from configs import dsg_kd as dsg_config
    from kdjax.systems import dsg_kd

    cfg = dsg_config.get_config("tiny")
    cfg.kd.attn_keys, cfg.kd.attn_heads = keys, heads
    if heads == "match":
        cfg.student.init.num_attention_heads = cfg.teacher.init.num_attention_heads
    online = dsg_kd.build(cfg, str(tmp_path / "a"))
    cfg.teacher.cache.enabled = True
    cached = dsg_kd.build(cfg, str(tmp_path / "b"))
    assert cached.teacher is None and online.teacher is not None
    rows = [online.train_data[i] for i in range(8)]
    crow = [cached.train_data[i] for i in range(8)]
    stack = lambda rs: {k: np.stack([r[k] for r in rs]) for k in rs[0]}
    b_on, b_c = stack(rows), stack(crow)
    rngs = lambda: nnx.Rngs(dropout=jax.random.key(0))
    l_on, m_on = online.loss_fn(online.model, online.teacher, b_on, rngs())
    l_c, m_c = cached.loss_fn(cached.model, None, b_c, rngs())
    for k in ("ce", "hidn", "attn"):
        np.testing.assert_allclose(np.asarray(m_on[k]), np.asarray(m_c[k]), rtol=1e-6, err_msg=k)
    k = cfg.data.max_words
    x = k + 1 if keys == "word" else cfg.data.teacher_max_length  # the words + the rest, or the key positions
    assert b_c["t_attn"].shape[-1] == x and b_c["t_hidden"].shape[1:] == (3, k, cfg.teacher.init.hidden_size)


def test_dsg_kd_other_note_control_reads_another_notes_targets(tmp_path):
    """teacher.cache.other_note (a control): note i's student fields with note i + n // 2's cached targets; refused
    without a cache."""
    from configs import dsg_kd as dsg_config
    from kdjax.errors import InputError
    from kdjax.systems import dsg_kd, registry

    cfg = dsg_config.get_config("tiny")
    cfg.teacher.cache.enabled = True
    same = dsg_kd.build(cfg, str(tmp_path / "a"))
    cfg.teacher.cache.other_note = True
    cfg.teacher.cache.dir = str(tmp_path / "a" / "teacher_cache")  # the same cache: nothing recomputed
    other = dsg_kd.build(cfg, str(tmp_path / "b"))
    n = len(same.train_data)
    for i in (0, 5, n - 1):
        a, b, j = same.train_data[i], other.train_data[i], (i + n // 2) % n
        for k in a:
            want = same.train_data[j][k] if k.startswith("t_") else a[k]
            np.testing.assert_array_equal(b[k], want, err_msg=f"note {i}: {k}")
    cfg.teacher.cache.enabled = False
    with pytest.raises(InputError, match="teacher.cache.other_note"):
        registry.validate(cfg)


def test_multi2cap_image_feature_cache(tmp_path):
    """teacher.cache: the image teacher's feature of each training picture (centre crop) once, read back by the
    input pipeline in place of the picture; a second build reuses it; another teacher's cache is refused."""
    import jax.numpy as jnp

    from configs import multi2cap as m2c_config
    from kdjax.data import images as img_lib
    from kdjax.systems import multi2cap

    cfg = m2c_config.get_config("tiny")
    online = multi2cap.build(cfg, str(tmp_path / "a"))
    cfg.teacher.cache = True
    cfg.teacher.cache_dir = str(tmp_path / "features")
    cached = multi2cap.build(cfg, str(tmp_path / "b"))
    assert online.teacher is not None and cached.teacher is None
    info = cached.info["teacher"]
    assert info["kind"] == "cached" and info["examples"] == len(cached.train_data) and info["written"]["computed"] > 0
    size = cfg.data.image_size
    for i in (0, 5):
        img = img_lib.normalize(img_lib.center_crop(online.train_data[i]["image"], size))
        want = np.asarray(online.teacher(jnp.asarray(img[None]))["features"][0])
        got = cached.train_data[i]["image_features"]
        assert "image" not in cached.train_data[i]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    again = multi2cap.build(cfg, str(tmp_path / "c"))
    assert again.info["teacher"]["written"]["computed"] == 0
    cfg.seed = 1  # another random teacher
    with pytest.raises(InputError, match="written by another teacher"):
        multi2cap.build(cfg, str(tmp_path / "d"))
