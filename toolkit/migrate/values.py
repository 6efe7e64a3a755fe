"""Values on their way across: converters turn what the source stored into what the target
column holds (or reject it with a reason), normalisers turn either side's value into one
canonical text so equal values hash equal whatever dialect they came from."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from .reflect import ColumnSpec

EPOCH = datetime(1970, 1, 1)
NULL_MARK = "\x00\x00"
SEPARATOR = "\x1f"
MASK64 = (1 << 64) - 1
# MySQL's DATETIME starts at year 1000; PostgreSQL and SQLite hold Python's whole range.
MIN_YEAR = {"mysql": 1000}

Converter = Callable[[Any], Any]


class RejectValue(ValueError):
    """A value the target column cannot hold; the message is the reason."""


def _short(value: Any, width: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


# ---------------------------------------------------------------- converters


def make_converter(col: ColumnSpec, source: str, target: str) -> Converter | None:
    """A function from the source's stored value to the target's, or None when the values
    cross unchanged (the common case, kept free of per-value Python work)."""
    kind = col.kind
    if kind == "int":
        return _to_int if col.nonconforming else None
    if kind == "float":
        if col.nonconforming or target == "mysql":
            return _to_float_finite if target == "mysql" else _to_float
        return None
    if kind == "decimal":
        return _decimal_converter(col, target)
    if kind == "text":
        return _to_text if col.nonconforming or source == "postgresql" else None
    if kind == "blob":
        return _to_bytes if col.nonconforming or source == "postgresql" else None
    if kind == "bool":
        if source == "sqlite" and not col.nonconforming:
            return None
        return _to_bool
    if kind in ("date", "datetime", "time"):
        if source != "sqlite" and not col.timezone and target != "sqlite":
            return None
        return _temporal_converter(col, target)
    if kind == "json":
        return _to_json_text
    return None


def _to_int(v: Any) -> Any:
    if v is None or type(v) is int:
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    raise RejectValue(f"{_short(v)} is not an integer")


def _to_float(v: Any) -> Any:
    if v is None or isinstance(v, float):
        return v
    if type(v) is int:
        return float(v)
    raise RejectValue(f"{_short(v)} is not a number")


def _to_float_finite(v: Any) -> Any:
    v = _to_float(v)
    if v is not None and not math.isfinite(v):
        raise RejectValue(f"{v!r}: MySQL cannot store infinity or NaN")
    return v


def _decimal_converter(col: ColumnSpec, target: str) -> Converter:
    precision = col.precision or 38
    scale = col.scale or 0
    quantum = Decimal(1).scaleb(-scale)
    limit = Decimal(10) ** (precision - scale)
    as_float = target == "sqlite"  # sqlite3 cannot bind Decimal; NUMERIC stores doubles anyway

    def convert(v: Any) -> Any:
        if v is None:
            return None
        if type(v) is float:
            # The common case, cheaply: a double whose shortest form has no more decimals
            # than the column's scale is exact there and crosses as it is.
            text = repr(v)
            point = text.find(".")
            if point > 0 and "e" not in text and len(text) - point - 1 <= scale and abs(v) < limit:
                return v
        if isinstance(v, float):
            if not math.isfinite(v):
                raise RejectValue(f"{v!r} does not fit DECIMAL({precision},{scale})")
            d = Decimal(repr(v))
        elif isinstance(v, int | Decimal):
            d = Decimal(v)
        elif isinstance(v, str):
            try:
                d = Decimal(v.strip())
            except InvalidOperation:
                raise RejectValue(f"{_short(v)} is not a number") from None
            if not d.is_finite():
                raise RejectValue(f"{_short(v)} is not a number")
        else:
            raise RejectValue(f"{_short(v)} is not a number")
        q = d.quantize(quantum)
        # A double is exact at the column's scale when quantizing gives back the same double.
        exact = q == d or (isinstance(v, float) and float(q) == v)
        if not exact:
            raise RejectValue(f"{_short(v)} has more than {scale} decimal places")
        if abs(q) >= limit:
            raise RejectValue(f"{_short(v)} does not fit DECIMAL({precision},{scale})")
        return float(q) if as_float else q

    return convert


def _to_text(v: Any) -> Any:
    if v is None or type(v) is str:
        return v
    if isinstance(v, bytes | bytearray | memoryview):
        try:
            return bytes(v).decode("utf-8")
        except UnicodeDecodeError:
            raise RejectValue(f"{_short(bytes(v))} is binary, not UTF-8 text") from None
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _to_bytes(v: Any) -> Any:
    if v is None or type(v) is bytes:
        return v
    if isinstance(v, bytearray | memoryview):
        return bytes(v)
    if isinstance(v, str):
        return v.encode("utf-8")
    raise RejectValue(f"{_short(v)} is not binary data")


def _to_bool(v: Any) -> Any:
    if v is None or v is True or v is False:
        return v
    if v in (0, 1) and not isinstance(v, str):
        return bool(v)
    raise RejectValue(f"{_short(v)} is not a boolean (0 or 1)")


def _to_json_text(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, str):
        try:
            json.loads(v)
        except ValueError:
            raise RejectValue(f"{_short(v)} is not valid JSON") from None
        return v
    return json.dumps(v)


def _temporal_converter(col: ColumnSpec, target: str) -> Converter:
    kind = col.kind
    ms = col.epoch_unit == "ms"
    keep_zone = col.timezone and target == "postgresql"
    min_year = MIN_YEAR.get(target, 1)
    as_text = target == "sqlite"

    def to_datetime(v: Any) -> datetime:
        if isinstance(v, datetime):
            dt = v
        elif isinstance(v, date):
            dt = datetime(v.year, v.month, v.day)
        elif isinstance(v, str):
            try:
                dt = datetime.fromisoformat(v.strip())
            except ValueError:
                raise RejectValue(f"{_short(v)} is not a date or timestamp") from None
        elif isinstance(v, int | float) and not isinstance(v, bool):
            try:
                dt = EPOCH + timedelta(milliseconds=v) if ms else EPOCH + timedelta(seconds=v)
            except (OverflowError, ValueError):
                raise RejectValue(f"{_short(v)} is out of range as epoch time") from None
        else:
            raise RejectValue(f"{_short(v)} is not a date or timestamp")
        if dt.tzinfo is not None and not keep_zone:
            # Timestamps arrive as naive UTC, the convention of every mlkit table.
            dt = dt.astimezone(UTC).replace(tzinfo=None)
        if dt.year < min_year:
            raise RejectValue(f"{_short(v)} is before the year {min_year}")
        return dt

    if kind == "datetime":

        def convert(v: Any) -> Any:
            if v is None:
                return None
            dt = to_datetime(v)
            return dt.isoformat(sep=" ", timespec="microseconds") if as_text else dt

        return convert

    if kind == "date":

        def convert_date(v: Any) -> Any:
            if v is None:
                return None
            dt = to_datetime(v)
            if dt.time() != time(0):
                raise RejectValue(f"{_short(v)} has a time of day; the column is a DATE")
            return dt.date().isoformat() if as_text else dt.date()

        return convert_date

    def convert_time(v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, timedelta):
            v = (datetime.min + v).time()
        elif isinstance(v, str):
            try:
                v = time.fromisoformat(v.strip())
            except ValueError:
                raise RejectValue(f"{_short(v)} is not a time of day") from None
        elif not isinstance(v, time):
            raise RejectValue(f"{_short(v)} is not a time of day")
        return v.isoformat(timespec="microseconds") if as_text else v

    return convert_time


def row_converter(
    columns: Sequence[ColumnSpec], source: str, target: str
) -> Callable[[Sequence[Any]], tuple] | None:
    """One function for a whole row, or None when no column needs converting."""
    steps = [
        (i, fn)
        for i, c in enumerate(columns)
        if (fn := make_converter(c, source, target)) is not None
    ]
    if not steps:
        return None

    def convert(row: Sequence[Any]) -> tuple:
        out = list(row)
        i = -1
        try:
            for i, fn in steps:
                out[i] = fn(out[i])
        except RejectValue as exc:
            raise RejectValue(f"column {columns[i].name!r}: {exc}") from None
        return tuple(out)

    return convert


# ---------------------------------------------------------------- normalisers


def _norm_int(v: Any) -> str:
    return str(int(v))


def _norm_float(v: Any) -> str:
    f = float(v)
    return "0.0" if f == 0 else repr(f)


def _norm_decimal(v: Any) -> str:
    text = repr(v) if isinstance(v, float) else str(v)
    if "e" in text or "E" in text:
        text = format(Decimal(text).normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _norm_text(v: Any) -> str:
    return v if type(v) is str else _to_text(v)


def _norm_blob(v: Any) -> str:
    if isinstance(v, str):
        return v.encode("utf-8").hex()
    return bytes(v).hex()


def _norm_bool(v: Any) -> str:
    return "1" if v else "0"


def _norm_datetime(v: Any) -> str:
    if isinstance(v, str):
        v = datetime.fromisoformat(v)
    elif not isinstance(v, datetime):
        v = datetime(v.year, v.month, v.day)
    if v.tzinfo is not None:
        v = v.astimezone(UTC).replace(tzinfo=None)
    return v.isoformat(sep=" ", timespec="microseconds")


def _norm_date(v: Any) -> str:
    if isinstance(v, str):
        return date.fromisoformat(v[:10]).isoformat()
    if isinstance(v, datetime):
        v = v.date()
    return v.isoformat()


def _norm_time(v: Any) -> str:
    if isinstance(v, timedelta):
        v = (datetime.min + v).time()
    elif isinstance(v, str):
        v = time.fromisoformat(v)
    return v.isoformat(timespec="microseconds")


def _norm_json(v: Any) -> str:
    value = json.loads(v) if isinstance(v, str | bytes) else v
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


NORMALISERS: dict[str, Callable[[Any], str]] = {
    "int": _norm_int,
    "float": _norm_float,
    "decimal": _norm_decimal,
    "text": _norm_text,
    "blob": _norm_blob,
    "bool": _norm_bool,
    "datetime": _norm_datetime,
    "date": _norm_date,
    "time": _norm_time,
    "json": _norm_json,
}


def row_hasher(columns: Sequence[ColumnSpec]) -> Callable[[Sequence[Any]], int]:
    """A row's 64-bit hash over its normalised values. Summing the hashes of a table's rows
    gives a checksum that ignores row order yet counts duplicates (XOR would cancel them)."""
    fns = [NORMALISERS[c.kind] for c in columns]
    blake = hashlib.blake2b

    def hash_row(row: Sequence[Any]) -> int:
        text = SEPARATOR.join(
            [NULL_MARK if v is None else fn(v) for fn, v in zip(fns, row, strict=True)]
        )
        digest = blake(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        return int.from_bytes(digest, "little")

    return hash_row


def raw_row_hasher(width: int) -> Callable[[Sequence[Any]], int]:
    """A hash of the row exactly as the source stored it; identifies rejected rows."""

    def hash_row(row: Sequence[Any]) -> int:
        text = SEPARATOR.join(NULL_MARK if v is None else repr(v) for v in row[:width])
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        return int.from_bytes(digest, "little")

    return hash_row


def json_safe(value: Any) -> Any:
    """A value for the reject file: bytes as hex, everything else JSON or its repr."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return {"hex": bytes(value).hex()}
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return repr(value)
