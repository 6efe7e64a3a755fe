"""Fitting a symbol's signal model on its bars: features, labels, the walk-forward evaluation
beside the honest references, and the final fit. No database here (see `family.train`).

Choices are made on the first fold's training side only; the registered model is refitted on every
labelled bar so the latest market is in it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ..config import Settings, config_key
from ..errors import MlkitError
from .evaluation import GATE_METRIC, per_class, scorecard
from .fallback import fallback_frame
from .horizon import Horizon, parse_horizon, resolve_horizon
from .indicators import (
    PREDICTION_LOOKBACK,
    Sanitization,
    compact_features,
    compute_features,
    sanitize,
)
from .labels import (
    CLASSES,
    Fold,
    Thresholds,
    class_counts,
    fit_thresholds,
    forward_returns,
    make_labels,
    walk_forward_folds,
)
from .model import (
    ModelSettings,
    Selection,
    catboost_params,
    class_weights,
    fit_blend,
    predict_proba,
    select_features,
)
from .references import fold_references, hindsight_majority

log = logging.getLogger("mlkit.train")

FEATURE_SETS = {"compact": compact_features, "wide": compute_features}


@dataclass(frozen=True)
class TrainSettings(Settings):
    """What `signal.*` says about labels, features, evaluation and the training guard."""

    section = "signal"

    horizon: int = config_key("horizon_bars")  # 0: counted from horizon_duration on the bars
    horizon_duration: str = config_key("horizon")
    sell_quantile: float
    buy_quantile: float
    folds: int = config_key("walk_forward_folds")
    test_fraction: float
    max_missing_share: float
    feature_set: str
    trade_cost_bps: float
    min_initial_train_samples: int
    model: ModelSettings

    def check(self) -> None:
        if self.horizon < 0:
            raise MlkitError(
                f"signal.horizon_bars {self.horizon} is negative",
                hint="give a count of bars, or 0 to count signal.horizon in bars",
            )
        if self.horizon == 0:
            parse_horizon(self.horizon_duration)
        if self.feature_set not in FEATURE_SETS:
            raise MlkitError(
                f"unknown signal.feature_set {self.feature_set!r}",
                hint=f"use one of {', '.join(FEATURE_SETS)}",
            )

    def horizon_on(self, ts) -> Horizon:
        """The label horizon on bars at times `ts` (see `horizon.resolve_horizon`)."""
        return resolve_horizon(ts, bars=self.horizon, duration=self.horizon_duration)

    def for_bars(self, ts) -> TrainSettings:
        """These settings with the horizon counted in bars on bars at times `ts`."""
        return self if self.horizon > 0 else replace(self, horizon=self.horizon_on(ts).bars)


def feature_frame(bars: pd.DataFrame, feature_set: str) -> pd.DataFrame:
    """The columns of `feature_set` for time-ordered bars; versions trained before feature
    sets existed used the wide one."""
    return FEATURE_SETS[feature_set or "wide"](bars)


# ---------------------------------------------------------------- features and labels


@dataclass
class Prepared:
    """Labelled rows, aligned and in time order: the model's features, the compact set (the
    logistic reference reads it), forward returns (labels), past returns over the horizon
    (the momentum reference), the next bar's return (backtests), closes, times, and each
    row's position among the bars."""

    features: pd.DataFrame
    compact: pd.DataFrame
    returns: np.ndarray
    past_returns: np.ndarray
    next_returns: np.ndarray
    close: np.ndarray
    ts: np.ndarray
    bar_rows: np.ndarray
    raw_samples: int
    fallback_signals: np.ndarray
    horizon: int = 0  # the bars the labels look ahead

    def __len__(self) -> int:
        return len(self.features)


def prepare(bars: pd.DataFrame, settings: TrainSettings) -> Prepared:
    """Indicators for every bar, then only the rows with a label and enough history: the
    last `horizon` bars have no forward return yet, and the first bars miss more than
    `max_missing_share` of their indicators."""
    log.info("[TRAIN] Preparing features and labels...")
    bars = bars.sort_values("ts", ignore_index=True)
    settings = settings.for_bars(bars["ts"])
    compact = compact_features(bars)
    features = compact if settings.feature_set == "compact" else compute_features(bars)
    log.info("[TRAIN] Raw features: %d, samples: %d", features.shape[1], len(features))
    close = bars["close"].to_numpy(dtype=float)
    returns = forward_returns(close, settings.horizon)
    past = -forward_returns(close[::-1], settings.horizon)[::-1]
    next_returns = forward_returns(close, 1)
    fallback = fallback_frame(bars["close"])["signal"].to_numpy()
    missing_share = np.isnan(features.to_numpy(dtype=float)).mean(axis=1)
    keep = np.isfinite(returns) & (missing_share <= settings.max_missing_share)
    log.info("[TRAIN] Samples after dropna: %d (dropped %d)", int(keep.sum()), int((~keep).sum()))
    return Prepared(
        features=features.loc[keep].reset_index(drop=True),
        compact=compact.loc[keep].reset_index(drop=True),
        returns=returns[keep],
        past_returns=past[keep],
        next_returns=np.nan_to_num(next_returns[keep]),
        close=close[keep],
        ts=bars["ts"].to_numpy()[keep],
        bar_rows=np.flatnonzero(keep),
        raw_samples=len(bars),
        fallback_signals=fallback[keep],
        horizon=settings.horizon,
    )


