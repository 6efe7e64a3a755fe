"""Values on their way across: converters turn what the source stored into what the target
column holds (or reject it with a reason), normalisers turn either side's value into one
canonical text so equal values hash equal whatever dialect they came from."""

from __future__ import annotations

import gc
import hashlib
import json
import math
import re
import struct
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from itertools import repeat
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

    if kind in ("datetime", "date"):

        def convert(v: Any) -> Any:
            if v is None:
                return None
            dt = to_datetime(v)
            if kind == "datetime":
                return dt.isoformat(sep=" ", timespec="microseconds") if as_text else dt
            if dt.time() != time(0):
                raise RejectValue(f"{_short(v)} has a time of day; the column is a DATE")
            return dt.date().isoformat() if as_text else dt.date()

        return convert

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


@contextmanager
def fewer_collections() -> Iterator[None]:
    """The cyclic collector held back: copies and checksums allocate hundreds of thousands
    of tuples a batch, none in a cycle, which the default threshold rescans again and again."""
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], 100_000), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def normalise_column(values: Sequence[Any], kind: str) -> list[str]:
    """A column of values (a batch of rows at a time) normalised as row_hasher does one by
    one: the common types go through one C-level `map` per column instead of a Python call
    per value, everything else through the same normaliser."""
    present = [v for v in values if v is not None] if None in values else values
    types = set(map(type, present))
    if kind == "text" and types <= {str}:
        texts = present
    elif kind == "int" and types <= {int}:
        texts = list(map(int.__repr__, present))
    elif kind == "float" and types <= {float}:
        texts = list(map(float.__repr__, present))
        if "-0.0" in texts:
            texts = ["0.0" if t == "-0.0" else t for t in texts]
    elif kind == "blob" and types <= {bytes}:
        texts = list(map(bytes.hex, present))
    else:
        texts = list(map(NORMALISERS[kind], present))
    if len(present) == len(values):
        return texts if isinstance(texts, list) else list(texts)
    following = iter(texts).__next__
    return [NULL_MARK if v is None else following() for v in values]


def converted_column(
    values: Sequence[Any], kind: str, convert: Converter | None, shortcut: Shortcut | None
) -> list[str]:
    """normalise_column of the converted values, by the shortcut when it covers them.
    Raises RejectValue for a value the converter refuses."""
    if convert is None:
        return normalise_column(values, kind)
    if shortcut is not None:
        present = [v for v in values if v is not None] if None in values else values
        texts = shortcut(present)
        if texts is not None:
            if len(present) == len(values):
                return texts
            following = iter(texts).__next__
            return [NULL_MARK if v is None else following() for v in values]
    return normalise_column(list(map(convert, values)), kind)


def sum_row_hashes(columns: Sequence[Sequence[str]]) -> int:
    """The sum (mod 2**64) of row_hasher's hashes over rows given as normalised columns."""
    blake = hashlib.blake2b
    digests = b"".join(
        [
            blake(line.encode("utf-8", "surrogatepass"), digest_size=8).digest()
            for line in map(SEPARATOR.join, zip(*columns, strict=True))
        ]
    )
    return sum(struct.unpack(f"<{len(digests) // 8}Q", digests)) & MASK64


def raw_row_hasher(width: int) -> Callable[[Sequence[Any]], int]:
    """A hash of the row exactly as the source stored it; identifies rejected rows."""

    def hash_row(row: Sequence[Any]) -> int:
        text = SEPARATOR.join(NULL_MARK if v is None else repr(v) for v in row[:width])
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        return int.from_bytes(digest, "little")

    return hash_row


# ---------------------------------------------------------------- whole-column shortcuts
#
# For the commonest ways SQLite stores numbers and dates, a column's worth of raw values
# turned at once into the text of what the converter would make of them. Each one checks
# that it covers every value exactly and otherwise returns None: the caller then converts
# value by value, which also names a value the target cannot hold.

Shortcut = Callable[[Sequence[Any]], list[str] | None]


def column_shortcut(col: ColumnSpec, target: str) -> Shortcut | None:
    """Texts of the converted values as the target parses them back (the shortest exact
    form of a double, ISO dates and times), for a column whose values pass a converter."""
    kind = col.kind
    min_year = MIN_YEAR.get(target, 1)
    if kind == "float":
        return _floats
    if kind == "decimal":
        precision, scale = col.precision or 38, col.scale or 0
        if scale >= 1 and precision > scale:
            return _Decimals(precision - scale, scale)
    elif kind == "datetime" and col.epoch_unit == "s" and not col.timezone:
        return _EpochSeconds(min_year)
    elif kind in ("date", "datetime") and not col.timezone:
        return _IsoTexts(kind, min_year)
    return None


def normalised_shortcut(col: ColumnSpec, target: str) -> Shortcut | None:
    """Normalised texts (as the normalisers make them) of the converted values, built on
    column_shortcut."""
    texts = column_shortcut(col, target)
    if texts is None:
        return None
    if col.kind == "float":
        return _normal_floats
    if col.kind == "decimal":
        return lambda values: _normal_decimals(texts(values))
    if col.kind == "datetime":
        return lambda values: _with_microseconds(texts(values))
    return texts  # dates: already YYYY-MM-DD


