"""Training a symbol's signal model: features, labels, walk-forward evaluation, final fit.

Choices are made on the first fold's training side only; the registered model is refitted on every
labelled bar so the latest market is in it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from ..config import Settings, config_key
from ..errors import MlkitError
from .fallback import fallback_frame
from .indicators import PREDICTION_LOOKBACK, Sanitization, compute_features, sanitize
from .labels import (
    BUY,
    CLASSES,
    SELL,
    Fold,
    Thresholds,
    class_counts,
    fit_thresholds,
    forward_returns,
    make_labels,
    walk_forward_folds,
)
from .model import (
    FILENAME,
    ModelSettings,
    Selection,
    catboost_params,
    class_weights,
    fit_classifier,
    predict_proba,
    select_features,
)

log = logging.getLogger("mlkit.train")


@dataclass(frozen=True)
class TrainSettings(Settings):
    """What `signal.*` says about labels, evaluation and the training guard."""

    section = "signal"

    horizon: int = config_key("horizon_bars")
    sell_quantile: float
    buy_quantile: float
    folds: int = config_key("walk_forward_folds")
    test_fraction: float
    max_missing_share: float
    trade_cost_bps: float
    min_initial_train_samples: int
    model: ModelSettings


# ---------------------------------------------------------------- features and labels


@dataclass
class Prepared:
    """Labelled rows: features, forward returns, the next bar's return (for backtests),
    closes and times, all aligned and in time order."""

    features: pd.DataFrame
    returns: np.ndarray
    next_returns: np.ndarray
    close: np.ndarray
    ts: np.ndarray
    raw_samples: int
    fallback_signals: np.ndarray

    def __len__(self) -> int:
        return len(self.features)


def prepare(bars: pd.DataFrame, settings: TrainSettings) -> Prepared:
    """Indicators for every bar, then only the rows with a label and enough history: the
    last `horizon` bars have no forward return yet, and the first bars miss more than
    `max_missing_share` of their indicators."""
    log.info("[TRAIN] Preparing features and labels...")
    bars = bars.sort_values("ts", ignore_index=True)
    features = compute_features(bars)
    log.info("[TRAIN] Raw features: %d, samples: %d", features.shape[1], len(features))
    close = bars["close"].to_numpy(dtype=float)
    returns = forward_returns(close, settings.horizon)
    next_returns = forward_returns(close, 1)
    fallback = fallback_frame(bars["close"])["signal"].to_numpy()
    missing_share = np.isnan(features.to_numpy(dtype=float)).mean(axis=1)
    keep = np.isfinite(returns) & (missing_share <= settings.max_missing_share)
    log.info("[TRAIN] Samples after dropna: %d (dropped %d)", int(keep.sum()), int((~keep).sum()))
    return Prepared(
        features=features.loc[keep].reset_index(drop=True),
        returns=returns[keep],
        next_returns=np.nan_to_num(next_returns[keep]),
        close=close[keep],
        ts=bars["ts"].to_numpy()[keep],
        raw_samples=len(bars),
        fallback_signals=fallback[keep],
    )


# ---------------------------------------------------------------- evaluation


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    labels = list(range(len(CLASSES)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    shares = np.bincount(y_true, minlength=len(CLASSES)) / max(len(y_true), 1)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro")),
        # Always predicting the commonest test class: what "no skill" scores.
        "majority_accuracy": float(shares.max()) if len(y_true) else 0.0,
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(CLASSES)
        },
    }


def backtest(signals: np.ndarray, next_returns: np.ndarray, cost_bps: float) -> dict:
    """Long-only, one bar at a time: BUY goes long, SELL goes flat, HOLD keeps the position;
    the position held after bar t earns bar t+1's log return, minus `cost_bps` per change."""
    wanted = np.where(signals == BUY, 1.0, np.where(signals == SELL, 0.0, np.nan))
    position = pd.Series(wanted).ffill().fillna(0.0).to_numpy()
    changes = np.abs(np.diff(np.concatenate([[0.0], position])))
    log_returns = position * next_returns - changes * cost_bps / 10_000
    return {
        "return": float(np.expm1(log_returns.sum())),
        "trades": int((changes > 0).sum()),
        "exposure": float(position.mean()) if len(position) else 0.0,
    }


