"""SELL / HOLD / BUY labels from forward returns, and walk-forward folds with a purge gap, so no
test price shapes a training label (thresholds come from the training period only).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from ..errors import MlkitError

CLASSES = ("SELL", "HOLD", "BUY")  # class index 0, 1, 2
SELL, HOLD, BUY = 0, 1, 2
UNLABELLED = -1


def forward_returns(close: np.ndarray, horizon: int) -> np.ndarray:
    """log(close[t + horizon] / close[t]); NaN for the last `horizon` bars."""
    close = np.asarray(close, dtype=float)
    out = np.full(close.shape, np.nan)
    if horizon < 1:
        raise ValueError("horizon must be at least one bar")
    if len(close) > horizon:
        out[:-horizon] = np.log(close[horizon:] / close[:-horizon])
    return out


@dataclass(frozen=True)
class Thresholds:
    """Forward returns below `sell` are SELL, above `buy` BUY, the rest HOLD."""

    sell: float
    buy: float

    def as_dict(self) -> dict:
        return {"sell": self.sell, "buy": self.buy}


def fit_thresholds(returns: np.ndarray, sell_quantile: float, buy_quantile: float) -> Thresholds:
    """Quantiles of the (training) forward returns; NaN ones ignored."""
    if not 0.0 < sell_quantile < buy_quantile < 1.0:
        raise MlkitError(
            f"signal quantiles must satisfy 0 < sell_quantile < buy_quantile < 1, got "
            f"{sell_quantile} and {buy_quantile}",
            hint="fix signal.sell_quantile / signal.buy_quantile in config.yaml",
        )
    values = np.asarray(returns, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        raise MlkitError("no forward return to fit the label thresholds on")
    sell, buy = np.quantile(values, [sell_quantile, buy_quantile])
    return Thresholds(float(sell), float(buy))


def make_labels(returns: np.ndarray, thresholds: Thresholds) -> np.ndarray:
    """Class index per bar; UNLABELLED where the forward return is unknown."""
    returns = np.asarray(returns, dtype=float)
    labels = np.full(returns.shape, HOLD, dtype=np.int8)
    labels[returns < thresholds.sell] = SELL
    labels[returns > thresholds.buy] = BUY
    labels[~np.isfinite(returns)] = UNLABELLED
    return labels


def class_counts(labels: np.ndarray) -> dict[str, int]:
    counts = np.bincount(labels[labels >= 0].astype(np.int64), minlength=len(CLASSES))
    return {name: int(counts[i]) for i, name in enumerate(CLASSES)}


@dataclass(frozen=True)
class Fold:
    """Rows [0, train_end) train, [test_start, test_end) test; test_start - train_end is
    the purge gap."""

    train_end: int
    test_start: int
    test_end: int

    def as_dict(self) -> dict:
        return {
            "train_rows": self.train_end,
            "gap_rows": self.test_start - self.train_end,
            "test_rows": self.test_end - self.test_start,
            "test_start_row": self.test_start,
        }


def walk_forward_folds(n_rows: int, folds: int, test_fraction: float, gap: int) -> list[Fold]:
    """Expanding-window folds over time-ordered rows: the last `test_fraction` of the rows
    is cut into `folds` consecutive test blocks; each block trains on every row before it
    except the `gap` rows right before it."""
    if folds < 1:
        raise MlkitError("signal.walk_forward_folds must be at least 1")
    if not 0.0 < test_fraction < 1.0:
        raise MlkitError("signal.test_fraction must lie between 0 and 1")
    test_rows = round(n_rows * test_fraction)
    first_test = n_rows - test_rows
    if test_rows < folds or first_test - gap < 1:
        raise MlkitError(
            f"{n_rows} labelled bars are too few for {folds} walk-forward fold(s) with a "
            f"{gap}-bar purge gap",
            hint="load more history, or lower signal.walk_forward_folds / signal.horizon_bars",
        )
    edges = np.linspace(first_test, n_rows, folds + 1).round().astype(int)
    return [
        Fold(train_end=int(start) - gap, test_start=int(start), test_end=int(end))
        for start, end in pairwise(edges)
    ]
