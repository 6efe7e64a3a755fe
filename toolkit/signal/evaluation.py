"""Scoring walk-forward predictions: accuracy, macro-F1 and a backtest per predictor, each with a
block-bootstrap interval, and the promotion gate's verdict on the model against its references.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .labels import BUY, CLASSES, SELL

# The gate's figure. Macro-F1 rather than accuracy: the classes' shares move with the market
# (a trending test window hands always-BUY a high accuracy without any skill), while macro-F1
# gives a constant prediction at most about a quarter and asks for skill on all three classes.
GATE_METRIC = "macro_f1"
LEVEL = 0.90


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(y_true == y_pred)) if len(y_true) else 0.0


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The mean over the three classes of F1 (0 for a class neither present nor predicted)."""
    scores = []
    for k in range(len(CLASSES)):
        hit = np.sum((y_true == k) & (y_pred == k))
        wrong = np.sum(y_true == k) + np.sum(y_pred == k)
        scores.append(2.0 * hit / wrong if wrong else 0.0)
    return float(np.mean(scores))


SCORES = {"accuracy": accuracy, "macro_f1": macro_f1}


def per_class(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    out = {}
    for k, name in enumerate(CLASSES):
        hit = int(np.sum((y_true == k) & (y_pred == k)))
        predicted, support = int(np.sum(y_pred == k)), int(np.sum(y_true == k))
        precision = hit / predicted if predicted else 0.0
        recall = hit / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    return out


def backtest_log_returns(signals: np.ndarray, next_returns: np.ndarray, cost_bps: float):
    """Per-bar log returns of the long-only rule: BUY goes long, SELL goes flat, HOLD keeps
    the position; the position held after bar t earns bar t+1's log return, minus
    `cost_bps` per change. Also the positions."""
    import pandas as pd

    wanted = np.where(signals == BUY, 1.0, np.where(signals == SELL, 0.0, np.nan))
    position = pd.Series(wanted).ffill().fillna(0.0).to_numpy()
    changes = np.abs(np.diff(np.concatenate([[0.0], position])))
    return position * next_returns - changes * cost_bps / 10_000, position, changes


def backtest(signals: np.ndarray, next_returns: np.ndarray, cost_bps: float) -> dict:
    log_returns, position, changes = backtest_log_returns(signals, next_returns, cost_bps)
    return {
        "return": float(np.expm1(log_returns.sum())),
        "trades": int((changes > 0).sum()),
        "exposure": float(position.mean()) if len(position) else 0.0,
    }


def scorecard(
    y_true: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    next_returns: np.ndarray,
    *,
    cost_bps: float,
    block: int,
) -> dict[str, dict]:
    """Per predictor: accuracy, macro-F1 and the backtest's return, each with its
    block-bootstrap interval over the same resamples of the test bars."""
    from ..gate import resample_indices

    indices = resample_indices(len(y_true), block=block)
    tail = (1 - LEVEL) / 2
    card = {}
    for name, y_pred in predictions.items():
        bar_returns, _, _ = backtest_log_returns(y_pred, next_returns, cost_bps)
        entry: dict = {}
        for metric, score in SCORES.items():
            draws = [score(y_true[i], y_pred[i]) for i in indices]
            low, high = np.quantile(draws, [tail, 1 - tail])
            entry[metric] = float(score(y_true, y_pred))
            entry[f"{metric}_interval"] = [float(low), float(high)]
        draws = np.expm1(bar_returns[indices].sum(axis=1))
        entry["backtest"] = backtest(y_pred, next_returns, cost_bps)
        entry["backtest_interval"] = [float(q) for q in np.quantile(draws, [tail, 1 - tail])]
        card[name] = entry
    return card
