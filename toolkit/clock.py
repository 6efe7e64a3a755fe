"""The one clock: naive UTC to the second, the way every timestamp is stored."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from .errors import MlkitError


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def parse_moment(text: str, *, now: datetime, option: str, hint: str = "") -> datetime:
    """`30d`, `12h` (before `now`), `2026-01-01`, `2026-01-01T06:00:00`: a naive UTC moment."""
    match = re.fullmatch(r"\s*(\d+)\s*([dhm])\s*", text)
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        return now - timedelta(**{{"d": "days", "h": "hours", "m": "minutes"}[unit]: amount})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise MlkitError(
            f"cannot read {option} {text!r}",
            hint="use a duration like 30d or 12h, or a date like 2026-01-01" + hint,
        ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment
