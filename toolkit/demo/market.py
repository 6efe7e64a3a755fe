"""Demo world for the trading family: hourly OHLCV bars driven by hidden market regimes.

Regimes (bull / bear / flat) persist for days, so recent returns say something about the next day,
which is what a signal model can learn; the per-bar truth goes to `demo_truth_regimes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa
from scipy.signal import lfilter

from ..schema import demo_truth_regimes, market_data
from .params import DemoParams
from .queries import latest_rows


@dataclass(frozen=True)
class SymbolSpec:
    start_price: float
    hourly_volatility: float  # typical log-return sd of one hourly bar
    hourly_volume: float  # typical base-asset volume of one bar


SYMBOLS: dict[str, SymbolSpec] = {
    "BTCUSDT": SymbolSpec(60_000.0, 0.0060, 1_200.0),
    "ETHUSDT": SymbolSpec(3_000.0, 0.0080, 15_000.0),
    "SOLUSDT": SymbolSpec(150.0, 0.0110, 250_000.0),
}

REGIMES = ("bull", "flat", "bear")
# Per regime, in units of the symbol's hourly volatility: drift per bar and volatility.
# The drift is what makes momentum predictive: a fifth of a bar's sd per hour adds up to
# a day's noise within a day or two, and regimes last about a week.
REGIME_DRIFT = np.array([0.18, 0.0, -0.2])
REGIME_VOLATILITY = np.array([0.9, 0.7, 1.35])
REGIME_MEAN_HOURS = np.array([7.0, 5.0, 5.0]) * 24  # bull markets last longest

LOG_VOL_PERSISTENCE = 0.97  # half-life of a volatility shock of about a day
LOG_VOL_SD = 0.35  # stationary sd of log-volatility around its regime level
SHOCK_DF = 4.0  # Student-t degrees of freedom: fat tails with a finite variance
MARKET_FACTOR_SHARE = 0.6  # share of shock variance common to all symbols
OPEN_GAP_SD = 0.0001  # an open differs from the previous close by about a basis point
# Log price mean-reverts to the symbol's start price with a 20-day half-life, so trends
# never carry a price to absurd levels however many periods are appended.
REVERSION_PER_BAR = np.log(2) / (20 * 24)


@dataclass(frozen=True)
class SymbolState:
    """The last bar of a symbol and the hidden state it was generated in."""

    ts: datetime
    close: float
    regime: str
    volatility: float  # hourly volatility of the last bar, including clustering


@dataclass
class MarketState:
    """What an append needs to continue every symbol where the database left it."""

    symbols: dict[str, SymbolState] = field(default_factory=dict)


def read_state(conn: sa.Connection) -> MarketState:
    """The last bar and the last regime of each symbol: two grouped queries."""
    m, t = market_data, demo_truth_regimes
    bars = conn.execute(latest_rows(m, "symbol", "ts", m.c.symbol, m.c.ts, m.c.close)).all()
    truths = conn.execute(latest_rows(t, "symbol", "ts", t.c.symbol, t.c.regime, t.c.volatility))
    truth_by_symbol = {row.symbol: row for row in truths.all()}
    state = MarketState()
    for row in bars:
        spec = SYMBOLS.get(row.symbol)
        truth = truth_by_symbol.get(row.symbol)
        if truth is not None:
            regime, volatility = truth.regime, float(truth.volatility)
        else:
            # Bars loaded without truth: resume in a calm market.
            regime = "flat"
            volatility = spec.hourly_volatility if spec else 0.01
        state.symbols[row.symbol] = SymbolState(
            ts=pd.Timestamp(row.ts).to_pydatetime(),
            close=float(row.close),
            regime=regime,
            volatility=volatility,
        )
    return state


def generate(params: DemoParams, state: MarketState | None) -> dict[str, pd.DataFrame]:
    """Hourly bars of every symbol over [start, end), continuing `state` when given."""
    rng = params.rng("market")
    state = state or MarketState()
    volatility_factor = params.factor("volatility")
    all_bars = _bar_times(params, state)
    names = list(SYMBOLS)
    specs = [SYMBOLS[name] for name in names]
    base_vol = np.array([spec.hourly_volatility for spec in specs])[:, None]
    draws = _Draws.of(rng, len(names), len(all_bars))

    previous = [state.symbols.get(name) for name in names]
    last_close, first_regime, start_log_vol = _resume(previous, specs, draws, volatility_factor)
    regime_index = _regime_path(first_regime, draws, len(all_bars))
    volatility = _volatility(base_vol, regime_index, draws, start_log_vol, volatility_factor)
    drift = base_vol * REGIME_DRIFT[regime_index]
    t_scale = np.sqrt(SHOCK_DF / (SHOCK_DF - 2.0))  # Student-t to unit variance
    shocks = (
        np.sqrt(MARKET_FACTOR_SHARE) * draws.market_shocks[None, :]
        + np.sqrt(1.0 - MARKET_FACTOR_SHARE) * draws.own_shocks
    ) / t_scale
    log_returns = drift + volatility * shocks

    # Log price relative to the anchor is an AR(1), run by lfilter like the volatility.
    anchor = np.log([spec.start_price for spec in specs])[:, None]
    pull = 1.0 - REVERSION_PER_BAR
    deviation, _ = lfilter(
        [1.0],
        [1.0, -pull],
        draws.open_gaps + log_returns,
        axis=1,
        zi=pull * (np.log(last_close) - anchor[:, 0])[:, None],
    )
    previous_deviation = np.concatenate(
        [(np.log(last_close) - anchor[:, 0])[:, None], deviation[:, :-1]], axis=1
    )
    reversion = -REVERSION_PER_BAR * previous_deviation
    log_close = anchor + deviation
    log_returns = log_returns + reversion
    drift = drift + reversion
    close = np.exp(log_close)
    open_ = np.exp(log_close - log_returns)
    # Wicks reach beyond the body by about half a bar's volatility.
    high = np.maximum(open_, close) * np.exp(0.5 * volatility * draws.wicks[0])
    low = np.minimum(open_, close) * np.exp(-0.5 * volatility * draws.wicks[1])
    volume = _volume(all_bars, specs, log_returns, volatility, base_vol, draws, params)

    n_bars = len(all_bars)
    bars = pd.DataFrame(
        {
            "symbol": pd.array(np.repeat(np.array(names, dtype=object), n_bars), dtype="str"),
            "ts": np.tile(all_bars.to_numpy().astype("datetime64[us]"), len(names)),
            "open": _round_price(open_.ravel()),
            "high": _round_price(high.ravel()),
            "low": _round_price(low.ravel()),
            "close": _round_price(close.ravel()),
            "volume": np.maximum(np.round(volume.ravel(), 4), 1e-4),
        }
    )
    truth = pd.DataFrame(
        {
            "symbol": bars["symbol"].copy(),
            "ts": bars["ts"].copy(),
            "regime": pd.array(np.array(REGIMES, dtype=object)[regime_index.ravel()], dtype="str"),
            "drift": drift.ravel(),
            "volatility": volatility.ravel(),
        }
    )
    return {"market_data": bars, "demo_truth_regimes": truth}


def _bar_times(params: DemoParams, state: MarketState) -> pd.DatetimeIndex:
    """The hours of the period, never one the database already has (should periods overlap)."""
    first_bar = pd.Timestamp(params.start).ceil("h")
    known_until = [symbol.ts for symbol in state.symbols.values() if symbol.ts is not None]
    if known_until:
        first_bar = max(
            first_bar, pd.Timestamp(max(known_until)).floor("h") + pd.Timedelta(hours=1)
        )
    return pd.date_range(first_bar, pd.Timestamp(params.end), freq="h", inclusive="left")


@dataclass
class _Draws:
    """Every random number of a period, drawn up front in a fixed order: the same params
    give the same bars whatever code path follows."""

    start_jitter: np.ndarray
    fresh_regime: np.ndarray
    jump_steps: np.ndarray
    segment_uniforms: np.ndarray
    log_vol_innovations: np.ndarray
    market_shocks: np.ndarray
    own_shocks: np.ndarray
    open_gaps: np.ndarray
    wicks: np.ndarray
    volume_noise: np.ndarray

    @classmethod
    def of(cls, rng: np.random.Generator, n_symbols: int, n_bars: int) -> _Draws:
        max_segments = n_bars // 24 + 32
        return cls(
            rng.normal(0.0, 0.05, n_symbols),
            rng.choice(len(REGIMES), n_symbols, p=REGIME_MEAN_HOURS / REGIME_MEAN_HOURS.sum()),
            rng.integers(1, 3, (n_symbols, max_segments)),
            rng.random((n_symbols, max_segments)),
            rng.normal(0.0, 1.0, (n_symbols, n_bars)),
            rng.standard_t(SHOCK_DF, n_bars),
            rng.standard_t(SHOCK_DF, (n_symbols, n_bars)),
            rng.normal(0.0, OPEN_GAP_SD, (n_symbols, n_bars)),
            np.abs(rng.normal(0.0, 1.0, (2, n_symbols, n_bars))),
            rng.normal(0.0, 0.25, (n_symbols, n_bars)),
        )


def _resume(previous: list, specs: list[SymbolSpec], draws: _Draws, volatility_factor: float):
    """Where each symbol resumes: its last close, regime and log-volatility deviation, or a
    fresh start."""
    last_close = np.array(
        [
            prev.close if prev else spec.start_price * np.exp(jitter)
            for prev, spec, jitter in zip(previous, specs, draws.start_jitter, strict=True)
        ]
    )
    # A fresh symbol starts in a regime drawn by the share of time each one lasts.
    first_regime = np.array(
        [
            REGIMES.index(prev.regime) if prev and prev.regime in REGIMES else fresh
            for prev, fresh in zip(previous, draws.fresh_regime, strict=True)
        ]
    )
    # Log-volatility deviation of the last bar from the level this period would give it,
    # so a volatility shift between periods fades in at the AR rate instead of jumping.
    start_log_vol = np.zeros(len(specs))
    for row, (prev, spec) in enumerate(zip(previous, specs, strict=True)):
        if prev is not None and prev.volatility > 0:
            level = spec.hourly_volatility * REGIME_VOLATILITY[first_regime[row]]
            deviation = np.log(prev.volatility / (level * volatility_factor)) + LOG_VOL_SD**2 / 2
            start_log_vol[row] = np.clip(deviation, -2.0, 2.0)
    return last_close, first_regime, start_log_vol


def _regime_path(first_regime: np.ndarray, draws: _Draws, n_bars: int) -> np.ndarray:
    """The regime of every bar (symbols x bars): jumps to one of the two other regimes, each held a
    geometric number of hours (memoryless, so a resumed regime just gets a fresh duration).
    """
    jump_steps = draws.jump_steps
    n_symbols, max_segments = jump_steps.shape
    segment_regimes = (
        first_regime[:, None] + np.cumsum(jump_steps, axis=1) - jump_steps[:, :1]
    ) % 3
    stay_prob = 1.0 - 1.0 / REGIME_MEAN_HOURS[segment_regimes]
    durations = 1 + np.floor(np.log1p(-draws.segment_uniforms) / np.log(stay_prob)).astype(np.int64)
    segment_ends = np.cumsum(durations, axis=1)
    bar_index = np.arange(n_bars)
    regime_index = np.empty((n_symbols, n_bars), dtype=np.int64)
    for row in range(n_symbols):
        segment_of_bar = np.searchsorted(segment_ends[row], bar_index, side="right")
        regime_index[row] = segment_regimes[row, np.minimum(segment_of_bar, max_segments - 1)]
    return regime_index


def _volatility(base_vol, regime_index, draws: _Draws, start_log_vol, volatility_factor):
    """Hourly volatility with clustering: an AR(1) log-volatility run by lfilter, resumed
    from the last bar."""
    log_vol_step = LOG_VOL_SD * np.sqrt(1.0 - LOG_VOL_PERSISTENCE**2)
    log_vol, _ = lfilter(
        [1.0],
        [1.0, -LOG_VOL_PERSISTENCE],
        log_vol_step * draws.log_vol_innovations,
        axis=1,
        zi=(LOG_VOL_PERSISTENCE * start_log_vol)[:, None],
    )
    return (
        base_vol
        * REGIME_VOLATILITY[regime_index]
        * np.exp(log_vol - LOG_VOL_SD**2 / 2)
        * volatility_factor
    )


def _volume(all_bars, specs, log_returns, volatility, base_vol, draws: _Draws, params):
    """Volume: busier in the European/US afternoon, on big moves and in volatile spells."""
    hours = all_bars.hour.to_numpy()
    daily_cycle = 1.0 + 0.35 * np.cos(2 * np.pi * (hours - 15) / 24)
    move_size = np.abs(log_returns) / volatility
    hourly_volume = np.array([spec.hourly_volume for spec in specs])[:, None]
    return (
        hourly_volume
        * daily_cycle[None, :]
        * (0.5 + 0.6 * move_size)
        * (volatility / (base_vol * params.factor("volatility"))) ** 0.5
        * np.exp(draws.volume_noise)
        * params.factor("volume")
    )


def _round_price(values: np.ndarray) -> np.ndarray:
    # Rounding is monotone, so high >= max(open, close) >= min(open, close) >= low survive it.
    return np.round(values, 2)
