"""A wide set of technical indicators over OHLCV bars, and its sanitisation.

Every column at bar t uses bars t, t-1, ... only, since a signal is made at the bar's close.
Exponential indicators forget their start only geometrically, which is why prediction reads
PREDICTION_LOOKBACK bars.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd

WINDOWS = (3, 5, 7, 10, 14, 20, 30, 50, 72, 100, 200)
RETURN_HORIZONS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 36, 48, 72, 96, 120, 168)
RETURN_LAGS = tuple(range(1, 25))
CROSS_WINDOWS = (5, 10, 14, 20, 50, 100, 200)
MACD_SETTINGS = ((12, 26, 9), (5, 35, 5), (8, 17, 9), (3, 10, 16), (24, 52, 9))
# Bars read to predict the latest one: the longest window plus time for the slowest
# exponential average (EMA 200) to forget its start to about 1e-5.
PREDICTION_LOOKBACK = 1500
OHLCV = ("open", "high", "low", "close", "volume")


def _div(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    """numerator / denominator with NaN, never inf, where the denominator is 0."""
    return numerator / denominator.where(denominator != 0)


def _ema(series: pd.Series, span: int) -> pd.Series:
    return series.ewm(span=span, adjust=False, min_periods=span).mean()


def _wilder(series: pd.Series, window: int) -> pd.Series:
    return series.ewm(alpha=1.0 / window, adjust=False, min_periods=window).mean()


def rsi(close: pd.Series, window: int = 14) -> pd.Series:
    """Wilder's RSI in [0, 100]; 50 where the price did not move at all."""
    change = close.diff()
    gain = _wilder(change.clip(lower=0.0), window)
    loss = _wilder((-change).clip(lower=0.0), window)
    value = 100.0 * _div(gain, gain + loss)
    return value.where(~((gain + loss == 0) & gain.notna()), 50.0)


def sma(close: pd.Series, window: int) -> pd.Series:
    return close.rolling(window, min_periods=window).mean()


def compute_features(bars: pd.DataFrame) -> pd.DataFrame:
    """The indicator columns of time-ordered bars (columns open, high, low, close, volume
    and ts), index aligned with `bars`. About 440 columns."""
    series = _derived_series(bars)
    cols: dict[str, pd.Series] = {}
    for w in WINDOWS:
        cols.update(_window_columns(series, w))
    cols.update(_horizon_columns(series["c"], series["log_c"], series["r1"]))
    cols.update(_calendar_columns(series["ts"]))
    frame = pd.DataFrame({name: s.to_numpy(dtype=float) for name, s in cols.items()})
    frame.index = bars.index
    return frame


def _derived_series(bars: pd.DataFrame) -> dict[str, pd.Series]:
    """The bars' columns and the per-bar series the indicators are built from."""
    o, h, lo, c, v = (bars[name].astype(float).reset_index(drop=True) for name in OHLCV)
    ts = pd.to_datetime(bars["ts"]).reset_index(drop=True)
    log_c = np.log(c)
    r1 = log_c.diff()
    prev_c = c.shift(1)
    true_range = pd.concat([h - lo, (h - prev_c).abs(), (lo - prev_c).abs()], axis=1).max(axis=1)
    typical = (h + lo + c) / 3.0
    up_move, down_move = h.diff(), -lo.diff()
    plus_dm = up_move.where((up_move > down_move) & (up_move > 0), 0.0)
    minus_dm = down_move.where((down_move > up_move) & (down_move > 0), 0.0)
    obv = (np.sign(c.diff()).fillna(0.0) * v).cumsum()
    money_flow = typical * v
    typical_change = typical.diff()
    positive_flow = money_flow.where(typical_change > 0, 0.0)
    negative_flow = money_flow.where(typical_change < 0, 0.0)
    log_hl = np.log(_div(h, lo))
    log_co = np.log(_div(c, o))
    close_location = _div((c - lo) - (h - c), h - lo)
    price_volume = c * v
    up_bar = (r1 > 0).astype(float).where(r1.notna())

    return {
        "ts": ts,
        "c": c,
        "h": h,
        "lo": lo,
        "v": v,
        "log_c": log_c,
        "r1": r1,
        "true_range": true_range,
        "typical": typical,
        "plus_dm": plus_dm,
        "minus_dm": minus_dm,
        "obv": obv,
        "positive_flow": positive_flow,
        "negative_flow": negative_flow,
        "log_hl": log_hl,
        "log_co": log_co,
        "close_location": close_location,
        "price_volume": price_volume,
        "up_bar": up_bar,
    }


