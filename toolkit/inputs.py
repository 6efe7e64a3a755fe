"""Input schemas: every value a user or a client hands mlkit is checked here, once.

A rejection is an `MlkitError` naming the field and the value, with a hint, so the command line
prints one `error:` line and exits 1 before anything is read or written.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from .clock import as_utc
from .errors import MlkitError

if TYPE_CHECKING:
    import numpy as np

BIGINT_MAX = 2**63 - 1
# Well inside the stored price column (NUMERIC(14, 2)), far above any ticket.
PRICE_MAX = 1_000_000_000.0
# The platform's payment methods (the demo world samples the same ones).
PAYMENT_METHODS = (
    "credit_card",
    "debit_card",
    "crypto_wallet",
    "paypal",
    "apple_pay",
    "bank_transfer",
)
ORDER_STATUSES = ("COMPLETED", "FAILED", "PENDING", "REFUNDED")
ORDER_ID_FIELDS = ("order_id", "buyer_wallet_id", "seller_wallet_id", "event_id", "ticket_id")
ORDER_REQUIRED = ("buyer_wallet_id", "event_id", "price", "payment_method", "created_at")
MAX_DURATION_DAYS = 36_525  # a hundred years
DURATION_UNITS = {"d": "days", "h": "hours", "m": "minutes"}
# No platform or market data this toolkit serves predates 1990; a moment more than a day
# ahead of the clock is a unit or time-zone mistake, not data.
EARLIEST_MOMENT = datetime(1990, 1, 1)
FUTURE_SLACK = timedelta(days=1)
# Epoch numbers by magnitude: below 1e11 seconds, below 1e14 milliseconds, else microseconds.
EPOCH_UNITS = (
    ("s", 1e11, "seconds"),
    ("ms", 1e14, "milliseconds"),
    ("us", math.inf, "microseconds"),
)


def show(value: object) -> str:
    """A value as the user wrote it, shortened: JSON where it is JSON, else its repr."""
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _reject(field: str, value: object, problem: str, hint: str) -> MlkitError:
    return MlkitError(f"{field} {show(value)} {problem}", hint=hint)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real | Decimal) and not isinstance(value, bool)


def positive_id(value: object, field: str) -> int:
    """A database id: an integer (or an integral number) in 1..2**63-1."""
    hint = f"{field} is a positive whole number below 2**63"
    if not _is_number(value):
        raise _reject(field, value, "is not an integer", hint)
    number = float(value) if not isinstance(value, numbers.Integral) else None
    if number is not None and not (math.isfinite(number) and number.is_integer()):
        raise _reject(field, value, "is not an integer", hint)
    integer = int(value)
    if not 1 <= integer <= BIGINT_MAX:
        raise _reject(field, value, "is out of range", hint)
    return integer


def finite_number(value: object, field: str, low: float, high: float, *, hint: str) -> float:
    """A finite number within [low, high]."""
    if not _is_number(value):
        raise _reject(field, value, "is not a number", hint)
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        raise _reject(field, value, f"is outside [{low:g}, {high:g}]", hint) from None
    if not math.isfinite(number):
        raise _reject(field, value, "is not a finite number", hint)
    if not low <= number <= high:
        raise _reject(field, value, f"is outside [{low:g}, {high:g}]", hint)
    return number


def price_value(value: object, field: str = "price") -> float:
    hint = f"give the price as a number above 0 and below {PRICE_MAX:,.0f}"
    number = finite_number(value, field, -math.inf, math.inf, hint=hint)
    if number <= 0:
        raise _reject(field, value, "is not above 0", hint)
    if number >= PRICE_MAX:
        raise _reject(field, value, f"is not below the maximum {PRICE_MAX:,.0f}", hint)
    return number


def boolean_value(value: object, field: str) -> bool:
    if isinstance(value, bool) or type(value).__name__ == "bool_":  # numpy's bool
        return bool(value)
    raise _reject(field, value, "is not a boolean", f"give {field} as true or false")


def choice(value: object, field: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise _reject(field, value, "is not a known value", f"use one of {', '.join(allowed)}")
    return value


def moment_value(value: object, field: str, *, now: datetime) -> datetime:
    """An ISO moment (or a datetime) as naive UTC, between EARLIEST_MOMENT and now + a day."""
    hint = "give an ISO moment like 2026-03-01T12:00:00+00:00 (an offset is converted to UTC)"
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise _reject(field, value, "is not an ISO moment", hint) from None
    elif isinstance(value, datetime):
        moment = value
    else:
        raise _reject(field, value, "is not an ISO moment", hint)
    moment = as_utc(moment)
    latest = now + FUTURE_SLACK
    if not EARLIEST_MOMENT <= moment <= latest:
        raise _reject(
            field,
            value,
            f"is outside {EARLIEST_MOMENT:%Y-%m-%d} .. {latest:%Y-%m-%d %H:%M} UTC",
            hint,
        )
    return moment


def validate_order(
    document: object, *, now: datetime, payment_methods: tuple[str, ...] = PAYMENT_METHODS
) -> dict:
    """The order of `predict fraud`, checked and normalised; keys it does not know are ignored."""
    if not isinstance(document, Mapping):
        raise MlkitError("the order must be a JSON object", hint="pass one JSON object")
    missing = [name for name in ORDER_REQUIRED if document.get(name) is None]
    if missing:
        raise MlkitError(
            f"the order lacks {', '.join(missing)}",
            hint="give at least " + ", ".join(ORDER_REQUIRED),
        )
    order: dict = {}
    for name in ORDER_ID_FIELDS:
        value = document.get(name)
        order[name] = None if value is None else positive_id(value, name)
    order["price"] = price_value(document["price"])
    # No catch-all method: the model has none, so an unknown one is refused, not scored as nothing.
    order["payment_method"] = choice(document["payment_method"], "payment_method", payment_methods)
    order["created_at"] = moment_value(document["created_at"], "created_at", now=now)
    resale = document.get("is_resale")
    order["is_resale"] = False if resale is None else boolean_value(resale, "is_resale")
    status = document.get("status")
    order["status"] = "PENDING" if status is None else choice(status, "status", ORDER_STATUSES)
    for name, limit in (("geo_lat", 90.0), ("geo_lon", 180.0)):
        value = document.get(name)
        hint = f"{name} is degrees within [-{limit:g}, {limit:g}], or null"
        order[name] = (
            None if value is None else finite_number(value, name, -limit, limit, hint=hint)
        )
    return order


def parse_order_json(text: str) -> dict:
    """The JSON text of one order as a dict, before `validate_order` checks its fields."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MlkitError(
            f"the order is not valid JSON ({exc.msg}, column {exc.colno})",
            hint="pass one JSON object",
        ) from None
    except RecursionError:
        raise MlkitError(
            "the order is nested too deeply", hint="pass one flat JSON object"
        ) from None
    if not isinstance(document, dict):
        raise MlkitError("the order must be a JSON object", hint="pass one JSON object")
    return document


