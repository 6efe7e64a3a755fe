"""The label horizon: a duration (`signal.horizon: 1d`) turned into a number of bars from the
bars themselves, unless `signal.horizon_bars` gives the count.

A horizon of d is the median number of bars from a bar to the first bar at least d later: 24
on hourly crypto bars for 1d, 1 on daily stock bars (and 5 for 7d: weekends have no bars).
The bar interval shown beside it is the median spacing of the bars.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from ..errors import MlkitError
from ..inputs import parse_duration

_UNITS = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))


def parse_horizon(text: str) -> timedelta:
    """`signal.horizon` as a positive timedelta."""
    duration = parse_duration(str(text), "signal.horizon")
    if duration is None or duration <= timedelta(0):
        raise MlkitError(
            f"signal.horizon {text!r} is not a duration",
            hint="use minutes, hours or days like 15m, 4h, 1d, 7d; or set "
            "signal.horizon_bars to a count of bars",
        )
    return duration


def duration_text(seconds: float | None) -> str | None:
    """Seconds in the largest unit that divides them: 86400 -> 1d, 5400 -> 90m."""
    if seconds is None or not np.isfinite(seconds) or seconds <= 0:
        return None
    for unit, size in _UNITS:
        if seconds >= size and float(seconds) % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _times(ts) -> np.ndarray:
    times = np.unique(np.asarray(ts, dtype="datetime64[us]"))
    return times[~np.isnat(times)]


def bar_interval(ts) -> float | None:
    """The median spacing of the bars in seconds; None with fewer than two."""
    times = _times(ts)
    if len(times) < 2:
        return None
    return float(np.median(np.diff(times) / np.timedelta64(1, "s")))


def bars_for(ts, duration: timedelta) -> int | None:
    """The median count of bars from a bar to the first at least `duration` later; from the
    bar interval when no bar has one that far ahead; None with fewer than two bars."""
    times = _times(ts)
    if len(times) < 2:
        return None
    ahead = np.searchsorted(times, times + np.timedelta64(duration), side="left")
    reach = ahead < len(times)
    if reach.any():
        steps = ahead[reach] - np.flatnonzero(reach)
        return max(1, int(np.floor(np.median(steps) + 0.5)))
    interval = bar_interval(times)
    return max(1, round(duration.total_seconds() / interval))


@dataclass(frozen=True)
class Horizon:
    """How many bars the labels look ahead, and what that is in time on these bars."""

    bars: int
    duration: str | None  # signal.horizon, when it set the count
    interval_seconds: float | None  # the bars' median spacing
    source: str  # signal.horizon or signal.horizon_bars
    note: str | None = None

    def as_dict(self) -> dict:
        interval = self.interval_seconds
        return {
            "bars": self.bars,
            "duration": self.duration,
            "bar_interval": duration_text(interval),
            "bar_interval_seconds": interval,
            "spans": duration_text(self.bars * interval) if interval else None,
            "source": self.source,
            "note": self.note,
        }

    def describe(self) -> str:
        """`24 bars of 1h (signal.horizon 1d)`."""
        interval = duration_text(self.interval_seconds)
        text = f"{self.bars} bar{'s' if self.bars != 1 else ''}"
        text += f" of {interval}" if interval else ""
        given = f"signal.horizon {self.duration}" if self.duration else "signal.horizon_bars"
        return f"{text} ({given})" + (f"; {self.note}" if self.note else "")


def resolve_horizon(ts, *, bars: int, duration: str) -> Horizon:
    """The horizon on these bars: `bars` when above 0 (an explicit count wins), else
    `duration` counted in bars."""
    interval = bar_interval(ts)
    if bars > 0:
        return Horizon(bars, None, interval, "signal.horizon_bars")
    span = parse_horizon(duration)
    count = bars_for(ts, span)
    if count is None:
        raise MlkitError(
            f"cannot turn signal.horizon {duration} into bars with fewer than two bars",
            hint="load more history, or set signal.horizon_bars",
        )
    note = None
    if interval and span.total_seconds() < interval:
        note = (
            f"shorter than the bar interval {duration_text(interval)}: the labels look one "
            "bar ahead"
        )
    return Horizon(count, duration.strip(), interval, "signal.horizon", note)


def recorded_horizon(params: dict) -> Horizon | None:
    """The horizon a registered version trained with, from its params."""
    if not params.get("horizon_bars"):
        return None
    return Horizon(
        int(params["horizon_bars"]),
        params.get("horizon"),
        params.get("bar_interval_seconds"),
        "signal.horizon" if params.get("horizon") else "signal.horizon_bars",
    )
