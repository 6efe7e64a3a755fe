"""The signal family's contract (see `families.py`): `train` (the configured workflow: fit,
judge, register, promote), `baselines` (the references on the walk-forward folds) and
`validation_checks`.

A version is judged by the shared gate on its walk-forward test bars: it must beat the
strongest honest reference by a block-bootstrap margin above zero, and not lose to the
version serving now on the bars that version never trained on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ..errors import MlkitError
from .evaluation import GATE_METRIC, SCORES
from .labels import CLASSES
from .model import FILENAME

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ..gate import Verdict
    from .train import Prepared, SignalFit, TrainSettings, WalkForward

log = logging.getLogger("mlkit.train")


def baselines(walk: WalkForward) -> dict[str, np.ndarray]:
    """Each reference's predictions on the walk-forward test bars, fitted per fold on the
    fold's training rows (see `references.fold_references`)."""
    return walk.baselines


def judge(fit: SignalFit, settings: TrainSettings, prod=None) -> Verdict:
    """The gate on `GATE_METRIC` over the test bars, with blocks of one label horizon;
    `prod` is (ref, predictions, rows) on the rows the serving version may be judged on."""
    from .. import gate

    walk = fit.walk
    serving, rows = (None, None) if prod is None else (prod[:2], prod[2])
    return gate.judge(
        GATE_METRIC,
        SCORES[GATE_METRIC],
        walk.y_true,
        walk.y_pred,
        baselines(walk),
        prod=serving,
        prod_rows=rows,
        block=fit.horizon.bars,
        unit="bar",
    )


def prod_predictions(engine: Engine, config, name: str, bars, fit: SignalFit, horizon: int):
    """(ref, predictions, row mask) of the version serving now on the test bars it never
    trained on (those more than a horizon after its last training bar), or (None, why)."""
    import pandas as pd

    from ..registry import read_artifact, resolve
    from .model import model_from_bytes, predict_proba
    from .train import feature_frame

    try:
        mv = resolve(engine, f"{name}@prod")
    except MlkitError:
        return None, "no version serves yet"
    until = mv.params.get("trained_until")
    if until is None:
        return None, f"{mv.ref} does not record when its training ended"
    prepared: Prepared = fit.prepared
    ts = pd.to_datetime(prepared.ts[fit.walk.test_rows])
    # Its last labels reached `horizon` bars past its last training bar.
    after = np.flatnonzero(pd.to_datetime(prepared.ts) > pd.Timestamp(until))
    if len(after) <= horizon:
        return None, f"{mv.ref} trained on every test bar (until {until})"
    first_clean = pd.Timestamp(prepared.ts[after[horizon]])
    rows = np.asarray(ts >= first_clean)
    if rows.sum() < 2 * horizon:
        return None, f"only {int(rows.sum())} test bars come after {mv.ref}'s training"
    try:
        model = model_from_bytes(mv, read_artifact(mv, config.artifacts_dir))
        frame = feature_frame(bars, mv.params.get("feature_set"))
        wanted = prepared.bar_rows[fit.walk.test_rows[rows]]
        features = frame.iloc[wanted][list(mv.features)]
        predicted = predict_proba(model, features).argmax(axis=1)
    except (MlkitError, KeyError, ValueError) as exc:
        return None, f"{mv.ref} cannot score these bars ({exc})"
    return (mv.ref, predicted, rows), None


