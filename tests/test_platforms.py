"""A CPU host's first screen shows kdjax's own lines: no CUDA-plugin tracebacks, no libtpu errors
(kdjax/platforms.py), while a GPU or TPU host and an explicit JAX_PLATFORMS are left alone."""

import os
import subprocess
import sys

import pytest

from kdjax import platforms
from tests import runs


def _find(present):
    return lambda pattern: [pattern] if pattern in present else []


@pytest.mark.parametrize("present, environ, expect", [
    ((), {}, "cpu"),
    (("/dev/nvidia[0-9]*",), {}, None),
    (("/dev/kfd",), {}, None),
    (("/dev/vfio/[0-9]*",), {}, None),
    (("/dev/accel*",), {}, None),
    ((), {"TPU_ACCELERATOR_TYPE": "v5litepod-16"}, None),
    ((), {"JAX_PLATFORMS": "cuda"}, "cuda"),
    ((), {"JAX_PLATFORMS": ""}, ""),  # an explicit empty value means "all plugins" to JAX: kept
])
def test_cpu_only_where_no_accelerator_and_nothing_chosen(present, environ, expect):
    env = dict(environ)
    changed = platforms.default_to_cpu_without_accelerators(env, _find(present))
    assert env.get("JAX_PLATFORMS") == expect
    assert changed == (expect == "cpu" and "JAX_PLATFORMS" not in environ)


def test_a_cpu_start_prints_only_kdjaxs_lines(tmp_path):
    """Today (with the test extras' CUDA plugin and libtpu installed): two 'Unable to load cuDNN' tracebacks and
    libtpu's TPU_WORKER errors before the first step. The host is one without accelerators whatever this machine
    has: the start-up sees no device nodes and no TPU variables."""
    env = runs.env(1)
    del env["JAX_PLATFORMS"]
    for v in platforms.TPU_VARIABLES:
        env.pop(v, None)
    no_accelerators = ("import sys, runpy; import kdjax.platforms as p; p.ACCELERATOR_NODES = (); "
                       "sys.argv[0] = 'kdjax.main'; runpy.run_module('kdjax.main', run_name='__main__')")
    cmd = runs.command("configs/dsg_kd.py:tiny", str(tmp_path / "w"), "--config.train.steps=1",
                       "--config.eval.final=False")
    p = subprocess.run([sys.executable, "-c", no_accelerators, *cmd[3:]],
                       env=env, cwd=runs.REPO, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    for noise in ("Traceback", "cuDNN", "libtpu", "TPU", "plugin"):
        assert noise not in p.stderr, p.stderr[:3000]
    assert "trainable" in p.stderr  # kdjax's own lines are there
    assert os.path.isfile(tmp_path / "w" / "report.json")
