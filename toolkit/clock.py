"""The one clock: naive UTC to the second, the way every timestamp is stored.

`MLKIT_NOW` (an ISO moment; an offset is converted to UTC) sets it for a whole process, so demos and
backfills run every command "as of" that moment without patching code.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from .errors import MlkitError

NOW_VARIABLE = "MLKIT_NOW"
# Moments an option may name: wide, but far from datetime's ends, where adding a lookback
# or a window overflows.
MOMENT_RANGE = (datetime(1900, 1, 1), datetime(2999, 12, 31, 23, 59, 59))


def utcnow() -> datetime:
    fixed = os.environ.get(NOW_VARIABLE, "").strip()
    if fixed:
        return _fixed_now(fixed)
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def as_utc(moment: datetime) -> datetime:
    """`moment` as naive UTC, the way timestamps are stored: an offset is converted, a naive
    moment is taken as UTC already."""
    if moment.tzinfo is not None:
        return moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _fixed_now(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise MlkitError(
            f"cannot read {NOW_VARIABLE}={text!r}",
            hint="use an ISO moment like 2026-03-01T02:00:00, or unset it for the wall clock",
        ) from None
    return as_utc(moment).replace(microsecond=0)


def parse_moment(text: str, *, now: datetime, option: str, hint: str = "") -> datetime:
    """`30d`, `12h` (before `now`), `2026-01-01`, `2026-01-01T06:00:00`: a naive UTC moment."""
    from .inputs import parse_duration

    duration = parse_duration(text, option)
    if duration is not None:
        return now - duration
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise MlkitError(
            f"cannot read {option} {text!r}",
            hint="use a duration like 30d or 12h, or a date like 2026-01-01" + hint,
        ) from None
    moment = as_utc(moment)
    if not MOMENT_RANGE[0] <= moment <= MOMENT_RANGE[1]:
        raise MlkitError(
            f"{option} {text.strip()!r} is outside {MOMENT_RANGE[0]:%Y} .. {MOMENT_RANGE[1]:%Y}",
            hint="use a duration like 30d or 12h, or a date like 2026-01-01" + hint,
        )
    return moment