def parse_duration(text: str, option: str) -> timedelta | None:
    """`30d`, `12h`, `15m` as a timedelta of at most MAX_DURATION_DAYS; None when `text` is
    not shaped like a duration (it may be a date)."""
    match = re.fullmatch(r"\s*(\d+)\s*([dhm])\s*", text)
    if not match:
        return None
    amount, unit = int(match.group(1)), match.group(2)
    per_day = {"d": 1, "h": 24, "m": 24 * 60}[unit]
    if amount > MAX_DURATION_DAYS * per_day:
        raise MlkitError(
            f"{option} {text.strip()!r} is longer than {MAX_DURATION_DAYS // 365} years",
            hint=f"use at most {MAX_DURATION_DAYS}d, or a date like 2026-01-01",
        )
    return timedelta(**{DURATION_UNITS[unit]: amount})


class LineProblems:
    """Bad lines of a file found by whole-column checks; keeps the first few messages."""

    def __init__(self, line_numbers, max_listed: int = 5):
        self.line_numbers = line_numbers
        self.max_listed = max_listed
        self.messages: list[tuple[int, str]] = []
        self.total = 0

    def add(self, mask, describe: Callable[[int], str]) -> None:
        """`describe(position)` words the problem of the row at that position."""
        import numpy as np

        positions = np.flatnonzero(np.asarray(mask, dtype=bool))
        if len(positions) == 0:
            return
        self.total += len(positions)
        for position in positions[: self.max_listed]:
            self.messages.append((int(self.line_numbers[position]), describe(position)))

    def raise_if_any(self, where: str) -> None:
        if not self.messages:
            return
        self.messages.sort()
        listed = self.max_listed
        shown = "; ".join(f"line {line}: {text}" for line, text in self.messages[:listed])
        hidden = self.total - min(len(self.messages), listed)
        extra = f" (and {hidden} more problem{'s' if hidden > 1 else ''})" if hidden else ""
        raise MlkitError(
            f"{where}: {shown}{extra}; nothing was written",
            hint="fix or remove those lines and run the same command again",
        )


