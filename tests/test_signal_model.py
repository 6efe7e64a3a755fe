"""The signal training pipeline on bars in memory: it finds structure where there is some,
stays at chance when the labels are shuffled (a leakage check) and then fails its gate,
its references never read test labels, it passes on the demo market, it selects features
by RFE or by importance per the guards (wide set), and logs the [TRAIN] lines users know."""

from __future__ import annotations

import logging
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from mlkit.toolkit import gate
from mlkit.toolkit.demo.params import DemoParams
from mlkit.toolkit.signal.evaluation import GATE_METRIC, SCORES
from mlkit.toolkit.signal.family import judge
from mlkit.toolkit.signal.labels import CLASSES
from mlkit.toolkit.signal.model import ModelSettings
from mlkit.toolkit.signal.references import REFERENCES
from mlkit.toolkit.signal.train import TrainSettings, fit_signal, prepare, walk_forward

FAST = TrainSettings.default(
    horizon=12,
    folds=3,
    test_fraction=0.3,
    feature_set="wide",
    model=ModelSettings.default(
        iterations=60,
        learning_rate=0.15,
        depth=4,
        selection_iterations=20,
        rfe_features=20,
        rfe_steps=2,
    ),
)


def cyclic_bars(n: int, period: int = 120, seed: int = 0) -> pd.DataFrame:
    """Prices riding a slow cycle plus noise: the next `horizon` bars' move depends on the
    phase, which past bars reveal."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    log_close = np.log(100.0) + 0.06 * np.sin(2 * np.pi * t / period) + rng.normal(0, 0.004, n)
    close = np.exp(log_close)
    open_ = np.r_[close[0], close[:-1]]
    spread = np.exp(np.abs(rng.normal(0, 0.002, (2, n))))
    return pd.DataFrame(
        {
            "ts": pd.date_range("2025-01-01", periods=n, freq="h"),
            "open": open_,
            "high": np.maximum(open_, close) * spread[0],
            "low": np.minimum(open_, close) / spread[1],
            "close": close,
            "volume": rng.lognormal(5, 0.3, n),
        }
    )


@pytest.fixture(scope="module")
def prepared():
    return prepare(cyclic_bars(3000), FAST)


def expected_chance(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Accuracy of predictions independent of the truth, with these class frequencies."""
    k = len(CLASSES)
    true_share = np.bincount(y_true, minlength=k) / len(y_true)
    pred_share = np.bincount(y_pred, minlength=k) / len(y_pred)
    return float(true_share @ pred_share)


def test_walk_forward_learns_real_structure(prepared):
    result = walk_forward(prepared, FAST)
    assert result.metrics["accuracy"] > 0.6
    assert result.metrics["accuracy"] > expected_chance(result.y_true, result.y_pred) + 0.2
    assert result.metrics["macro_f1"] > 0.55


def test_shuffled_labels_leave_walk_forward_accuracy_at_chance(prepared):
    """If any test label reached training (overlapping folds, thresholds or selection
    fitted on test rows), CatBoost would recall shuffled labels above chance."""
    rng = np.random.default_rng(7)
    shuffled = replace(prepared, returns=rng.permutation(prepared.returns))
    result = walk_forward(shuffled, FAST)
    chance = expected_chance(result.y_true, result.y_pred)
    assert len(result.y_true) == round(len(prepared) * FAST.test_fraction)
    assert abs(result.metrics["accuracy"] - chance) < 0.06, (result.metrics["accuracy"], chance)
    assert abs(result.metrics["accuracy"] - 1 / 3) < 0.08


def test_rfe_with_enough_samples_importance_below_the_guard(prepared):
    rfe = walk_forward(prepared, FAST)
    assert rfe.selection.method == "rfe"
    assert len(rfe.selection.features) == FAST.model.rfe_features
    assert set(rfe.selection.features) <= set(rfe.sanitization.kept)
    guarded = replace(
        FAST, model=replace(FAST.model, min_rfe_samples=10_000, max_baseline_features=30)
    )
    baseline = walk_forward(prepared, guarded)
    assert baseline.selection.method == "importance"
    assert len(baseline.selection.features) == 30
    assert "min_rfe_samples 10000" in baseline.selection.reason