@dataclass
class WalkForward:
    folds: list[Fold]
    sanitization: Sanitization
    selection: Selection
    y_true: np.ndarray
    y_pred: np.ndarray
    test_rows: np.ndarray
    metrics: dict


def walk_forward(prepared: Prepared, settings: TrainSettings) -> WalkForward:
    """Expanding-window folds with a purge gap of `horizon` bars. Sanitisation and feature
    selection use the first fold's training rows; thresholds are refitted per fold on its
    training rows only."""
    folds = walk_forward_folds(
        len(prepared), settings.folds, settings.test_fraction, gap=settings.horizon
    )
    first = folds[0]
    features = prepared.features
    selection_rows = features.iloc[: first.train_end]
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
    thresholds = fit_thresholds(
        prepared.returns[: first.train_end], settings.sell_quantile, settings.buy_quantile
    )
    y_selection = make_labels(prepared.returns[: first.train_end], thresholds)
    selection = select_features(
        selection_rows[sanitization.kept], y_selection, settings.model, gap=settings.horizon
    )
    log.info(
        "[TRAIN] Feature selection (%s): %d features in %.1f s; %s",
        selection.method,
        len(selection.features),
        selection.seconds,
        selection.reason,
    )
    chosen = selection.features
    y_true, y_pred, rows = [], [], []
    for fold in folds:
        train_returns = prepared.returns[: fold.train_end]
        fold_thresholds = fit_thresholds(
            train_returns, settings.sell_quantile, settings.buy_quantile
        )
        y_train = make_labels(train_returns, fold_thresholds)
        model = fit_classifier(features.iloc[: fold.train_end][chosen], y_train, settings.model)
        test = slice(fold.test_start, fold.test_end)
        probabilities = predict_proba(model, features.iloc[test][chosen])
        y_true.append(make_labels(prepared.returns[test], fold_thresholds))
        y_pred.append(probabilities.argmax(axis=1))
        rows.append(np.arange(fold.test_start, fold.test_end))
    truth, predicted, test_rows = (np.concatenate(a) for a in (y_true, y_pred, rows))
    metrics = classification_metrics(truth.astype(int), predicted.astype(int))
    cost = settings.trade_cost_bps
    next_returns = prepared.next_returns[test_rows]
    metrics["backtest"] = {
        "bars": len(test_rows),
        "model": backtest(predicted, next_returns, cost),
        "fallback": backtest(prepared.fallback_signals[test_rows], next_returns, cost),
        "buy_and_hold": {
            "return": float(np.expm1(next_returns.sum())),
            "trades": 1,
            "exposure": 1.0,
        },
        "cost_bps": cost,
    }
    metrics["folds"] = [f.as_dict() for f in folds]
    log.info(
        "[TRAIN] Walk-forward: %d folds, purge gap %d bars, %d test bars: accuracy %.3f "
        "(majority class %.3f), macro-F1 %.3f",
        len(folds),
        settings.horizon,
        len(test_rows),
        metrics["accuracy"],
        metrics["majority_accuracy"],
        metrics["macro_f1"],
    )
    bt = metrics["backtest"]
    log.info(
        "[TRAIN] Backtest on the test bars: model %+.2f%%, fallback %+.2f%%, buy and hold %+.2f%%",
        100 * bt["model"]["return"],
        100 * bt["fallback"]["return"],
        100 * bt["buy_and_hold"]["return"],
    )
    return WalkForward(folds, sanitization, selection, truth, predicted, test_rows, metrics)


# ---------------------------------------------------------------- the whole fit


