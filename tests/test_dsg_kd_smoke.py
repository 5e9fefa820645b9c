"""The README's main job: DSG-KD smoke (real MiniLM teacher, synthetic notes) learns the task."""

import json
import os

import pytest

from tests import runs


@pytest.mark.slow
def test_smoke_run_learns_and_reports(tmp_path):
    wd = str(tmp_path / "smoke")
    # two of the variant's three epochs keep CI inside its budget (dev AUROC is already ~0.8 by then)
    out = runs.run("configs/dsg_kd.py:smoke", wd, "--config.train.epochs=2", timeout=1500, optimize=True)
    assert "Evaluation (best" in out.stdout
    report = json.load(open(os.path.join(wd, "report.json")))
    test = report["metrics"]["test"]
    assert test["auroc"] > 0.7, test  # chance is 0.5
    assert test["accuracy"] > 0.6, test
    # The KD terms are active and fall.
    rows = runs.train_rows(wd)
    assert rows[-1]["hidn"] < 0.7 * rows[0]["hidn"]
    assert all(r["attn"] > 0 for r in rows)
    # Report extras: MWPS on correctly classified notes, the PCA plot, the BoW comparison table.
    assert report["mwps"]["correct_test_notes"] > 0
    assert os.path.getsize(report["embedding_plot"]["path"]) > 5000
    assert {"bow_rf", "bow_lr", "bow_gb", "bow_xgboost"} <= set(report["baselines"])
    assert report["info"]["hidden_projection"] and report["info"]["layer_map"][-1] == [2, 6]