# ---------------------------------------------------------------- evaluation


@dataclass
class WalkForward:
    folds: list[Fold]
    sanitization: Sanitization
    selection: Selection
    y_true: np.ndarray
    predictions: dict[str, np.ndarray]  # "model" and each reference, on the test rows
    test_rows: np.ndarray
    metrics: dict

    @property
    def y_pred(self) -> np.ndarray:
        return self.predictions["model"]

    @property
    def baselines(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in self.predictions.items() if k != "model"}


def choose_features(prepared: Prepared, first: Fold, settings: TrainSettings):
    """Sanitisation and (wide set) feature selection, on the first fold's training rows."""
    selection_rows = prepared.features.iloc[: first.train_end]
    sanitization = sanitize(selection_rows, settings.max_missing_share)
    dropped = ", ".join(f"{k} {len(v)}" for k, v in sanitization.dropped.items())
    log.info(
        "[TRAIN] Sanitization: %d -> %d features (dropped: %s)",
        sanitization.initial,
        sanitization.final,
        dropped,
    )
    if sanitization.final == 0:
        raise MlkitError("sanitisation left no usable feature (constant or missing prices?)")
    if settings.feature_set == "compact":
        selection = Selection("none", sanitization.kept, "the compact set is used whole")
    else:
        returns = prepared.returns[: first.train_end]
        thresholds = fit_thresholds(returns, settings.sell_quantile, settings.buy_quantile)
        selection = select_features(
            selection_rows[sanitization.kept],
            make_labels(returns, thresholds),
            settings.model,
            gap=settings.horizon,
        )
    log.info(
        "[TRAIN] Feature selection (%s): %d features in %.1f s; %s",
        selection.method,
        len(selection.features),
        selection.seconds,
        selection.reason,
    )
    return sanitization, selection


def walk_forward(prepared: Prepared, settings: TrainSettings) -> WalkForward:
    """Expanding-window folds with a purge gap of `horizon` bars; per fold, thresholds,
    the model and every reference are fitted on its training rows only."""
    if settings.horizon == 0:
        settings = replace(settings, horizon=prepared.horizon)
    folds = walk_forward_folds(
        len(prepared), settings.folds, settings.test_fraction, gap=settings.horizon
    )
    sanitization, selection = choose_features(prepared, folds[0], settings)
    chosen = selection.features
    y_true, rows = [], []
    predictions: dict[str, list] = {}
    for fold in folds:
        train_returns = prepared.returns[: fold.train_end]
        thresholds = fit_thresholds(train_returns, settings.sell_quantile, settings.buy_quantile)
        y_train = make_labels(train_returns, thresholds).astype(int)
        model = fit_blend(
            prepared.features.iloc[: fold.train_end][chosen],
            y_train,
            settings.model,
            gap=settings.horizon,
        )
        test = slice(fold.test_start, fold.test_end)
        probabilities = predict_proba(model, prepared.features.iloc[test][chosen])
        fold_predictions = {"model": probabilities.argmax(axis=1)} | fold_references(
            fold,
            y_train,
            thresholds,
            prepared.past_returns,
            prepared.compact,
            seed=settings.model.random_seed,
        )
        for name, values in fold_predictions.items():
            predictions.setdefault(name, []).append(np.asarray(values, dtype=int))
        y_true.append(make_labels(prepared.returns[test], thresholds).astype(int))
        rows.append(np.arange(fold.test_start, fold.test_end))
    truth, test_rows = np.concatenate(y_true), np.concatenate(rows)
    joined = {name: np.concatenate(parts) for name, parts in predictions.items()}
    metrics = walk_metrics(prepared, settings, truth, joined, test_rows)
    metrics["folds"] = [f.as_dict() for f in folds]
    _log_walk(metrics, len(folds), settings.horizon)
    return WalkForward(folds, sanitization, selection, truth, joined, test_rows, metrics)


def walk_metrics(prepared, settings, truth, predictions, test_rows) -> dict:
    """The model's figures, each reference's beside it (with intervals), and the backtests."""
    cost = settings.trade_cost_bps
    next_returns = prepared.next_returns[test_rows]
    fallback = prepared.fallback_signals[test_rows]
    card = scorecard(
        truth,
        predictions | {"fallback": fallback},
        next_returns,
        cost_bps=cost,
        block=settings.horizon,
    )
    model = card["model"]
    return {
        "accuracy": model["accuracy"],
        "macro_f1": model["macro_f1"],
        # The training period's commonest class, scored on the test rows (an honest
        # no-skill figure); the test rows' own commonest class is hindsight, shown apart.
        "majority_accuracy": card["training_majority"]["accuracy"],
        "hindsight_majority_accuracy": hindsight_majority(truth),
        "per_class": per_class(truth, predictions["model"]),
        "gate_metric": GATE_METRIC,
        "baselines": {name: card[name][GATE_METRIC] for name in predictions if name != "model"},
        "references": card,
        "backtest": {
            "bars": len(test_rows),
            "model": model["backtest"],
            "fallback": card["fallback"]["backtest"],
            "buy_and_hold": {
                "return": float(np.expm1(next_returns.sum())),
                "trades": 1,
                "exposure": 1.0,
            },
            "cost_bps": cost,
        },
    }