def test_fit_logs_train_lines_and_reports_what_status_shows(caplog):
    bars = cyclic_bars(700, seed=3)
    with caplog.at_level(logging.INFO, logger="mlkit.train"):
        fit = fit_signal(bars, FAST)
    lines = [r.getMessage() for r in caplog.records if r.name == "mlkit.train"]
    assert lines[0] == "[TRAIN] Preparing features and labels..."
    assert re.fullmatch(rf"\[TRAIN\] Raw features: {fit.raw_features}, samples: 700", lines[1])
    dropped = 700 - fit.n_samples
    assert f"[TRAIN] Samples after dropna: {fit.n_samples} (dropped {dropped})" in lines
    distribution = ", ".join(f"{k}: {v}" for k, v in fit.class_distribution.items())
    assert f"[TRAIN] Class distribution - {distribution}" in lines
    assert re.fullmatch(r"SELL: \d+, HOLD: \d+, BUY: \d+", distribution)
    assert f"[TRAIN] Final dataset: {fit.n_samples} samples with {len(fit.features)} features" in (
        lines
    )
    assert sum(fit.class_distribution.values()) == fit.n_samples
    assert set(fit.class_weights) == set(CLASSES)
    assert all(w >= 1.0 for w in fit.class_weights.values())  # Balanced: up-weights rarer
    assert fit.walk.sanitization.as_dict()["dropped"]["constant"] == ["minute_of_hour"]
    params = fit.params(FAST)
    assert "subsample" in params["catboost"] and params["catboost"]["bootstrap_type"] == "Bernoulli"
    assert params["thresholds"]["sell"] < 0 < params["thresholds"]["buy"]
    backtest = fit.walk.metrics["backtest"]
    assert set(backtest) >= {"model", "fallback", "buy_and_hold"}
    assert fit.walk.metrics["per_class"]["BUY"]["support"] > 0


COMPACT = replace(FAST, feature_set="compact", folds=4, test_fraction=0.5)


@pytest.fixture(scope="module")
def compact_prepared():
    """Rows prepared with the compact set, as `signal.feature_set: compact` trains."""
    return prepare(cyclic_bars(3000), COMPACT)


def test_references_never_read_the_test_labels(compact_prepared):
    """Changing the forward returns (the labels) of the last fold's test bars leaves every
    prediction unchanged: the model's and each reference's."""
    prepared = compact_prepared
    before = walk_forward(prepared, COMPACT)
    last = before.folds[-1]
    returns = prepared.returns.copy()
    rng = np.random.default_rng(3)
    returns[last.test_start : last.test_end] = rng.normal(0, 1, last.test_end - last.test_start)
    after = walk_forward(replace(prepared, returns=returns), COMPACT)
    assert set(before.predictions) == {"model", *REFERENCES}
    for name, predicted in before.predictions.items():
        np.testing.assert_array_equal(predicted, after.predictions[name], err_msg=name)
    assert not np.array_equal(before.y_true, after.y_true)  # the labels did change
    metrics = before.metrics
    assert set(metrics["baselines"]) == set(REFERENCES)
    assert metrics["majority_accuracy"] == metrics["references"]["training_majority"]["accuracy"]
    low, high = metrics["references"]["model"]["accuracy_interval"]
    assert low <= metrics["accuracy"] <= high


def test_shuffled_labels_fail_the_gate(compact_prepared):
    prepared = compact_prepared
    rng = np.random.default_rng(11)
    shuffled = replace(prepared, returns=rng.permutation(prepared.returns))
    walk = walk_forward(shuffled, COMPACT)
    verdict = gate.judge(
        GATE_METRIC,
        SCORES[GATE_METRIC],
        walk.y_true,
        walk.y_pred,
        walk.baselines,
        block=COMPACT.horizon,
    )
    assert not verdict.passed and "not above the" in verdict.reasons[0]


@pytest.mark.slow
def test_on_the_demo_market_the_model_passes_and_beats_the_training_majority():
    from datetime import datetime

    from mlkit.toolkit.demo import market

    params = DemoParams(seed=0, orders=1, days=365, start=datetime(2025, 1, 1), world_orders=1)
    frame = market.generate(params, None)["market_data"]
    bars = frame[frame["symbol"] == "ETHUSDT"].drop(columns="symbol").reset_index(drop=True)
    settings = TrainSettings.default()
    fit = fit_signal(bars, settings)
    verdict = judge(fit, settings)
    assert verdict.passed, verdict.summary()
    metrics = fit.walk.metrics
    assert metrics["accuracy"] > metrics["majority_accuracy"] + 0.05
    assert metrics["macro_f1"] > max(metrics["baselines"].values())
    assert fit.params(settings)["trees"] <= settings.model.iterations


def test_the_logistic_part_travels_inside_the_cbm_artifact(prepared, tmp_path):
    from mlkit.toolkit.signal.labels import fit_thresholds, make_labels
    from mlkit.toolkit.signal.model import LINEAR_KEY, fit_blend, model_from_bytes, predict_proba

    X = prepared.compact.iloc[:1500]
    y = make_labels(prepared.returns[:1500], fit_thresholds(prepared.returns[:1500], 0.33, 0.67))
    model = fit_blend(X, y.astype(int), FAST.model, gap=FAST.horizon)
    blended = predict_proba(model, X.tail(50))
    trees_only = model.predict_proba(X.tail(50))
    assert np.allclose(blended.sum(axis=1), 1.0)
    assert not np.allclose(blended, trees_only)  # the logistic part weighs in
    model.save_model(str(tmp_path / "model.cbm"), format="cbm")
    again = model_from_bytes(None, (tmp_path / "model.cbm").read_bytes())
    assert LINEAR_KEY in again.get_metadata()
    np.testing.assert_allclose(predict_proba(again, X.tail(50)), blended)
