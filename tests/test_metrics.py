"""DSG-KD metrics: equal to scikit-learn, MWPS by hand, the embedding plot, BoW baselines."""

import numpy as np
import pytest
from sklearn import metrics as skm

from kdjax.metrics.classification import binary_metrics, multilabel_metrics
from kdjax.metrics.embedding_plot import plot_embeddings
from kdjax.metrics.mwps import mwps, word_counts


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, True)])
def test_binary_metrics_equal_sklearn(seed, ties):
    rng = np.random.default_rng(seed)
    n = 997
    labels = rng.integers(0, 2, n)
    probs = np.clip(labels * 0.3 + rng.normal(0.35, 0.25, n), 0, 1)
    if ties:
        probs = np.round(probs, 1)  # many tied scores, as with confident classifiers
    ours = binary_metrics(labels, probs)
    pred = (probs > 0.5).astype(int)
    ref = {
        "accuracy": skm.accuracy_score(labels, pred),
        "auroc": skm.roc_auc_score(labels, probs),
        "auprc": skm.average_precision_score(labels, probs),
        "recall": skm.recall_score(labels, pred, zero_division=0),
        "precision": skm.precision_score(labels, pred, zero_division=0),
        "f1": skm.f1_score(labels, pred, zero_division=0),
    }
    for k, v in ref.items():
        assert abs(ours[k] - v) <= 1e-6, (k, ours[k], v)
    assert abs(ours["average"] - np.mean(list(ref.values()))) <= 1e-6


def test_degenerate_predictions_match_sklearn_zero_division():
    labels = np.array([0, 1, 1, 0])
    probs = np.array([0.1, 0.2, 0.3, 0.4])  # nothing predicted positive
    ours = binary_metrics(labels, probs)
    assert ours["precision"] == skm.precision_score(labels, probs > 0.5, zero_division=0) == 0.0
    assert ours["f1"] == 0.0
    assert abs(ours["auroc"] - skm.roc_auc_score(labels, probs)) < 1e-12


def test_multilabel_metrics_equal_sklearn_macro():
    """Macro mAP and AUROC over the classes scikit-learn can score (a class with no positive is left out of both)."""
    rng = np.random.default_rng(3)
    labels = (rng.random((200, 6)) < 0.3).astype(int)
    labels[:, 5] = 0  # no positives: undefined for AUROC and AP, left out
    probs = np.clip(labels * 0.3 + rng.normal(0.35, 0.25, labels.shape), 0, 1).round(2)
    ours = multilabel_metrics(labels, probs)
    assert abs(ours["mAP"] - skm.average_precision_score(labels[:, :5], probs[:, :5], average="macro")) <= 1e-6
    assert abs(ours["auroc"] - skm.roc_auc_score(labels[:, :5], probs[:, :5], average="macro")) <= 1e-6
    assert abs(ours["accuracy"] - np.mean((probs > 0.5) == labels)) <= 1e-12


def test_mwps_by_hand():
    texts = ["fever 있음 cough today", "seizure 로 내원 ( BT 39 )"]
    # words: 4 + 7 = 11; English: fever cough today seizure BT = 5; medical: fever cough seizure = 3
    assert word_counts(texts, ["fever", "cough", "seizure"]) == (3, 5, 11)
    assert mwps(texts, ["fever", "cough", "seizure"]) == pytest.approx(3 * 11 / 25)
    assert np.isnan(mwps(["한국어 만"], ["fever"]))


def test_embedding_plot_writes_png(tmp_path):
    rng = np.random.default_rng(0)
    t = rng.normal(size=(40, 8))
    s = t + rng.normal(scale=0.1, size=t.shape)
    far = rng.normal(loc=5.0, size=t.shape)
    dom = np.arange(40) % 3 == 0
    out = plot_embeddings({"teacher": (t, dom), "student": (s, dom), "baseline": (far, dom)},
                          str(tmp_path / "p.png"))
    png = (tmp_path / "p.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert out["centroid_distance/student"] < out["centroid_distance/baseline"]


def test_bow_baselines_learn_synthetic_notes():
    from kdjax.baselines.bow import run_baselines
    from kdjax.data.synthetic_notes import generate_notes

    tr, te = generate_notes(400, 0), generate_notes(200, 1)
    out = run_baselines([n.text for n in tr], [n.label for n in tr], [n.text for n in te],
                        [n.label for n in te])
    assert {"bow_rf", "bow_lr", "bow_gb", "bow_xgboost"} <= set(out)
    for name in ("bow_rf", "bow_lr", "bow_gb"):
        assert out[name]["auroc"] > 0.7, (name, out[name])