def _log_walk(metrics: dict, n_folds: int, horizon: int) -> None:
    card = metrics["references"]
    log.info(
        "[TRAIN] Walk-forward: %d folds, purge gap %d bars, %d test bars: accuracy %.3f, "
        "macro-F1 %.3f; references (accuracy / macro-F1): %s",
        n_folds,
        horizon,
        metrics["backtest"]["bars"],
        metrics["accuracy"],
        metrics["macro_f1"],
        ", ".join(
            f"{name} {entry['accuracy']:.3f} / {entry['macro_f1']:.3f}"
            for name, entry in card.items()
            if name != "model"
        ),
    )
    bt = metrics["backtest"]
    log.info(
        "[TRAIN] Backtest on the test bars: model %+.2f%%, fallback %+.2f%%, buy and hold %+.2f%%",
        100 * bt["model"]["return"],
        100 * bt["fallback"]["return"],
        100 * bt["buy_and_hold"]["return"],
    )


# ---------------------------------------------------------------- the whole fit


@dataclass
class SignalFit:
    model: object
    features: list[str]
    thresholds: Thresholds
    class_distribution: dict[str, int]
    class_weights: dict[str, float]
    walk: WalkForward
    prepared: Prepared
    n_samples: int
    raw_features: int
    raw_samples: int
    trained_until: object
    input_example: list[dict]
    seconds: dict[str, float]
    horizon: Horizon
    settings: TrainSettings  # with the horizon counted in bars

    def params(self, settings: TrainSettings) -> dict:
        return {
            "catboost": catboost_params(settings.model),
            "trees": int(self.model.tree_count_),
            "feature_set": settings.feature_set,
            "horizon_bars": self.horizon.bars,
            "horizon": self.horizon.duration,
            "bar_interval_seconds": self.horizon.interval_seconds,
            "sell_quantile": settings.sell_quantile,
            "buy_quantile": settings.buy_quantile,
            "thresholds": self.thresholds.as_dict(),
            "classes": list(CLASSES),
            "class_weights": self.class_weights,
            "selection": self.walk.selection.as_dict(),
            "sanitization": self.walk.sanitization.as_dict(),
            "lookback_bars": PREDICTION_LOOKBACK,
            "trained_until": pd.Timestamp(self.trained_until).isoformat(),
        }


def fit_signal(bars: pd.DataFrame, settings: TrainSettings) -> SignalFit:
    """Everything a registered version needs, from a symbol's bars."""
    started = time.perf_counter()
    horizon = settings.horizon_on(bars["ts"])
    settings = replace(settings, horizon=horizon.bars)
    prepared = prepare(bars, settings)
    log.info("[TRAIN] Label horizon: %s", horizon.describe())
    if len(prepared) < 2:
        raise MlkitError(f"only {len(prepared)} labelled bars after dropping the warm-up")
    thresholds = fit_thresholds(prepared.returns, settings.sell_quantile, settings.buy_quantile)
    labels = make_labels(prepared.returns, thresholds)
    distribution = class_counts(labels)
    log.info(
        "[TRAIN] Class distribution - %s",
        ", ".join(f"{name}: {count}" for name, count in distribution.items()),
    )
    prepared_at = time.perf_counter()
    walk = walk_forward(prepared, settings)
    evaluated_at = time.perf_counter()
    chosen = walk.selection.features
    log.info("[TRAIN] Final dataset: %d samples with %d features", len(prepared), len(chosen))
    model = fit_blend(prepared.features[chosen], labels, settings.model, gap=settings.horizon)
    finished = time.perf_counter()
    example = prepared.features[chosen].tail(3)
    return SignalFit(
        model=model,
        features=list(chosen),
        thresholds=thresholds,
        class_distribution=distribution,
        class_weights=class_weights(model),
        walk=walk,
        prepared=prepared,
        n_samples=len(prepared),
        raw_features=prepared.features.shape[1],
        raw_samples=prepared.raw_samples,
        trained_until=prepared.ts[-1],
        input_example=example.astype(object).where(example.notna(), None).to_dict("records"),
        seconds={
            "features": prepared_at - started,
            "selection": walk.selection.seconds,
            "walk_forward": evaluated_at - prepared_at - walk.selection.seconds,
            "final_fit": finished - evaluated_at,
            "total": finished - started,
        },
        horizon=horizon,
        settings=settings,
    )