@dataclass
class SignalFit:
    model: object
    features: list[str]
    thresholds: Thresholds
    class_distribution: dict[str, int]
    class_weights: dict[str, float]
    walk: WalkForward
    n_samples: int
    raw_features: int
    raw_samples: int
    trained_until: object
    input_example: list[dict]
    seconds: dict[str, float]

    def params(self, settings: TrainSettings) -> dict:
        return {
            "catboost": catboost_params(settings.model),
            "horizon_bars": settings.horizon,
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
    prepared = prepare(bars, settings)
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
    model = fit_classifier(prepared.features[chosen], labels, settings.model)
    finished = time.perf_counter()
    example = prepared.features[chosen].tail(3)
    return SignalFit(
        model=model,
        features=list(chosen),
        thresholds=thresholds,
        class_distribution=distribution,
        class_weights=class_weights(model),
        walk=walk,
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
    )


# ---------------------------------------------------------------- from the database


def train_signal_model(
    engine: Engine,
    config,
    symbol: str,
    *,
    alias: str | None = "prod",
    force: bool = False,
    on_started: Callable[[], None] | None = None,
    settings: TrainSettings | None = None,
) -> dict:
    """Train, register and (validated) point `alias` at a new version of signal-<SYMBOL>;
    refused below `signal.min_initial_train_samples` bars, and by the run while another
    holds the lock or a failure's cooldown lasts. `on_started` runs once the run is recorded."""
    from ..registry import register_model
    from ..runs import training_run
    from ..validation import promote_trained
    from .market import count_bars, load_bars, model_name, normalize_symbol
    from .run import ensure_tables

    symbol = normalize_symbol(symbol)
    ensure_tables(engine)
    name = model_name(symbol)
    settings = settings or TrainSettings.from_config(config)
    n_bars = count_bars(engine, symbol)
    if n_bars < settings.min_initial_train_samples:
        raise MlkitError(
            f"{symbol} has {n_bars} bars, fewer than signal.min_initial_train_samples "
            f"({settings.min_initial_train_samples}): no training attempted",
            hint=f"load more history with `mlkit ingest market --csv FILE --symbol {symbol}`",
        )
    cooldown = int(config.get("training.retry_cooldown_sec"))
    with training_run(engine, name, cooldown_seconds=cooldown, force=force) as run:
        if on_started is not None:
            on_started()
        bars = load_bars(engine, symbol)
        fit = fit_signal(bars, settings)
        run.finish(
            n_samples=fit.n_samples,
            n_features=len(fit.features),
            class_distribution=fit.class_distribution,
        )
        metrics = fit.walk.metrics | {"seconds": fit.seconds}
        mv = register_model(
            engine,
            config.artifacts_dir,
            name=name,
            family="signal",
            write_artifact=lambda path: fit.model.save_model(str(path), format="cbm"),
            filename=FILENAME,
            metrics=metrics,
            params=fit.params(settings) | {"symbol": symbol},
            features=fit.features,
            input_example=fit.input_example,
            dataset_ref=f"market_data:{symbol}:{n_bars} bars to "
            f"{pd.Timestamp(fit.trained_until).isoformat()}",
        )
        bt = metrics["backtest"]
        run.finish(
            version=mv.version,
            metrics={
                "accuracy": metrics["accuracy"],
                "macro_f1": metrics["macro_f1"],
                "majority_accuracy": metrics["majority_accuracy"],
                "backtest_model": bt["model"]["return"],
                "backtest_fallback": bt["fallback"]["return"],
                "backtest_buy_and_hold": bt["buy_and_hold"]["return"],
            },
        )
        log.info("[TRAIN] Registered %s in %.1f s", mv.ref, fit.seconds["total"])
        # Inside the run: a version failing its gate makes the run `rejected`.
        reason = f"trained on {n_bars} bars of {symbol}"
        promoted = promote_trained(engine, config, mv, alias, reason=reason) if alias else None
    return {
        "model": name,
        "symbol": symbol,
        "version": mv.version,
        "ref": mv.ref,
        "alias": promoted,
        "artifact": str(mv.artifact_path),
        "samples": fit.n_samples,
        "raw_features": fit.raw_features,
        "features": len(fit.features),
        "class_distribution": fit.class_distribution,
        "class_weights": fit.class_weights,
        "thresholds": fit.thresholds.as_dict(),
        "selection": fit.walk.selection.as_dict(),
        "sanitization": fit.walk.sanitization.as_dict(),
        "metrics": metrics,
    }
