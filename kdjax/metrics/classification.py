"""Binary classification metrics of DSG-KD Table 2.2, in NumPy.

Definitions follow scikit-learn's (accuracy_score, roc_auc_score, average_precision_score,
recall_score, precision_score, f1_score with zero_division=0) and are tested equal to it to 1e-6.
Predictions are argmax of the logits (probability of the positive class > 0.5), not the training
positive rate the reference code used as threshold.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

NAMES = ("accuracy", "auroc", "auprc", "recall", "precision", "f1")


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve via the rank-sum (Mann-Whitney) identity; ties count one half."""
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)  # average ranks for ties
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """AP = sum_n (R_n - R_{n-1}) P_n over distinct score thresholds, from the highest down."""
    labels = np.asarray(labels).astype(bool)
    if labels.sum() == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores), kind="mergesort")
    s, y = np.asarray(scores)[order], labels[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each distinct score
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall = tp / labels.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def binary_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """labels (n,) in {0, 1}; probs (n,) probability of class 1. Adds 'average' over the six."""
    labels = np.asarray(labels).astype(int)
    probs = np.asarray(probs, np.float64)
    pred = (probs > 0.5).astype(int)
    tp = int(np.sum((pred == 1) & (labels == 1)))
    fp = int(np.sum((pred == 1) & (labels == 0)))
    fn = int(np.sum((pred == 0) & (labels == 1)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    out = {
        "accuracy": float(np.mean(pred == labels)),
        "auroc": auroc(labels, probs),
        "auprc": average_precision(labels, probs),
        "recall": recall,
        "precision": precision,
        "f1": f1,
    }
    out["average"] = float(np.mean([out[k] for k in NAMES]))
    return out


def multiclass_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """labels (n,), probs (n, classes): accuracy, balanced accuracy (mean per-class recall over the
    classes present) and macro F1, as scikit-learn defines them."""
    labels = np.asarray(labels).astype(int)
    pred = np.asarray(probs).argmax(-1)
    present = np.unique(labels)
    recall = [np.mean(pred[labels == c] == c) for c in present]
    f1 = []
    for c in np.union1d(present, np.unique(pred)):
        tp = np.sum((pred == c) & (labels == c))
        denom = np.sum(pred == c) + np.sum(labels == c)
        f1.append(2 * tp / denom if denom else 0.0)
    return {"accuracy": float(np.mean(pred == labels)), "balanced_accuracy": float(np.mean(recall)),
            "macro_f1": float(np.mean(f1))}


def multilabel_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """labels (n, classes) in {0, 1}, probs (n, classes) independent probabilities: macro mAP and macro AUROC over
    the classes with both positives and negatives (scikit-learn's average="macro" with such classes), and the mean
    per-class accuracy at 0.5."""
    labels, probs = np.asarray(labels).astype(bool), np.asarray(probs, np.float64)
    scored = [c for c in range(labels.shape[1]) if 0 < labels[:, c].sum() < len(labels)]
    return {"mAP": float(np.mean([average_precision(labels[:, c], probs[:, c]) for c in scored])) if scored
            else float("nan"),
            "auroc": float(np.mean([auroc(labels[:, c], probs[:, c]) for c in scored])) if scored else float("nan"),
            "accuracy": float(np.mean((probs > 0.5) == labels))}
