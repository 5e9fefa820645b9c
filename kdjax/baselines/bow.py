"""Bag-of-words baselines of DSG-KD Table 2.2: random forest, logistic regression, gradient boosting
and XGBoost (when the xgboost package is installed; the report says when it is not)."""

from __future__ import annotations

import importlib.util
from typing import Sequence

import numpy as np

from kdjax.metrics.classification import binary_metrics


def _models(seed: int) -> dict:
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    models = {
        "bow_rf": RandomForestClassifier(n_estimators=200, random_state=seed, n_jobs=1),
        "bow_lr": LogisticRegression(max_iter=2000, random_state=seed),
        "bow_gb": GradientBoostingClassifier(random_state=seed),
    }
    if importlib.util.find_spec("xgboost") is not None:
        from xgboost import XGBClassifier

        models["bow_xgboost"] = XGBClassifier(n_estimators=200, max_depth=4, random_state=seed,
                                              n_jobs=1, verbosity=0)
    return models


def run_baselines(train_texts: Sequence[str], train_labels: Sequence[int], test_texts: Sequence[str],
                  test_labels: Sequence[int], seed: int = 42) -> dict[str, dict[str, float]]:
    """Fit each baseline on whitespace-token counts and score it on the test split."""
    from sklearn.feature_extraction.text import CountVectorizer

    vec = CountVectorizer(token_pattern=r"\S+", lowercase=True, min_df=2)
    xtr = vec.fit_transform(train_texts)
    xte = vec.transform(test_texts)
    out = {}
    for name, model in _models(seed).items():
        model.fit(xtr, np.asarray(train_labels))
        out[name] = binary_metrics(np.asarray(test_labels), model.predict_proba(xte)[:, 1])
    if "bow_xgboost" not in out:
        out["bow_xgboost"] = {"unavailable": "xgboost is not installed (pip install xgboost)"}
    return out