def epoch_units(numbers_) -> np.ndarray:
    """The epoch unit ("s", "ms", "us") each number's magnitude implies; "" for NaN."""
    import numpy as np

    values = np.abs(np.asarray(numbers_, dtype=float))
    finite = np.isfinite(values)
    conditions = [finite & (values < below) for _, below, _ in EPOCH_UNITS]
    return np.select(conditions, [unit for unit, _, _ in EPOCH_UNITS], default="")


def check_epoch_units(problems: LineProblems, units) -> None:
    """A file's epoch timestamps share one unit: the first line in another unit than the
    first timestamp's is refused (reading both by the file's largest gives 1970 bars)."""
    import numpy as np

    units = np.asarray(units)
    known = np.flatnonzero(units != "")
    if len(known) == 0:
        return
    first = known[0]
    offending = np.flatnonzero((units != "") & (units != units[first]))
    if len(offending) == 0:
        return
    names = {unit: name for unit, _, name in EPOCH_UNITS}
    first_line = int(problems.line_numbers[first])
    problems.add(
        np.arange(len(units)) == offending[0],
        lambda i: (
            f"epoch timestamp in {names[units[i]]}, but line {first_line} is in "
            f"{names[units[first]]} (one unit per file)"
        ),
    )


def check_market_rows(
    problems: LineProblems, ts, ts_text, texts: dict, values: dict, *, now: datetime
) -> None:
    """The rules of one OHLCV bar over whole columns: `ts` naive UTC (NaT where unread) and
    `ts_text` what the file said; `values` float arrays of open/high/low/close/volume and
    `texts` their cells as written."""
    import numpy as np
    import pandas as pd

    problems.add(
        ts.isna(),
        lambda i: f"cannot read the date {ts_text[i]!r}" if ts_text[i] else "empty date",
    )
    latest = now + FUTURE_SLACK
    outside = ((ts < pd.Timestamp(EARLIEST_MOMENT)) | (ts > pd.Timestamp(latest))).to_numpy()
    problems.add(
        outside,
        lambda i: (
            f"date {ts_text[i]!r} ({pd.Timestamp(ts.iloc[i]).isoformat(sep=' ')}) is outside "
            f"{EARLIEST_MOMENT:%Y-%m-%d} .. {latest:%Y-%m-%d %H:%M} UTC"
        ),
    )
    for column, number in values.items():
        text = texts[column]

        def not_a_number(i, column=column, text=text):
            return f"{column} {text[i]!r} is not a number" if text[i] else f"empty {column}"

        problems.add(~np.isfinite(number), not_a_number)
        with np.errstate(invalid="ignore"):
            if column == "volume":
                problems.add(number < 0, lambda i, n=number: f"negative volume {n[i]:g}")
            else:
                problems.add(
                    number <= 0,
                    lambda i, n=number, c=column: (
                        f"{'negative' if n[i] < 0 else 'zero'} {c} price {n[i]:g}"
                    ),
                )
    o, h, lo, c = (values[n] for n in ("open", "high", "low", "close"))
    with np.errstate(invalid="ignore"):
        valid = np.logical_and.reduce([np.isfinite(x) & (x > 0) for x in (o, h, lo, c)])
        inconsistent = valid & ((h < np.maximum.reduce([o, c, lo])) | (lo > np.minimum(o, c)))
    problems.add(
        inconsistent, lambda i: f"high {h[i]:g} and low {lo[i]:g} do not bound open and close"
    )
