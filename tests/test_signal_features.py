"""Signal building blocks without a database: indicators from past bars only, sanitisation,
labels and walk-forward folds, CatBoost parameters, the fallback rule and the backtest."""

from __future__ import annotations

import itertools
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from mlkit.toolkit.demo import market
from mlkit.toolkit.demo.params import DemoParams
from mlkit.toolkit.errors import MlkitError
from mlkit.toolkit.signal.evaluation import backtest
from mlkit.toolkit.signal.fallback import fallback_frame, latest_fallback
from mlkit.toolkit.signal.indicators import compute_features, rsi, sanitize
from mlkit.toolkit.signal.labels import (
    BUY,
    HOLD,
    SELL,
    UNLABELLED,
    Thresholds,
    fit_thresholds,
    forward_returns,
    make_labels,
    walk_forward_folds,
)
from mlkit.toolkit.signal.model import ModelSettings, catboost_params, fit_classifier


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    params = DemoParams(seed=5, orders=1000, days=40, start=datetime(2026, 1, 1), world_orders=1000)
    frame = market.generate(params, None)["market_data"]
    return frame[frame["symbol"] == "ETHUSDT"].drop(columns="symbol").reset_index(drop=True)


@pytest.fixture(scope="module")
def features(bars) -> pd.DataFrame:
    return compute_features(bars)


def test_the_indicator_set_is_wide_and_finite(bars, features):
    assert features.shape == (len(bars), features.shape[1])
    assert features.shape[1] >= 400
    assert not np.isinf(features.to_numpy()).any()
    # After the longest window every column but the always-undefined ones has a value.
    late = features.iloc[400:]
    assert late.columns[late.isna().any()].tolist() == ["kurtosis_3"]
    for family in (
        "sma_ratio_",
        "ema_ratio_",
        "rsi_",
        "macd_",
        "bollinger_pctb_",
        "atr_",
        "return_",
        "volatility_",
        "volume_z_",
    ):
        assert any(c.startswith(family) for c in features.columns), family


def test_a_bar_never_sees_later_bars(bars, features):
    """Changing or dropping every bar after t leaves the features of bars <= t unchanged."""
    cut = 600
    changed = bars.copy()
    rng = np.random.default_rng(1)
    later = slice(cut + 1, None)
    factor = np.exp(rng.normal(0, 0.05, len(bars) - cut - 1))
    for column in ("open", "high", "low", "close"):
        changed.loc[later, column] = changed.loc[later, column].to_numpy() * factor
    changed.loc[later, "volume"] = changed.loc[later, "volume"].to_numpy() * 3.0
    rerun = compute_features(changed)
    np.testing.assert_array_equal(
        rerun.iloc[: cut + 1].to_numpy(), features.iloc[: cut + 1].to_numpy()
    )
    assert not np.allclose(
        rerun.iloc[cut + 1 :].to_numpy(), features.iloc[cut + 1 :].to_numpy(), equal_nan=True
    )
    truncated = compute_features(bars.iloc[: cut + 1])
    np.testing.assert_array_equal(truncated.to_numpy(), features.iloc[: cut + 1].to_numpy())


def test_rsi_matches_its_definition():
    close = pd.Series([10.0, 11, 12, 11, 13, 12, 12, 14, 15, 14, 13, 15, 16, 17, 16, 18, 17])
    window = 5
    change = close.diff()
    gain = change.clip(lower=0).ewm(alpha=1 / window, adjust=False, min_periods=window).mean()
    loss = (-change).clip(lower=0).ewm(alpha=1 / window, adjust=False, min_periods=window).mean()
    expected = 100 - 100 / (1 + gain / loss)
    np.testing.assert_allclose(rsi(close, window), expected, equal_nan=True)
    assert rsi(pd.Series([5.0] * 30), 14).iloc[-1] == 50.0  # flat: neither strong nor weak


def test_sanitisation_drops_constant_infinite_and_mostly_missing_columns():
    n = 100
    frame = pd.DataFrame(
        {
            "good": np.arange(n, dtype=float),
            "constant": np.full(n, 3.0),
            "infinite": np.r_[np.ones(n - 1), np.inf],
            "mostly_missing": np.r_[np.full(60, np.nan), np.arange(40.0)],
            "some_missing": np.r_[np.full(40, np.nan), np.arange(60.0)],
            "all_missing": np.full(n, np.nan),
        }
    )
    report = sanitize(frame, max_missing_share=0.5)
    assert report.kept == ["good", "some_missing"]
    assert report.dropped == {
        "infinite": ["infinite"],
        "mostly_missing": ["mostly_missing", "all_missing"],
        "constant": ["constant"],
    }
    assert report.as_dict()["initial_features"] == 6
    assert report.as_dict()["final_features"] == 2
    assert report.as_dict()["dropped_count"] == 4


