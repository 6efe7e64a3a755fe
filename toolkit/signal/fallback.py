"""The signal served while no model is trained: SMA(14)/SMA(50) crossover with an RSI(14)
filter (BUY when SMA14 > SMA50 and RSI < 70, SELL when SMA14 < SMA50 and RSI > 30, else
HOLD), confidence 55-65 % by the strength of the signal."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .indicators import rsi, sma
from .labels import BUY, CLASSES, HOLD, SELL

FAST, SLOW, RSI_WINDOW = 14, 50, 14
MIN_BARS = SLOW  # SMA(50) needs fifty closes
CONFIDENCE_LOW, CONFIDENCE_HIGH = 55.0, 65.0
FULL_GAP = 0.02


def fallback_frame(close: pd.Series) -> pd.DataFrame:
    """Per bar: sma_14, sma_50, rsi, signal (class index, -1 before SMA(50) exists) and
    confidence in percent. Whole-column work, used for the latest bar and for backtests."""
    close = pd.Series(np.asarray(close, dtype=float))
    fast, slow, strength_rsi = sma(close, FAST), sma(close, SLOW), rsi(close, RSI_WINDOW)
    f, s, r = fast.to_numpy(), slow.to_numpy(), strength_rsi.to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = f / s - 1.0
        buy = (f > s) & (r < 70.0)
        sell = (f < s) & (r > 30.0)
        gap_strength = np.clip(np.abs(gap) / FULL_GAP, 0.0, 1.0)
        room = np.where(buy, (70.0 - r) / 40.0, (r - 30.0) / 40.0)
        directional = 0.5 * gap_strength + 0.5 * np.clip(room, 0.0, 1.0)
        veto = np.where(f > s, (r - 70.0) / 30.0, (30.0 - r) / 30.0)
        hold = np.where(f == s, 0.0, np.clip(veto, 0.0, 1.0))
    signal = np.where(buy, BUY, np.where(sell, SELL, HOLD))
    strength = np.where(buy | sell, directional, hold)
    known = np.isfinite(f) & np.isfinite(s) & np.isfinite(r)
    signal = np.where(known, signal, -1)
    confidence = np.where(
        known, CONFIDENCE_LOW + (CONFIDENCE_HIGH - CONFIDENCE_LOW) * strength, np.nan
    )
    return pd.DataFrame(
        {"sma_14": f, "sma_50": s, "rsi": r, "signal": signal, "confidence": confidence}
    )


def latest_fallback(close: pd.Series) -> dict | None:
    """The fallback signal of the last bar; None with fewer than MIN_BARS closes."""
    if len(close) < MIN_BARS:
        return None
    last = fallback_frame(close).iloc[-1]
    if last["signal"] < 0:
        return None
    return {
        "signal": CLASSES[int(last["signal"])],
        "confidence": round(float(last["confidence"]), 2),
        "fallback_indicators": {
            "sma_14": round(float(last["sma_14"]), 6),
            "sma_50": round(float(last["sma_50"]), 6),
            "rsi": round(float(last["rsi"]), 2),
        },
    }