def _floats(values: Sequence[Any]) -> list[str] | None:
    """Doubles as Python writes them (shortest exact form), integers kept in a REAL column
    as digits (the target rounds them to the same double float() does); infinity and NaN
    go to the converter, which refuses them."""
    if not set(map(type, values)) <= {float, int}:
        return None
    texts = list(map(repr, values))
    return None if "n" in "".join(texts) else texts


def _normal_floats(values: Sequence[Any]) -> list[str] | None:
    if not set(map(type, values)) <= {float, int}:
        return None
    texts = list(map(repr, map(float, values)))
    if "n" in "".join(texts):
        return None
    return ["0.0" if t == "-0.0" else t for t in texts] if "-0.0" in texts else texts


class _Decimals:
    """Numbers for a DECIMAL(p, s) whose shortest form already fits, no more than s places
    and p - s integer digits: exactly the values the converter passes unchanged or pads."""

    def __init__(self, integer_digits: int, scale: int):
        one = f"-?[0-9]{{1,{integer_digits}}}(?:\\.[0-9]{{1,{scale}}})?"
        self.pattern = re.compile(f"{one}(?:\\n{one})*")

    def __call__(self, values: Sequence[Any]) -> list[str] | None:
        if not values:
            return []
        if not set(map(type, values)) <= {float, int}:
            return None
        texts = list(map(repr, values))
        return texts if self.pattern.fullmatch("\n".join(texts)) else None


def _normal_decimals(texts: list[str] | None) -> list[str] | None:
    """_norm_decimal on plain decimal texts: no trailing zeros or point, no minus zero."""
    if texts is None:
        return None
    out = [t.rstrip("0").rstrip(".") if "." in t else t for t in texts]
    return ["0" if t in ("-0", "") else t for t in out] if "-0" in out else out


def _with_microseconds(texts: list[str] | None) -> list[str] | None:
    if texts is None:
        return None
    return [t + ".000000" if len(t) == 19 else t for t in texts]


# Width of the text -> the character each position must hold.
_ISO_SHAPES = {
    "date": {10: {4: "-", 7: "-"}},
    "datetime": {
        19: {4: "-", 7: "-", 10: " ", 13: ":", 16: ":"},
        26: {4: "-", 7: "-", 10: " ", 13: ":", 16: ":", 19: "."},
    },
}


class _IsoTexts:
    """Text dates already in ISO form (YYYY-MM-DD, optionally with HH:MM:SS and six
    fraction digits, no zone) stay as they are once they parse: the converter would turn
    them into the same value, and every target reads them back as that value."""

    def __init__(self, kind: str, min_year: int):
        self.shapes = _ISO_SHAPES[kind]
        self.parse = date.fromisoformat if kind == "date" else datetime.fromisoformat
        self.floor = f"{min_year:04d}"

    def __call__(self, values: Sequence[Any]) -> list[str] | None:
        if not values:
            return []
        try:
            widths = set(map(len, values))
        except TypeError:
            return None
        if not widths <= self.shapes.keys():
            return None
        # Whole seconds and microseconds mixed (as str(datetime) writes them): each width
        # checked on its own.
        groups = (
            [values] if len(widths) == 1 else [[v for v in values if len(v) == w] for w in widths]
        )
        if not all(map(self._fits, groups)):
            return None
        return list(values) if min(values) >= self.floor else None

    def _fits(self, values: Sequence[Any]) -> bool:
        """Texts of one width hold the separators of that width's shape and parse."""
        try:
            joined = "\n".join(values)
        except TypeError:  # not all text
            return False
        stride, n = len(values[0]) + 1, len(values)
        marks = self.shapes[stride - 1]
        if any(joined[at::stride] != mark * n for at, mark in marks.items()):
            return False
        try:
            list(map(self.parse, values))  # the calendar: no 2024-02-30, no hour 24
        except ValueError:
            return False
        return True


class _EpochSeconds:
    """Whole epoch seconds as 'YYYY-MM-DD HH:MM:SS', from a string per day and per second
    of the day instead of a datetime per value."""

    HIGH = 253_402_300_799  # 9999-12-31 23:59:59, Python's last

    def __init__(self, min_year: int):
        self.low = (date(min_year, 1, 1) - EPOCH.date()).days * 86_400
        self.days: dict[int, str] = {}

    def day(self, number: int) -> str:
        if len(self.days) > 100_000:
            self.days.clear()
        text = self.days[number] = (EPOCH.date() + timedelta(days=number)).isoformat() + " "
        return text

    def __call__(self, values: Sequence[Any]) -> list[str] | None:
        if not values:
            return []
        if set(map(type, values)) != {int} or min(values) < self.low or max(values) > self.HIGH:
            return None
        days, day, clock = self.days, self.day, _seconds_of_day()
        out = []
        append = out.append
        for number, second in map(divmod, values, repeat(86_400)):
            append((days.get(number) or day(number)) + clock[second])
        return out


_CLOCK: list[str] = []


def _seconds_of_day() -> list[str]:
    if not _CLOCK:
        _CLOCK.extend(
            f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)
        )
    return _CLOCK