def train(
    engine: Engine,
    config,
    symbol: str,
    *,
    alias: str | None = "prod",
    force: bool = False,
    on_started: Callable[[], None] | None = None,
    settings: TrainSettings | None = None,
) -> dict:
    """Train, judge and register a new version of signal-<SYMBOL>, then promote it through
    the validation gates (prod moves only when the gate passed); refused below
    `signal.min_initial_train_samples` bars, and by the run while another holds the lock or
    a failure's cooldown lasts. `on_started` runs once the run is recorded."""
    from ..registry import register_model
    from ..runs import training_run
    from ..validation import promote_trained
    from . import train as fitting
    from .market import count_bars, ensure_tables, load_bars, model_name, normalize_symbol

    symbol = normalize_symbol(symbol)
    ensure_tables(engine)
    name = model_name(symbol)
    settings = settings or fitting.TrainSettings.from_config(config)
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
        fit = fitting.fit_signal(bars, settings)
        settings = fit.settings  # the horizon counted in bars
        run.finish(
            n_samples=fit.n_samples,
            n_features=len(fit.features),
            class_distribution=fit.class_distribution,
        )
        prod, prod_note = prod_predictions(engine, config, name, bars, fit, settings.horizon)
        verdict = judge(fit, settings, prod)
        log.info("[TRAIN] Gate: %s", verdict.summary())
        if prod_note:
            verdict.notes.append(f"not compared with the serving version: {prod_note}")
        metrics = fit.walk.metrics | {"seconds": fit.seconds, "gate": verdict.as_dict()}
        params = fit.params(settings) | {"symbol": symbol}
        mv = register_model(
            engine,
            config.artifacts_dir,
            name=name,
            family="signal",
            write_artifact=lambda path: fit.model.save_model(str(path), format="cbm"),
            filename=FILENAME,
            metrics=metrics,
            params=params,
            features=fit.features,
            input_example=fit.input_example,
            dataset_ref=f"market_data:{symbol}:{n_bars} bars to {params['trained_until']}",
        )
        run.finish(version=mv.version, metrics=_run_metrics(metrics, verdict))
        log.info("[TRAIN] Registered %s in %.1f s", mv.ref, fit.seconds["total"])
        # Inside the run: a version failing its gate makes the run `rejected`.
        reason = f"trained on {n_bars} bars of {symbol}"
        promoted = promote_trained(engine, config, mv, alias, reason=reason) if alias else None
    return _summary(fit, mv, symbol, promoted, metrics)


def _run_metrics(metrics: dict, verdict: Verdict) -> dict:
    bt = metrics["backtest"]
    return {
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "majority_accuracy": metrics["majority_accuracy"],
        "best_baseline": verdict.best.reference if verdict.best else None,
        "gate_passed": verdict.passed,
        "backtest_model": bt["model"]["return"],
        "backtest_fallback": bt["fallback"]["return"],
        "backtest_buy_and_hold": bt["buy_and_hold"]["return"],
    }


def _summary(fit: SignalFit, mv, symbol: str, promoted, metrics: dict) -> dict:
    return {
        "model": mv.name,
        "symbol": symbol,
        "version": mv.version,
        "ref": mv.ref,
        "alias": promoted,
        "artifact": str(mv.artifact_path),
        "samples": fit.n_samples,
        "horizon": fit.horizon.as_dict(),
        "raw_features": fit.raw_features,
        "features": len(fit.features),
        "class_distribution": fit.class_distribution,
        "class_weights": fit.class_weights,
        "thresholds": fit.thresholds.as_dict(),
        "selection": fit.walk.selection.as_dict(),
        "sanitization": fit.walk.sanitization.as_dict(),
        "gate": metrics["gate"],
        "metrics": metrics,
    }


def validation_checks(mv, artifact: bytes, config) -> list:
    """Checks of a registered signal version once its sha256 matched: it loads, it uses the
    features it lists, it gives probabilities on its stored example (the core adds the gate)."""
    import pandas as pd

    from ..validation import Check
    from .model import model_from_bytes, predict_proba

    try:
        model = model_from_bytes(mv, artifact)
    except Exception as exc:  # any failure to load is a failed check, not a crash
        return [Check("loads", False, f"{type(exc).__name__}: {exc}")]
    checks = [Check("loads", True, "CatBoost model loaded")]
    names = list(model.feature_names_ or [])
    same = bool(mv.features) and names == list(mv.features)
    checks.append(
        Check(
            "features",
            same,
            f"{len(names)} features as registered"
            if same
            else f"model uses {names[:5]}..., registry lists {list(mv.features)[:5]}...",
        )
    )
    try:
        example = pd.DataFrame(mv.input_example, columns=list(mv.features)).astype(float)
        probabilities = predict_proba(model, example)
        sane = len(example) > 0 and bool(
            np.all((probabilities >= 0) & (probabilities <= 1))
            and np.allclose(probabilities.sum(axis=1), 1.0)
        )
        detail = (
            f"{len(example)} example rows give {'/'.join(CLASSES)} probabilities"
            if sane
            else f"bad probabilities on the input example: {probabilities}"
        )
        checks.append(Check("predicts", sane, detail))
    except Exception as exc:
        checks.append(Check("predicts", False, f"{type(exc).__name__}: {exc}"))
    return checks
