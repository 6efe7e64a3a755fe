"""`mlkit signal run` and `mlkit signal status`: a signal for a symbol's latest bar from the model
(trained first when possible), else from the fallback, which executes only if
`signal.allow_fallback_execution`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..clock import utcnow
from ..errors import MlkitError
from ..families import SERVING
from ..formats import json_safe
from ..inputs import parse_duration
from ..registry import ModelVersion, resolve
from ..schema import signal_state, signals, training_runs
from .fallback import MIN_BARS, latest_fallback
from .indicators import PREDICTION_LOOKBACK
from .labels import CLASSES
from .market import (
    count_bars,
    ensure_tables,
    load_bars,
    model_name,
    normalize_symbol,
    symbols_overview,
    upsert_statement,
)

log = logging.getLogger("mlkit.signal")
train_log = logging.getLogger("mlkit.train")

WARN_EVERY = 10
HORIZON_SAMPLE_BARS = 2_000  # the newest bars the status counts a configured horizon on


def serving_version(engine: Engine, symbol: str) -> ModelVersion | None:
    try:
        return resolve(engine, f"{model_name(symbol)}@{SERVING}")
    except MlkitError:
        return None


# ---------------------------------------------------------------- why there is no model


def _last_runs(engine: Engine, name: str) -> tuple:
    """The latest run and the latest successful run of a model (either may be None)."""
    with engine.connect() as conn:
        last = conn.execute(
            sa.select(training_runs)
            .where(training_runs.c.model_name == name)
            .order_by(training_runs.c.run_id.desc())
            .limit(1)
        ).first()
        ok = conn.execute(
            sa.select(training_runs)
            .where(training_runs.c.model_name == name, training_runs.c.status == "ok")
            .order_by(training_runs.c.run_id.desc())
            .limit(1)
        ).first()
    return last, ok


def _cooldown_until(last_run) -> datetime | None:
    if (
        last_run is not None
        and last_run.status == "failed"
        and last_run.next_retry_at is not None
        and last_run.next_retry_at > utcnow()
    ):
        return last_run.next_retry_at
    return None


def _gate_wait_until(config, last_run) -> datetime | None:
    """Until when a version its gate kept from serving holds off the next automatic
    training: `signal.retrain_after_rejection` (an hourly run would otherwise retrain every
    hour on nearly the same bars, to the same verdict)."""
    if last_run is None or last_run.status != "rejected" or last_run.finished_at is None:
        return None
    until = last_run.finished_at + retrain_after_rejection(config)
    return until if until > utcnow() else None


def retrain_after_rejection(config) -> timedelta:
    key = "signal.retrain_after_rejection"
    text = str(config.get(key))
    hold = parse_duration(text, key)
    if hold is None:
        raise MlkitError(f"{key} {text!r} is not a duration", hint="use 30m, 6h or 1d")
    return hold


def untrained_reason(config, n_bars: int, last_run) -> tuple[str, str]:
    """(code, sentence) saying why a symbol has no serving model; the code is one of
    insufficient_samples, training_cooldown, gate_rejected, training_failed, never_trained."""
    minimum = int(config.get("signal.min_initial_train_samples"))
    until = _cooldown_until(last_run)
    if until is not None:
        wait = int((until - utcnow()).total_seconds()) + 1
        return (
            "training_cooldown",
            f"training run {last_run.run_id} failed ({last_run.last_error}); next retry at "
            f"{until:%Y-%m-%d %H:%M:%S} UTC (in {wait} s)",
        )
    if n_bars < minimum:
        return (
            "insufficient_samples",
            f"{n_bars} bars < signal.min_initial_train_samples {minimum}: no training attempted",
        )
    held = _gate_wait_until(config, last_run)
    if held is not None:
        return (
            "gate_rejected",
            f"training run {last_run.run_id}'s version stays candidate, kept from serving by "
            f"its promotion gate ({last_run.last_error}); next training after "
            f"{held:%Y-%m-%d %H:%M:%S} UTC",
        )
    if last_run is not None and last_run.status == "failed":
        return (
            "training_failed",
            f"training run {last_run.run_id} failed ({last_run.last_error}); the next run retries",
        )
    if last_run is not None and last_run.status == "rejected":
        return (
            "gate_rejected",
            f"training run {last_run.run_id}'s version stays candidate ({last_run.last_error}); "
            "the next run trains again",
        )
    return "never_trained", "no model yet; the next `mlkit signal run` trains one"


# ---------------------------------------------------------------- signal run


def _initial_training(engine: Engine, config, symbol: str, n_bars: int) -> dict:
    """Train when allowed; never raises for a training problem (the fallback serves). A
    version its gate keeps from prod stays candidate and serves nothing."""
    from ..validation import CandidateRejected
    from .family import train

    last_run, _ = _last_runs(engine, model_name(symbol))
    code, why = untrained_reason(config, n_bars, last_run)
    if code in ("training_cooldown", "insufficient_samples") or (
        code == "gate_rejected" and _gate_wait_until(config, last_run) is not None
    ):
        train_log.info("[TRAIN] No initial training for %s: %s", symbol, why)
        return {"attempted": False, "outcome": "skipped", "reason": code, "detail": why}
    train_log.info("[TRAIN] No model for %s yet: initial training on %d bars", symbol, n_bars)
    started = []
    try:
        trained = train(engine, config, symbol, alias=SERVING, on_started=lambda: started.append(1))
    except CandidateRejected as exc:
        train_log.info("[TRAIN] Initial model for %s stays candidate: %s", symbol, exc.message)
        return {
            "attempted": True,
            "outcome": "candidate",
            "reason": "gate_rejected",
            "detail": exc.message,
        }
    except Exception as exc:  # the run recorded it; a trading loop must go on
        message = exc.message if isinstance(exc, MlkitError) else f"{type(exc).__name__}: {exc}"
        if not started:  # refused before it began: another run holds the lock
            train_log.info("[TRAIN] Initial training for %s not started: %s", symbol, message)
            return {
                "attempted": False,
                "outcome": "skipped",
                "reason": "training_running",
                "detail": message,
            }
        last_run, _ = _last_runs(engine, model_name(symbol))
        retry = last_run.next_retry_at if last_run is not None else None
        train_log.warning(
            "[TRAIN] Initial training for %s failed: %s; next retry at %s",
            symbol,
            message,
            f"{retry:%Y-%m-%d %H:%M:%S} UTC" if retry else "the next run",
        )
        return {
            "attempted": True,
            "outcome": "failed",
            "reason": "training_failed",
            "detail": message,
            "next_retry_at": retry,
        }
    return {
        "attempted": True,
        "outcome": "trained",
        "version": trained["version"],
        "ref": trained["ref"],
        "metrics": {k: trained["metrics"][k] for k in ("accuracy", "macro_f1")},
    }


def _model_signal(mv: ModelVersion, bars, artifacts_dir: Path) -> dict:
    from .model import load_signal_model, predict_proba
    from .train import feature_frame

    model = load_signal_model(mv, artifacts_dir)
    features = feature_frame(bars, mv.params.get("feature_set"))
    missing = [name for name in mv.features if name not in features.columns]
    if missing:
        raise MlkitError(
            f"{mv.ref} expects features the current code does not compute: {missing[:5]}",
            hint=f"retrain: mlkit train signal --symbol {mv.params.get('symbol', '')}",
        )
    probabilities = predict_proba(model, features.iloc[[-1]][list(mv.features)])[0]
    best = int(probabilities.argmax())
    return {
        "signal": CLASSES[best],
        "confidence": round(100.0 * float(probabilities[best]), 2),
        "probabilities": {
            name: round(float(p), 4) for name, p in zip(CLASSES, probabilities, strict=True)
        },
    }


def _count_untrained(conn: sa.Connection, symbol: str) -> int:
    """One more fallback signal for the symbol; the new count (atomic across processes)."""
    now = utcnow()
    stmt = upsert_statement(
        conn,
        signal_state,
        ["symbol"],
        {
            "untrained_predictions": lambda _: signal_state.c.untrained_predictions + 1,
            "updated_at": lambda proposed: proposed.updated_at,
        },
    )
    conn.execute(stmt, {"symbol": symbol, "untrained_predictions": 1, "updated_at": now})
    return int(
        conn.execute(
            sa.select(signal_state.c.untrained_predictions).where(signal_state.c.symbol == symbol)
        ).scalar_one()
    )


def run_signal(engine: Engine, config, symbol: str, *, train: bool = True) -> dict:
    """The signal of the latest bar of `symbol`, stored in `signals` (a re-run for the same
    bar replaces its row)."""
    symbol = normalize_symbol(symbol)
    ensure_tables(engine)
    n_bars = count_bars(engine, symbol)
    if n_bars == 0:
        raise MlkitError(
            f"no market data for {symbol}",
            hint=f"load bars with `mlkit ingest market --csv FILE --symbol {symbol}`",
        )
    mv = serving_version(engine, symbol)
    training: dict = {"attempted": False, "outcome": "not_needed"}
    if mv is None and train:
        training = _initial_training(engine, config, symbol, n_bars)
        if training["outcome"] == "trained":
            mv = serving_version(engine, symbol)
    bars = load_bars(engine, symbol, last=PREDICTION_LOOKBACK)
    last_bar = bars.iloc[-1]
    allow_fallback = bool(config.get("signal.allow_fallback_execution"))
    document: dict = {"symbol": symbol, "ts": last_bar["ts"].to_pydatetime()}
    document["close"] = float(last_bar["close"])
    if mv is not None:
        document |= _model_signal(mv, bars, config.artifacts_dir)
        document |= {"fallback": False, "model_version": mv.ref}
        document["horizon"] = _serving_horizon(mv, bars["ts"])
        reason = None
    else:
        fallback = latest_fallback(bars["close"])
        if fallback is None:
            raise MlkitError(
                f"{symbol} has {n_bars} bars; the fallback signal needs at least {MIN_BARS} "
                f"(SMA {MIN_BARS}) and no model is trained",
                hint=f"load more history with `mlkit ingest market --csv FILE --symbol {symbol}`",
            )
        last_run, _ = _last_runs(engine, model_name(symbol))
        reason = untrained_reason(config, n_bars, last_run)
        document |= fallback | {
            "probabilities": None,
            "fallback": True,
            "fallback_reason": {"code": reason[0], "detail": reason[1]},
            "model_version": None,
        }
    document["allow_fallback_execution"] = allow_fallback
    document["execution_allowed"] = (not document["fallback"]) or allow_fallback
    with engine.begin() as conn:
        conn.execute(
            signals.delete().where(signals.c.symbol == symbol, signals.c.ts == document["ts"])
        )
        conn.execute(
            signals.insert().values(
                symbol=symbol,
                ts=document["ts"],
                signal=document["signal"],
                confidence=document["confidence"],
                fallback=document["fallback"],
                model_version=document["model_version"],
                created_at=utcnow(),
            )
        )
        warnings = _count_untrained(conn, symbol) if document["fallback"] else None
    if warnings is not None and warnings % WARN_EVERY == 1:
        log.warning(
            "Model is not trained for %s (%s): fallback signal %s at %.1f%% confidence "
            "(untrained prediction %d; this warning is logged every %dth time)",
            symbol,
            reason[0],
            document["signal"],
            document["confidence"],
            warnings,
            WARN_EVERY,
        )
    document["prediction_warning_count"] = (
        warnings if warnings is not None else _warning_count(engine, symbol)
    )
    document["training"] = training
    return json_safe(document)


def _warning_count(engine: Engine, symbol: str) -> int:
    with engine.connect() as conn:
        value = conn.execute(
            sa.select(signal_state.c.untrained_predictions).where(signal_state.c.symbol == symbol)
        ).scalar()
    return int(value or 0)


def _serving_horizon(mv: ModelVersion, ts) -> dict | None:
    """The label horizon the serving version learnt, with a warning when the bars it now
    signals are spaced otherwise than those it trained on (its horizon means another time)."""
    from .horizon import bar_interval, duration_text, recorded_horizon

    recorded = recorded_horizon(mv.params)
    if recorded is None:
        return None
    document = recorded.as_dict()
    trained, now = recorded.interval_seconds, bar_interval(ts)
    if trained and now and abs(now / trained - 1) > 0.1:
        document["warning"] = (
            f"{mv.ref} trained on bars every {duration_text(trained)}, the latest bars are "
            f"{duration_text(now)} apart: retrain on bars of one interval"
        )
        log.warning("%s", document["warning"])
    return document


# ---------------------------------------------------------------- status


def _status_horizon(engine: Engine, config, symbol: str, mv, n_bars: int) -> dict | None:
    """The serving version's label horizon, else the one the next training would count on
    the newest bars; in bars and as a duration."""
    from dataclasses import replace

    from .horizon import bar_interval, recorded_horizon
    from .train import TrainSettings

    recorded = recorded_horizon(mv.params) if mv is not None else None
    if recorded is not None and recorded.interval_seconds is not None:
        return recorded.as_dict() | {"of": mv.ref}
    if n_bars < 2:
        return None if recorded is None else recorded.as_dict() | {"of": mv.ref}
    ts = load_bars(engine, symbol, last=HORIZON_SAMPLE_BARS)["ts"]
    if recorded is not None:  # a version from before the interval was recorded
        return replace(recorded, interval_seconds=bar_interval(ts)).as_dict() | {"of": mv.ref}
    try:
        horizon = TrainSettings.from_config(config).horizon_on(ts)
    except MlkitError as exc:
        return {"error": exc.message}
    return horizon.as_dict() | {"of": "config"}


def signal_symbols(engine: Engine) -> list[str]:
    """Symbols with bars, a model or a training run."""
    return sorted(set(symbols_overview(engine)) | set(_model_symbols(engine)))


def _model_symbols(engine: Engine) -> list[str]:
    """Symbols whose signal model has a version or a training run."""
    from ..status import model_symbols

    return model_symbols(engine)


def symbol_status(engine: Engine, config, symbol: str, overview: dict | None = None) -> dict:
    symbol = normalize_symbol(symbol)
    name = model_name(symbol)
    overview = overview if overview is not None else symbols_overview(engine)
    bars = overview.get(symbol, {"bars": 0, "first_ts": None, "last_ts": None})
    mv = serving_version(engine, symbol)
    last_run, last_ok = _last_runs(engine, name)
    with engine.connect() as conn:
        last_signal = conn.execute(
            sa.select(signals)
            .where(signals.c.symbol == symbol)
            .order_by(signals.c.ts.desc(), signals.c.id.desc())
            .limit(1)
        ).first()
        warnings = conn.execute(
            sa.select(signal_state.c.untrained_predictions).where(signal_state.c.symbol == symbol)
        ).scalar()
    until = _cooldown_until(last_run)
    params = mv.params if mv is not None else {}
    reason = None if mv is not None else untrained_reason(config, bars["bars"], last_run)
    trained_run = last_ok if last_ok is not None else last_run
    return json_safe(
        {
            "symbol": symbol,
            "model": name,
            "is_trained": mv is not None,
            "fallback_active": mv is None,
            "untrained_reason": None
            if reason is None
            else {"code": reason[0], "detail": reason[1]},
            "model_version": mv.ref if mv is not None else None,
            "bars": bars["bars"],
            "first_bar": bars["first_ts"],
            "last_bar": bars["last_ts"],
            "last_training_time": (last_run.finished_at or last_run.started_at)
            if last_run is not None
            else None,
            "last_training_status": last_run.status if last_run is not None else None,
            "samples_in_last_train": int(trained_run.n_samples or 0)
            if trained_run is not None
            else 0,
            "class_distribution": (trained_run.class_distribution or {})
            if trained_run is not None
            else {},
            "class_weights": params.get("class_weights", {}),
            "training_cooldown_active": until is not None,
            "next_retry_at": until,
            "last_training_error": last_run.last_error
            if last_run is not None and last_run.status == "failed"
            else None,
            "horizon": _status_horizon(engine, config, symbol, mv, bars["bars"]),
            "sanitization": params.get("sanitization"),
            "selection": params.get("selection"),
            "metrics": {
                k: v
                for k, v in (mv.metrics if mv is not None else {}).items()
                if k in ("accuracy", "macro_f1", "majority_accuracy", "baselines", "backtest")
            },
            "prediction_warning_count": int(warnings or 0),
            "allow_fallback_execution": bool(config.get("signal.allow_fallback_execution")),
            "retry_cooldown_sec": int(config.get("training.retry_cooldown_sec")),
            "last_signal": None
            if last_signal is None
            else {
                "ts": last_signal.ts,
                "signal": last_signal.signal,
                "confidence": last_signal.confidence,
                "fallback": bool(last_signal.fallback),
                "model_version": last_signal.model_version,
            },
        }
    )


def signal_status(engine: Engine, config, symbol: str | None = None) -> dict[str, dict]:
    """Per symbol (one, or every symbol with bars or a model): the status fields."""
    ensure_tables(engine)
    overview = symbols_overview(engine)
    symbols = [normalize_symbol(symbol)] if symbol else signal_symbols(engine)
    return {s: symbol_status(engine, config, s, overview) for s in symbols}