def test_labels_come_from_forward_returns_and_training_thresholds():
    close = np.array([100.0, 101, 99, 102, 102, 98])
    returns = forward_returns(close, 2)
    np.testing.assert_allclose(returns[:4], np.log(close[2:] / close[:4]))
    assert np.isnan(returns[4:]).all()
    labels = make_labels(returns, Thresholds(sell=-0.005, buy=0.005))
    assert labels.tolist() == [SELL, BUY, BUY, SELL, UNLABELLED, UNLABELLED]
    train = np.array([-0.03, -0.01, 0.0, 0.01, 0.03, np.nan])
    thresholds = fit_thresholds(train, 0.25, 0.75)
    assert (thresholds.sell, thresholds.buy) == (-0.01, 0.01)
    assert make_labels(np.array([-0.01, 0.0, 0.0101]), thresholds).tolist() == [HOLD, HOLD, BUY]
    with pytest.raises(MlkitError, match="sell_quantile < buy_quantile"):
        fit_thresholds(train, 0.7, 0.3)


def test_walk_forward_folds_purge_a_horizon_before_each_test_block():
    horizon = 24
    folds = walk_forward_folds(1000, 3, 0.3, horizon)
    assert [f.test_start for f in folds] == [700, 800, 900]
    assert folds[-1].test_end == 1000
    for before, after in itertools.pairwise(folds):
        assert before.test_end == after.test_start  # test blocks tile the last 30 %
    for fold in folds:
        assert fold.test_start - fold.train_end == horizon
        # The last training row's label ends (row + horizon) before the first test bar.
        assert (fold.train_end - 1) + horizon < fold.test_start
    with pytest.raises(MlkitError, match="too few"):
        walk_forward_folds(30, 3, 0.2, horizon)


@pytest.mark.parametrize("bootstrap", ["Bayesian", "Bernoulli", "MVS", "No"])
def test_catboost_parameters_never_conflict(bootstrap):
    params = catboost_params(ModelSettings.default(bootstrap_type=bootstrap, iterations=3))
    assert params["auto_class_weights"] == "Balanced"
    assert params["loss_function"] == "MultiClass"
    assert ("subsample" in params) == (bootstrap in ("Bernoulli", "MVS"))
    assert ("bagging_temperature" in params) == (bootstrap == "Bayesian")
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(90, 3)), columns=["a", "b", "c"])
    y = np.tile([SELL, HOLD, BUY], 30)
    model = fit_classifier(
        X, y, ModelSettings.default(bootstrap_type=bootstrap, iterations=3, depth=2)
    )
    assert model.predict_proba(X).shape == (90, 3)
    with pytest.raises(MlkitError, match="bootstrap_type"):
        catboost_params(ModelSettings.default(bootstrap_type="Bootstrap"))
    with pytest.raises(MlkitError, match="lack class"):
        fit_classifier(X, np.zeros(90, dtype=int), ModelSettings.default(iterations=3))


def _closes(*segments: tuple[int, float, float]) -> pd.Series:
    """Concatenated segments of (bars, drift per bar, zigzag amplitude) as closes."""
    steps = []
    for n, drift, zigzag in segments:
        steps.append(drift + zigzag * np.where(np.arange(n) % 2 == 0, 1.0, -1.0))
    return pd.Series(100.0 * np.exp(np.cumsum(np.concatenate(steps))))


def test_fallback_signal_rules_and_confidence():
    cases = {
        # Steady rise with pullbacks: fast above slow, RSI below 70.
        "BUY": _closes((120, 0.002, 0.01)),
        # Steady fall with bounces: fast below slow, RSI above 30.
        "SELL": _closes((120, -0.002, 0.01)),
        # A rise without a single down bar: RSI 100 vetoes the BUY.
        "HOLD": _closes((120, 0.004, 0.0)),
    }
    for expected, close in cases.items():
        result = latest_fallback(close)
        assert result["signal"] == expected, (expected, result)
        assert 55.0 <= result["confidence"] <= 65.0
        indicators = result["fallback_indicators"]
        assert indicators["sma_14"] == pytest.approx(close.iloc[-14:].mean(), rel=1e-6)
        assert indicators["sma_50"] == pytest.approx(close.iloc[-50:].mean(), rel=1e-6)
        assert indicators["rsi"] == pytest.approx(rsi(close).iloc[-1], abs=0.01)
    assert latest_fallback(_closes((49, 0.001, 0.0))) is None  # no SMA(50) yet
    # Stronger trends give more confidence, always inside 55-65 %.
    weak = latest_fallback(_closes((120, 0.0002, 0.01)))["confidence"]
    strong = latest_fallback(_closes((120, 0.003, 0.01)))["confidence"]
    assert 55.0 <= weak < strong <= 65.0
    frame = fallback_frame(_closes((200, 0.001, 0.01)))
    assert (frame["signal"].iloc[:49] == -1).all() and frame["confidence"].iloc[:49].isna().all()


def test_backtest_follows_buy_and_sell_and_charges_each_change():
    signals = np.array([BUY, HOLD, SELL, HOLD, BUY])
    next_returns = np.array([0.01, 0.02, 0.05, -0.03, 0.01])
    result = backtest(signals, next_returns, cost_bps=10)
    # Long for bars 0-1 (0.03), flat for 2-3, long again for 4 (0.01); three changes.
    assert result["trades"] == 3
    assert result["return"] == pytest.approx(np.expm1(0.04 - 3 * 0.001))
    assert result["exposure"] == pytest.approx(0.6)
