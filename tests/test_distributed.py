"""How a process decides to join a multi-host job (kdjax/train/distributed.py). The real 2-process job
is in test_trainer_runs.py."""

import pytest

from kdjax.train.distributed import plan

SLURM = {"SLURM_JOB_ID": "77", "SLURM_PROCID": "1", "SLURM_LOCALID": "0", "SLURM_NTASKS": "4",
         "SLURM_STEP_NODELIST": "gpu[01-04]", "SLURM_STEP_NUM_TASKS": "4"}


def test_single_machine_joins_nothing():
    assert plan(environ={}, tpu_vm=False).kind == "single"
    # a one-task SLURM allocation is a single process too
    assert plan(environ={**SLURM, "SLURM_NTASKS": "1", "SLURM_STEP_NUM_TASKS": "1"}, tpu_vm=False).kind == "single"
    assert plan("off", environ=SLURM, tpu_vm=True).kind == "single"


def test_explicit_from_flags_or_jax_variables():
    p = plan(coordinator_address="10.0.0.2:1234", num_processes=4, process_id=3, environ=SLURM, tpu_vm=True)
    assert p.kind == "explicit"  # explicit settings win over what the cluster would say
    assert p.kwargs == {"coordinator_address": "10.0.0.2:1234", "num_processes": 4, "process_id": 3}
    env = {"JAX_COORDINATOR_ADDRESS": "h:9", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}
    assert plan(environ=env, tpu_vm=False).kwargs == {"coordinator_address": "h:9", "num_processes": 2,
                                                      "process_id": 1}


def test_explicit_needs_all_three_and_a_valid_rank():
    with pytest.raises(ValueError, match="missing: --num_processes, --process_id"):
        plan(coordinator_address="h:1", environ={}, tpu_vm=False)
    with pytest.raises(ValueError, match="missing: --coordinator_address"):
        plan("explicit", num_processes=2, process_id=0, environ={}, tpu_vm=False)
    with pytest.raises(ValueError, match=r"--process_id=2 is not in \[0, 2\)"):
        plan(coordinator_address="h:1", num_processes=2, process_id=2, environ={}, tpu_vm=False)


def test_slurm_and_tpu_are_detected():
    assert plan(environ=SLURM, tpu_vm=False).kind == "slurm"
    assert plan(environ={}, tpu_vm=True).kind == "tpu"
    with pytest.raises(ValueError, match="SLURM_PROCID"):
        plan("slurm", environ={}, tpu_vm=False)
    with pytest.raises(ValueError, match="is not one of"):
        plan("mpi", environ={})


def test_bad_flags_exit_with_one_line(tmp_path):
    from tests import runs

    p = runs.run("configs/dsg_kd.py:tiny", str(tmp_path), "--coordinator_address=127.0.0.1:1", check=False)
    assert p.returncode != 0 and "kdjax: an explicit multi-process job needs" in p.stderr
    assert "Traceback" not in p.stderr
