"""The trading demo world: hourly OHLCV bars over hidden regimes, frames only (no database)."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlkit.toolkit.demo import market
from mlkit.toolkit.demo.market import MarketState, SymbolState
from mlkit.toolkit.demo.params import DemoParams

START = datetime(2026, 1, 1)
DAYS = 90
PARAMS = DemoParams(seed=11, orders=20_000, days=DAYS, start=START, world_orders=20_000)


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    """Period 0 of the market world: bars and regimes."""
    return market.generate(PARAMS, None)


def state_after(frames: dict[str, pd.DataFrame]) -> MarketState:
    """What read_state would return once these frames were loaded."""
    last_bar = frames["market_data"].sort_values("ts").groupby("symbol").tail(1)
    last_truth = frames["demo_truth_regimes"].sort_values("ts").groupby("symbol").tail(1)
    merged = last_bar.merge(last_truth, on=["symbol", "ts"])
    return MarketState(
        symbols={
            row.symbol: SymbolState(row.ts.to_pydatetime(), row.close, row.regime, row.volatility)
            for row in merged.itertuples()
        }
    )


def closes(bars: pd.DataFrame) -> pd.DataFrame:
    return bars.pivot(index="ts", columns="symbol", values="close")


def test_same_params_give_the_same_frames_and_another_seed_does_not(frames):
    again = market.generate(PARAMS, None)
    for name, frame in frames.items():
        pd.testing.assert_frame_equal(frame, again[name])
    other = market.generate(replace(PARAMS, seed=12), None)
    assert not np.allclose(other["market_data"]["close"], frames["market_data"]["close"])


def test_the_frames_are_the_bars_and_their_regimes(frames):
    # Their columns against the schema: test_demo_schema.py.
    assert set(frames) == {"market_data", "demo_truth_regimes"}
    for frame in frames.values():
        assert frame["ts"].dtype == "datetime64[us]"


def test_one_bar_per_symbol_and_hour_over_the_window(frames):
    bars = frames["market_data"]
    assert set(bars["symbol"]) == set(market.SYMBOLS)
    assert not bars.duplicated(["symbol", "ts"]).any()
    assert (bars.groupby("symbol").size() == 24 * DAYS).all()
    assert bars["ts"].min() >= START
    assert bars["ts"].max() < START + timedelta(days=DAYS)
    assert (bars["ts"] == bars["ts"].dt.floor("h")).all()
    truth = frames["demo_truth_regimes"]
    pd.testing.assert_frame_equal(truth[["symbol", "ts"]], bars[["symbol", "ts"]])


def test_bars_are_consistent_ohlcv(frames):
    bars = frames["market_data"]
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
    assert (bars["low"] > 0).all() and (bars["volume"] > 0).all()
    for symbol, group in bars.groupby("symbol"):
        group = group.sort_values("ts")
        gap = group["open"].to_numpy()[1:] / group["close"].to_numpy()[:-1] - 1
        assert np.abs(gap).max() < 0.002, symbol  # an open is the previous close, give or take
        first = group["open"].iloc[0]
        assert 0.7 < first / market.SYMBOLS[symbol].start_price < 1.4, symbol


def test_returns_have_fat_tails_clustering_and_volume_follows_moves(frames):
    bars = frames["market_data"]
    for symbol, group in bars.groupby("symbol"):
        group = group.sort_values("ts")
        returns = np.diff(np.log(group["close"].to_numpy()))
        assert stats.kurtosis(returns) > 1.0, symbol
        assert pd.Series(np.abs(returns)).autocorr(1) > 0.05, symbol
        volume = group["volume"].to_numpy()[1:]
        assert np.corrcoef(np.abs(returns), volume)[0, 1] > 0.2, symbol
    by_hour = bars.groupby(bars["ts"].dt.hour)["volume"].mean()
    assert by_hour.loc[14:16].mean() > 1.3 * by_hour.loc[2:4].mean()  # the daily cycle


def test_regimes_persist_for_days_and_differ_in_drift_and_volatility(frames):
    truth = frames["demo_truth_regimes"]
    assert set(truth["regime"]) == {"bull", "bear", "flat"}
    for symbol, group in truth.groupby("symbol"):
        regime = group.sort_values("ts")["regime"].to_numpy()
        runs = 1 + np.count_nonzero(regime[1:] != regime[:-1])
        assert len(regime) / runs > 48, symbol  # mean regime run longer than two days
    mean = truth.groupby("regime")[["drift", "volatility"]].mean()
    assert mean.loc["bull", "drift"] > 0 > mean.loc["bear", "drift"]
    assert mean.loc["bear", "volatility"] > mean.loc["flat", "volatility"]


def test_past_momentum_predicts_the_next_day_but_far_from_perfectly():
    # A year, so a few dozen regimes back the estimate rather than a handful.
    year = market.generate(replace(PARAMS, days=365), None)["market_data"]
    log_close = np.log(closes(year))
    past = log_close - log_close.shift(48)
    forward = log_close.shift(-24) - log_close
    # Every 24th bar, so the forward windows do not overlap and the p-value is honest.
    sample = slice(48, -24, 24)
    x = past.iloc[sample].to_numpy().ravel()
    y = forward.iloc[sample].to_numpy().ravel()
    correlation, p_value = stats.pearsonr(x, y)
    print(f"momentum correlation {correlation:.3f} (p={p_value:.1e}, n={len(x)})")
    assert 0.1 < correlation < 0.6
    assert p_value < 0.01


def test_shifts_scale_volume_and_volatility(frames):
    louder = market.generate(replace(PARAMS, shift={"volume": 2.0}), None)["market_data"]
    base = frames["market_data"]
    np.testing.assert_allclose(louder["close"], base["close"])
    ratio = louder["volume"].sum() / base["volume"].sum()
    assert ratio == pytest.approx(2.0, rel=1e-3)
    wilder = market.generate(replace(PARAMS, shift={"volatility": 2.0}), None)["market_data"]

    def realised(frame: pd.DataFrame) -> float:
        return float(np.log(closes(frame)).diff().std().mean())

    assert 1.7 < realised(wilder) / realised(base) < 2.3


def test_append_continues_every_symbol_where_the_last_period_ended(frames):
    before = frames["market_data"]
    state = state_after(frames)
    # The seed plan starts an append one second after the last period's end.
    start = START + timedelta(days=DAYS, seconds=1)
    after = market.generate(replace(PARAMS, period=1, start=start, days=10), state)
    bars = after["market_data"]
    assert set(bars["symbol"]) == set(before["symbol"])
    assert bars["ts"].min() >= start and bars["ts"].max() < start + timedelta(days=10)
    assert bars["ts"].min() > before["ts"].max()
    assert (bars.groupby("symbol").size() == 24 * 10).all()
    first = bars.sort_values("ts").groupby("symbol").head(1).set_index("symbol")
    truth = after["demo_truth_regimes"].sort_values("ts").groupby("symbol").head(1)
    for symbol, last in state.symbols.items():
        assert first.loc[symbol, "open"] == pytest.approx(last.close, rel=0.002)
        assert truth.set_index("symbol").loc[symbol, "regime"] == last.regime
    # A fresh generator for period 1 is a different stream from period 0's.
    assert not np.allclose(bars["close"].iloc[:100], before["close"].iloc[:100])


def test_generation_at_a_million_orders_takes_a_moment():
    started = time.perf_counter()
    frames = market.generate(replace(PARAMS, orders=1_000_000, world_orders=1_000_000), None)
    elapsed = time.perf_counter() - started
    print(f"market: {len(frames['market_data'])} bars in {elapsed:.3f}s")
    # Bars depend on days, never on orders.
    assert len(frames["market_data"]) == 3 * 24 * DAYS
    assert elapsed < 5.0