def _window_columns(series: dict[str, pd.Series], w: int) -> dict[str, pd.Series]:
    """The indicators over the last `w` bars."""
    c, h, lo, v, log_c, r1 = (series[k] for k in ("c", "h", "lo", "v", "log_c", "r1"))
    true_range, typical, obv = series["true_range"], series["typical"], series["obv"]
    plus_dm, minus_dm = series["plus_dm"], series["minus_dm"]
    positive_flow, negative_flow = series["positive_flow"], series["negative_flow"]
    log_hl, log_co = series["log_hl"], series["log_co"]
    close_location, price_volume = series["close_location"], series["price_volume"]
    up_bar = series["up_bar"]
    cols: dict[str, pd.Series] = {}
    roll = c.rolling(w, min_periods=w)
    mean, std = roll.mean(), roll.std()
    ema = _ema(c, w)
    vol = r1.rolling(w, min_periods=w).std()
    atr = _wilder(true_range, w)
    lowest = lo.rolling(w, min_periods=w).min()
    highest = h.rolling(w, min_periods=w).max()
    stoch = 100.0 * _div(c - lowest, highest - lowest)
    v_roll = v.rolling(w, min_periods=w)
    v_mean, v_std = v_roll.mean(), v_roll.std()
    tp_roll = typical.rolling(w, min_periods=w)
    plus_di = 100.0 * _div(_wilder(plus_dm, w), atr)
    minus_di = 100.0 * _div(_wilder(minus_dm, w), atr)
    dx = 100.0 * _div((plus_di - minus_di).abs(), plus_di + minus_di)
    obv_roll = obv.rolling(w, min_periods=w)
    pos = positive_flow.rolling(w, min_periods=w).sum()
    neg = negative_flow.rolling(w, min_periods=w).sum()
    vwap = _div(price_volume.rolling(w, min_periods=w).sum(), v.rolling(w, min_periods=w).sum())

    cols[f"sma_ratio_{w}"] = _div(c, mean) - 1.0
    cols[f"ema_ratio_{w}"] = _div(c, ema) - 1.0
    cols[f"sma_slope_{w}"] = np.log(_div(mean, mean.shift(max(1, w // 4))))
    cols[f"volatility_{w}"] = vol
    cols[f"rsi_{w}"] = rsi(c, w)
    cols[f"bollinger_pctb_{w}"] = _div(c - (mean - 2.0 * std), 4.0 * std)
    cols[f"bollinger_width_{w}"] = _div(4.0 * std, mean)
    cols[f"atr_{w}"] = _div(atr, c)
    cols[f"stoch_k_{w}"] = stoch
    cols[f"stoch_d_{w}"] = stoch.rolling(3, min_periods=3).mean()
    cols[f"high_distance_{w}"] = _div(c, highest) - 1.0
    cols[f"low_distance_{w}"] = _div(c, lowest) - 1.0
    cols[f"volume_z_{w}"] = _div(v - v_mean, v_std)
    cols[f"volume_ratio_{w}"] = _div(v, v_mean)
    # CCI with the rolling standard deviation in place of the mean absolute deviation,
    # which has no vectorised rolling form; the two differ by a near-constant factor.
    cols[f"cci_{w}"] = _div(typical - tp_roll.mean(), 0.015 * tp_roll.std())
    cols[f"momentum_z_{w}"] = _div(log_c - log_c.shift(w), vol * np.sqrt(w))
    cols[f"skew_{w}"] = r1.rolling(w, min_periods=w).skew()
    cols[f"kurtosis_{w}"] = r1.rolling(w, min_periods=w).kurt()
    cols[f"obv_z_{w}"] = _div(obv - obv_roll.mean(), obv_roll.std())
    cols[f"mfi_{w}"] = 100.0 * _div(pos, pos + neg)
    cols[f"range_mean_{w}"] = _div(h - lo, c).rolling(w, min_periods=w).mean()
    cols[f"close_location_{w}"] = close_location.rolling(w, min_periods=w).mean()
    cols[f"adx_{w}"] = _wilder(dx, w)
    cols[f"di_diff_{w}"] = plus_di - minus_di
    cols[f"parkinson_{w}"] = np.sqrt(
        (log_hl**2).rolling(w, min_periods=w).mean() / (4.0 * np.log(2.0))
    )
    garman_klass = 0.5 * log_hl**2 - (2.0 * np.log(2.0) - 1.0) * log_co**2
    cols[f"garman_klass_{w}"] = np.sqrt(
        garman_klass.rolling(w, min_periods=w).mean().clip(lower=0.0)
    )
    cols[f"autocorr_{w}"] = r1.rolling(w, min_periods=w).corr(r1.shift(1)).clip(-1.0, 1.0)
    cols[f"volume_price_corr_{w}"] = (
        r1.rolling(w, min_periods=w).corr(v.pct_change()).clip(-1.0, 1.0)
    )
    cols[f"vwap_distance_{w}"] = _div(c, vwap) - 1.0
    cols[f"keltner_{w}"] = _div(c - ema, atr)
    cols[f"up_share_{w}"] = up_bar.rolling(w, min_periods=w).mean()

    return cols


def _horizon_columns(c: pd.Series, log_c: pd.Series, r1: pd.Series) -> dict[str, pd.Series]:
    """Returns over several horizons, lagged returns, MACDs and moving-average crosses."""
    cols: dict[str, pd.Series] = {}
    for k in RETURN_HORIZONS:
        cols[f"return_{k}"] = log_c - log_c.shift(k)
    for k in RETURN_LAGS:
        cols[f"return_lag_{k}"] = r1.shift(k)
    for fast, slow, signal in MACD_SETTINGS:
        macd = _div(_ema(c, fast) - _ema(c, slow), c)
        macd_signal = _ema(macd, signal)
        name = f"{fast}_{slow}_{signal}"
        cols[f"macd_{name}"] = macd
        cols[f"macd_signal_{name}"] = macd_signal
        cols[f"macd_hist_{name}"] = macd - macd_signal
    smas = {w: sma(c, w) for w in CROSS_WINDOWS}
    emas = {w: _ema(c, w) for w in CROSS_WINDOWS}
    for fast, slow in combinations(CROSS_WINDOWS, 2):
        cols[f"sma_cross_{fast}_{slow}"] = _div(smas[fast], smas[slow]) - 1.0
        cols[f"ema_cross_{fast}_{slow}"] = _div(emas[fast], emas[slow]) - 1.0
    return cols


def _calendar_columns(ts: pd.Series) -> dict[str, pd.Series]:
    """The bar's hour, weekday and minute, cyclically encoded where they cycle."""
    cols: dict[str, pd.Series] = {}
    hour = ts.dt.hour.to_numpy(dtype=float)
    weekday = ts.dt.day_of_week.to_numpy(dtype=float)
    cols["hour_sin"] = pd.Series(np.sin(2 * np.pi * hour / 24))
    cols["hour_cos"] = pd.Series(np.cos(2 * np.pi * hour / 24))
    cols["weekday_sin"] = pd.Series(np.sin(2 * np.pi * weekday / 7))
    cols["weekday_cos"] = pd.Series(np.cos(2 * np.pi * weekday / 7))
    # Constant on hourly bars (and then dropped by sanitisation); informative on minute bars.
    cols["minute_of_hour"] = pd.Series(ts.dt.minute.to_numpy(dtype=float))

    return cols


# ---------------------------------------------------------------- sanitisation


@dataclass
class Sanitization:
    """Which columns training kept, and why the others went."""

    initial: int
    kept: list[str]
    dropped: dict[str, list[str]] = field(default_factory=dict)

    @property
    def final(self) -> int:
        return len(self.kept)

    def as_dict(self) -> dict:
        return {
            "initial_features": self.initial,
            "final_features": self.final,
            "dropped_count": self.initial - self.final,
            "dropped": {reason: list(names) for reason, names in self.dropped.items()},
        }


def sanitize(frame: pd.DataFrame, max_missing_share: float = 0.5) -> Sanitization:
    """Decide on training rows which columns are usable: drop those holding an infinite
    value, those missing in more than `max_missing_share` of rows, and constant ones."""
    names = list(frame.columns)
    values = frame.to_numpy(dtype=float, copy=False)
    if values.shape[0] == 0:
        return Sanitization(len(names), [], {"mostly_missing": names})
    infinite = np.isinf(values).any(axis=0)
    finite = np.where(np.isfinite(values), values, np.nan)
    missing_share = np.isnan(finite).mean(axis=0)
    mostly_missing = ~infinite & (missing_share > max_missing_share)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: NaN, as wanted
        low, high = np.nanmin(finite, axis=0), np.nanmax(finite, axis=0)
    constant = ~infinite & ~mostly_missing & ((low == high) | np.isnan(low))
    dropped = {
        "infinite": [n for n, bad in zip(names, infinite, strict=True) if bad],
        "mostly_missing": [n for n, bad in zip(names, mostly_missing, strict=True) if bad],
        "constant": [n for n, bad in zip(names, constant, strict=True) if bad],
    }
    keep = ~(infinite | mostly_missing | constant)
    return Sanitization(len(names), [n for n, ok in zip(names, keep, strict=True) if ok], dropped)


# ---------------------------------------------------------------- the compact set

# Windows of the compact set stay within a week of hourly bars: a slow level (a 200-bar
# average, a long volatility) marks the period a bar belongs to, which a tree memorises. The one
# longer window (a month's volatility) only ever appears as the denominator of a ratio.
COMPACT_MOMENTUM = (3, 6, 12, 24, 48, 96, 168)
# Exponentially weighted mean returns (half-lives in bars): a trend filter that weighs the
# latest bars most, as a regime that may have just changed asks for.
COMPACT_TREND_HALF_LIVES = (12, 24, 48, 96)
LONG_VOLATILITY = 720
COMPACT_RETURNS = (12, 24, 48, 96, 168)
COMPACT_VOLATILITY = 96


def compact_features(bars: pd.DataFrame) -> pd.DataFrame:
    """About thirty period-agnostic columns: returns and exponential trends in units of recent
    volatility, the share of up bars, volatility relative to its own recent and monthly level,
    and bounded oscillators; no price level, calendar or long-window level, so a model learns
    how markets move rather than when it was trained."""
    s = _derived_series(bars)
    c, h, lo, v, log_c, r1 = (s[k] for k in ("c", "h", "lo", "v", "log_c", "r1"))
    vol = r1.rolling(COMPACT_VOLATILITY, min_periods=COMPACT_VOLATILITY // 2).std()
    cols: dict[str, pd.Series] = {}
    for k in COMPACT_MOMENTUM:
        cols[f"momentum_z_{k}"] = _div(log_c - log_c.shift(k), vol * np.sqrt(k))
    for k in COMPACT_RETURNS:
        cols[f"return_{k}"] = log_c - log_c.shift(k)
    cols["log_volatility_24"] = np.log(r1.rolling(24, min_periods=24).std())
    cols["log_volatility_96"] = np.log(vol)
    for w in (6, 24):
        cols[f"volatility_ratio_{w}"] = np.log(_div(r1.rolling(w, min_periods=w).std(), vol))
    cols["range_ratio_24"] = np.log(_div(_div(h - lo, c).rolling(24, min_periods=24).mean(), vol))
    for w in (14, 48):
        cols[f"rsi_{w}"] = (rsi(c, w) - 50.0) / 50.0
    for w in (24, 96):
        mean = c.rolling(w, min_periods=w).mean()
        cols[f"sma_gap_z_{w}"] = _div(np.log(_div(c, mean)), vol * np.sqrt(w))
    highest = h.rolling(48, min_periods=48).max()
    lowest = lo.rolling(48, min_periods=48).min()
    cols["high_distance_z_48"] = _div(np.log(_div(c, highest)), vol * np.sqrt(48))
    cols["low_distance_z_48"] = _div(np.log(_div(c, lowest)), vol * np.sqrt(48))
    macd = _ema(c, 12) - _ema(c, 26)
    cols["macd_hist_z"] = _div(macd - _ema(macd, 9), c * vol)
    for w in (24, 72, 168):
        cols[f"up_share_{w}"] = s["up_bar"].rolling(w, min_periods=w).mean() - 0.5
    for half_life in COMPACT_TREND_HALF_LIVES:
        trend = r1.ewm(halflife=half_life, min_periods=half_life).mean()
        cols[f"trend_z_{half_life}"] = _div(trend, vol) * np.sqrt(half_life)
    # Regimes differ in volatility: recent volatility against the month's level says which.
    long_vol = r1.rolling(LONG_VOLATILITY, min_periods=LONG_VOLATILITY // 3).std()
    for w in (24, 96):
        cols[f"volatility_vs_month_{w}"] = np.log(
            _div(r1.rolling(w, min_periods=w // 2).std(), long_vol)
        )
    cols["close_location_24"] = s["close_location"].rolling(24, min_periods=24).mean()
    v_roll = np.log(v.where(v > 0)).rolling(48, min_periods=48)
    cols["volume_z_48"] = _div(np.log(v.where(v > 0)) - v_roll.mean(), v_roll.std())
    cols["skew_48"] = r1.rolling(48, min_periods=48).skew()
    frame = pd.DataFrame({name: col.to_numpy(dtype=float) for name, col in cols.items()})
    frame.index = bars.index
    return frame
