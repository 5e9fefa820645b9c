"""Damaged orbax checkpoints (issue 22, item 2): detected by their checksums or a failed restore, reported with
their path, set aside, and the newest intact one used; when none is intact the run stops naming them."""

import os
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from kdjax.train import checksums
from kdjax.train.checkpoint import Checkpoints, DamagedCheckpointError, abstract_like
from tests import runs


def _state(step: int) -> dict:
    rng = np.random.default_rng(step)
    return {"params": {"w": jnp.asarray(rng.normal(size=(64, 32)), jnp.float32),
                       "b": jnp.asarray(rng.normal(size=(32,)), jnp.float32)},
            "step": jnp.asarray(step, jnp.int32)}


def _largest_file(root: str) -> str:
    files = [os.path.join(d, n) for d, _, ns in os.walk(root) for n in ns if n != checksums.MANIFEST]
    return max(files, key=os.path.getsize)


def _truncate(d):
    f = _largest_file(os.path.join(d, "state"))
    with open(f, "r+b") as fh:
        fh.truncate(os.path.getsize(f) // 2)


def _zero(d):
    f = _largest_file(os.path.join(d, "state"))
    with open(f, "r+b") as fh:
        fh.write(b"\0" * os.path.getsize(f))


def _flip_bit(d):
    f = _largest_file(os.path.join(d, "state"))
    with open(f, "r+b") as fh:
        fh.seek(os.path.getsize(f) // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0x10]))


def _garbage_metadata(d):
    with open(os.path.join(d, "state", "_METADATA"), "w") as fh:
        fh.write("{not json")


def _delete_state(d):
    shutil.rmtree(os.path.join(d, "state"))


DAMAGE = {"truncated": _truncate, "zeroed": _zero, "bit_flip": _flip_bit, "garbage_metadata": _garbage_metadata,
          "state_deleted": _delete_state}


@pytest.fixture
def saved(tmp_path):
    wd = str(tmp_path / "w")
    ck = Checkpoints(wd, keep=3, keep_best=False)
    for step in (8, 16, 24):
        ck.save(step, _state(step), {"next": step}, {"best": None})
    ck.close()
    return wd


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_latest_is_set_aside_and_the_previous_one_restored(saved, kind, caplog):
    DAMAGE[kind](os.path.join(saved, "checkpoints", "24"))
    ck = Checkpoints(saved, keep=3, keep_best=False)
    step, state, data, _ = ck.restore_latest(abstract_like(_state(0)))
    assert step == 16 and data == {"next": 16}
    np.testing.assert_array_equal(np.asarray(state["params"]["w"]), np.asarray(_state(16)["params"]["w"]))
    assert ck.latest.all_steps() == [8, 16]
    aside = os.listdir(os.path.join(saved, "damaged_checkpoints"))
    assert len(aside) == 1 and aside[0].startswith("24-")
    assert any(os.path.join(saved, "checkpoints", "24") in r.getMessage() and "damaged" in r.getMessage()
               for r in caplog.records)
    ck.close()


def test_bit_flip_without_the_checksum_restores_silently(saved):
    """Why the manifest exists: orbax itself restores a flipped bit without complaint."""
    d = os.path.join(saved, "checkpoints", "24")
    os.remove(os.path.join(d, checksums.MANIFEST))
    _flip_bit(d)
    ck = Checkpoints(saved, keep=3, keep_best=False)
    step, state, _, _ = ck.restore_latest(abstract_like(_state(0)))
    assert step == 24
    assert not np.array_equal(np.asarray(state["params"]["w"]), np.asarray(_state(24)["params"]["w"]))
    ck.close()


def test_every_checkpoint_damaged_stops_naming_each(saved):
    for step, kind in ((8, "zeroed"), (16, "state_deleted"), (24, "garbage_metadata")):
        DAMAGE[kind](os.path.join(saved, "checkpoints", str(step)))
    ck = Checkpoints(saved, keep=3, keep_best=False)
    with pytest.raises(DamagedCheckpointError) as e:
        ck.restore_latest(abstract_like(_state(0)))
    msg = str(e.value)
    for step in (8, 16, 24):
        assert os.path.join(saved, "checkpoints", str(step)) + ":" in msg
    assert "state/_METADATA does not match its checksum" in msg or "state/_METADATA has" in msg
    assert "did not start afresh" in msg
    ck.close()


def test_intact_checkpoint_of_another_model_is_refused_not_set_aside(saved):
    ck = Checkpoints(saved, keep=3, keep_best=False)
    other = {"params": {"w": jnp.zeros((65, 32)), "b": jnp.zeros((32,))}, "step": jnp.asarray(0, jnp.int32)}
    with pytest.raises(Exception, match="intact .* does not restore into this run's model"):
        ck.restore_latest(abstract_like(other))
    assert ck.latest.all_steps() == [8, 16, 24]
    assert not os.path.exists(os.path.join(saved, "damaged_checkpoints"))
    ck.close()


TINY = "configs/dsg_kd.py:tiny"
ARGS = ("--config.eval.final=False", "--config.train.keep_checkpoints=3")


def test_run_resumes_from_the_newest_intact_checkpoint(tmp_path):
    """A finished run whose last checkpoint gets a flipped bit: rerun, it reports the path, resumes from the one
    before and ends with the uninterrupted parameters; with every checkpoint damaged it exits 1 naming them."""
    wd = str(tmp_path / "w")
    runs.run(TINY, wd, *ARGS)
    done = runs.final_params(wd)
    _flip_bit(os.path.join(wd, "checkpoints", "24"))
    p = runs.run(TINY, wd, *ARGS)
    assert f"checkpoint {os.path.join(wd, 'checkpoints', '24')} is damaged" in p.stderr
    assert "resumed from step 16" in p.stderr
    again = runs.final_params(wd)
    for k in done:
        np.testing.assert_array_equal(done[k], again[k], err_msg=k)
    for step in (8, 16, 24):
        _zero(os.path.join(wd, "checkpoints", str(step)))
    rows = len(runs.train_rows(wd))
    p = runs.run(TINY, wd, *ARGS, check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "no intact checkpoint to resume from" in p.stderr
    assert all(os.path.join(wd, "checkpoints", str(s)) in p.stderr for s in (8, 16, 24))
    assert len(runs.train_rows(wd)) == rows  # not a step trained afresh
    assert not [d for d in os.listdir(os.path.join(wd, "checkpoints")) if d.isdigit()]
