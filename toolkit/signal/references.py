"""The honest references a signal model must beat, on the model's own walk-forward folds.

Each reference is fitted on a fold's training rows only (labels cut at that fold's training
thresholds) and predicts the fold's test rows from what is known at their bar: the test
labels are never read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .labels import BUY, CLASSES, HOLD, SELL, Fold, Thresholds

if TYPE_CHECKING:
    import pandas as pd

REFERENCES = ("training_majority", "random", "momentum", "logistic")
# The logistic reference's inputs: ten of the compact set's columns.
LOGISTIC_FEATURES = (
    "momentum_z_6",
    "momentum_z_12",
    "momentum_z_24",
    "momentum_z_48",
    "momentum_z_96",
    "volatility_ratio_24",
    "rsi_14",
    "sma_gap_z_24",
    "high_distance_z_48",
    "low_distance_z_48",
)


def fold_references(
    fold: Fold,
    y_train: np.ndarray,
    thresholds: Thresholds,
    past_returns: np.ndarray,
    compact: pd.DataFrame,
    *,
    seed: int,
) -> dict[str, np.ndarray]:
    """Each reference's class predictions for the test rows of one fold.

    `y_train` are the labels of rows [0, fold.train_end); `past_returns` and `compact`
    cover every row (a row's value uses only bars up to it)."""
    test = slice(fold.test_start, fold.test_end)
    n_test = fold.test_end - fold.test_start
    counts = np.bincount(y_train, minlength=len(CLASSES))
    rng = np.random.default_rng([seed, fold.test_start])
    past = past_returns[test]
    momentum = np.where(past > thresholds.buy, BUY, np.where(past < thresholds.sell, SELL, HOLD))
    return {
        "training_majority": np.full(n_test, int(counts.argmax())),
        "random": rng.choice(len(CLASSES), size=n_test, p=counts / counts.sum()),
        # A past move as large as a label's: the same class next; unknown past: HOLD.
        "momentum": momentum,
        "logistic": _logistic(compact, fold, y_train),
    }


def _logistic(compact: pd.DataFrame, fold: Fold, y_train: np.ndarray) -> np.ndarray:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    columns = list(LOGISTIC_FEATURES)
    model = make_pipeline(
        SimpleImputer(strategy="median"),
        StandardScaler(),
        LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000),
    )
    model.fit(compact[columns].iloc[: fold.train_end].to_numpy(dtype=float), y_train)
    test = compact[columns].iloc[fold.test_start : fold.test_end].to_numpy(dtype=float)
    return model.predict(test).astype(int)


def hindsight_majority(y_test: np.ndarray) -> float:
    """The accuracy of always predicting the test rows' own commonest class: hindsight, shown
    for context and never a baseline (it reads the labels it is scored on)."""
    if len(y_test) == 0:
        return 0.0
    return float(np.bincount(y_test, minlength=len(CLASSES)).max() / len(y_test))
