"""Checksums the target computes over the rows it holds, so verification never reads them back.

Each row becomes one canonical text, the same on both sides: the target builds it in SQL from
its columns and hashes it with MD5; the source side builds it in Python from the values the
copy converted, exactly as the target renders them. The checksum of a table is the sum, mod
2**64, of the first 64 bits of every row's MD5: it ignores row order, yet a changed, missing or
extra row moves it.

The canonical text of a row: its columns' texts joined by \\x1f, a NULL as `N`, text and JSON
as `<characters>:<text>` (the length keeps a \\x1f inside a value from shifting the columns),
floats on PostgreSQL as the hex of their IEEE bits (on MariaDB as the server prints them),
decimals without trailing zeros, times with six fraction digits, blobs as lowercase hex.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from .reflect import ColumnSpec, TableSpec, quote
from .values import NORMALISERS, RejectValue, _norm_text, normalise_column

NULL_TEXT = "N"
SEPARATOR = "\x1f"
MASK64 = (1 << 64) - 1
METHOD = "server checksum"


# ---------------------------------------------------------------- the target's SQL


def covers(spec: TableSpec, dialect: str, flavor: str) -> bool:
    """Whether the target can compute this table's checksum: PostgreSQL and MariaDB can for
    every kind; MySQL 8 rewrites JSON and prints doubles its own way, so those go read back."""
    if dialect == "postgresql" or (dialect == "mysql" and flavor == "mariadb"):
        return True
    if dialect == "mysql":
        return not any(c.kind in ("json", "float") for c in spec.columns)
    return False


def _mysql_column(c: ColumnSpec, q: str) -> str:
    kind = c.kind
    if kind in ("text", "json"):
        return f"CONCAT(CHAR_LENGTH({q}), ':', {q})"
    if kind == "blob":
        return f"LOWER(HEX({q}))"
    if kind == "decimal":
        text = f"CAST({q} AS CHAR)"
        if c.scale:
            text = f"TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM {text}))"
        return f"IF({q} = 0, '0', {text})"  # a stored -0.00 reads as 0
    if kind == "float":
        return f"CONCAT({q})"
    return f"CAST({q} AS CHAR)"  # int, bool (TINYINT), DATE, DATETIME(6), TIME(6)


def _pg_column(c: ColumnSpec, q: str) -> str:
    kind = c.kind
    if kind == "text":
        return f"(length({q})::text || ':' || {q})"
    if kind == "json":
        return f"(length({q}::text)::text || ':' || {q}::text)"
    if kind == "blob":
        return f"encode({q}, 'hex')"
    if kind == "bool":
        return f"CASE WHEN {q} THEN '1' WHEN NOT {q} THEN '0' END"  # NULL stays NULL
    if kind == "float":
        return f"encode(float8send({q} + 0::float8), 'hex')"  # + 0 turns -0 into 0
    if kind == "decimal":
        text = f"{q}::text"
        return (
            f"CASE WHEN {q} = 0 THEN '0' WHEN strpos({text}, '.') > 0 "
            f"THEN rtrim(rtrim({text}, '0'), '.') ELSE {text} END"
        )
    if kind == "date":
        return f"to_char({q}, 'YYYY-MM-DD')"
    if kind == "datetime":
        at = f"({q} AT TIME ZONE 'UTC')" if c.timezone else q
        return f"to_char({at}, 'YYYY-MM-DD HH24:MI:SS.US')"
    if kind == "time":
        return f"to_char({q}, 'HH24:MI:SS.US')"
    return f"{q}::text"  # int


def checksum_sql(conn: sa.Connection, spec: TableSpec, where: str = "") -> str:
    """SELECT COUNT(*), SUM(row hash) over the table (or the rows `where` picks), run
    without parameters."""
    table = quote(conn, spec.name) + where
    if conn.dialect.name == "mysql":
        # As bytes: text columns of different collations cannot be concatenated as text.
        parts = [
            f"IFNULL(CAST({_mysql_column(c, quote(conn, c.name))} AS BINARY), 'N')"
            for c in spec.columns
        ]
        row = f"CONCAT_WS(CHAR(31), {', '.join(parts)})"
        digest = f"CAST(CONV(LEFT(MD5({row}), 16), 16, 10) AS UNSIGNED)"
        return f"SELECT COUNT(*), CAST(SUM({digest}) AS CHAR) FROM {table}"
    parts = [f"coalesce({_pg_column(c, quote(conn, c.name))}, 'N')" for c in spec.columns]
    row = " || chr(31) || ".join(parts)
    digest = f"('x' || left(md5({row}), 16))::bit(64)::bigint"
    return f"SELECT count(*), sum({digest})::text FROM {table}"


# A table this big with an integer key is summed in key ranges over several connections:
# the hashing is the server's CPU work, and one query uses one core.
SPLIT_ROWS = 200_000
SPLIT_PARTS = 4


def target_checksum(engine: sa.Engine, spec: TableSpec) -> tuple[int, int]:
    """(rows, checksum) as the target computes them over what it holds."""
    key = spec.primary_key
    where = [""]
    if spec.rows >= SPLIT_ROWS and len(key) == 1 and spec.column(key[0]).kind == "int":
        with engine.connect() as conn:
            q = quote(conn, key[0])
            low, high = conn.exec_driver_sql(
                f"SELECT MIN({q}), MAX({q}) FROM {quote(conn, spec.name)}"
            ).one()
        if low is not None:
            step = (int(high) - int(low)) // SPLIT_PARTS + 1
            bounds = [int(low) + i * step for i in range(SPLIT_PARTS)]
            where = [f" WHERE {q} >= {b} AND {q} < {b + step}" for b in bounds]
    if len(where) == 1:
        return _checksum_part(engine, spec, where[0])
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(where), thread_name_prefix="mlkit-checksum") as threads:
        parts = list(threads.map(lambda w: _checksum_part(engine, spec, w), where))
    return sum(p[0] for p in parts), sum(p[1] for p in parts) & MASK64


def _checksum_part(engine: sa.Engine, spec: TableSpec, where: str) -> tuple[int, int]:
    with engine.connect() as conn:
        rows, total = conn.exec_driver_sql(checksum_sql(conn, spec, where)).one()
    return int(rows), int(Decimal(total or 0)) & MASK64


# ---------------------------------------------------------------- the source's side


def mariadb_double(x: float) -> str:
    """A double as MariaDB prints it: the shortest digits that read back as the same double
    (Python's repr has them), in fixed notation unless the point sits more than 14 places
    before the digits or more than 15 after the first with no digit to place there."""
    if x == 0:
        return "0"
    text = repr(x)
    sign = "-" if text[0] == "-" else ""
    text = text.lstrip("-")
    mantissa, _, exponent = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    if exponent:
        digits = (whole + fraction).rstrip("0")
        point = int(exponent) + 1
    elif whole != "0":
        digits = (whole + fraction).rstrip("0")
        point = len(whole)
    else:
        digits = fraction.lstrip("0")
        point = len(digits) - len(fraction)
    n = len(digits)
    if point > -15 and (point <= 15 or point < n):
        if point <= 0:
            return f"{sign}0.{'0' * -point}{digits}"
        if point >= n:
            return sign + digits + "0" * (point - n)
        return f"{sign}{digits[:point]}.{digits[point:]}"
    head = digits[0] + ("." + digits[1:] if n > 1 else "")
    return f"{sign}{head}e{point - 1}"


def _mariadb_doubles(values: Sequence[Any]) -> list[str]:
    floats = list(map(float, values))
    texts = list(map(repr, floats))
    if floats and max(map(abs, floats)) < 1e15 and "e" not in "".join(texts):
        # Below 1e15 (and from 1e-4, where repr turns to exponents) both print the
        # same digits in fixed notation, less repr's trailing ".0"; -0.0 prints as 0.
        return [("0" if t == "-0.0" else t[:-2]) if t.endswith(".0") else t for t in texts]
    return list(map(mariadb_double, floats))


def _pg_doubles(values: Sequence[Any]) -> list[str]:
    # + 0.0 turns -0.0 into 0.0, as the server's `+ 0::float8` does.
    floats = list(map((0.0).__add__, map(float, values)))
    bits = struct.pack(f">{len(floats)}d", *floats).hex()
    return [bits[i : i + 16] for i in range(0, len(bits), 16)]


def jsonb_text(value: Any) -> str:
    """JSON text as PostgreSQL's jsonb prints it: keys shortest first then by bytes, the last
    of duplicate keys kept, numbers as numeric prints them, `, ` and `: ` between items."""
    if isinstance(value, str):
        try:
            value = _JSONB_DECODER.decode(value)
        except ValueError:  # the converter's check, done by this parse
            raise RejectValue("not valid JSON") from None
    return _jsonb(value)


_JSONB_DECODER = json.JSONDecoder(parse_float=Decimal)


# A string as json.dumps(ensure_ascii=False) writes it (C), without building an encoder.
_json_string = json.encoder.encode_basestring


def _jsonb_key(key: str) -> tuple[int, bytes]:
    raw = key.encode("utf-8")
    return len(raw), raw


def _jsonb(v: Any) -> str:
    kind = type(v)
    if kind is str:
        return _json_string(v)
    if kind is dict:
        items = [f"{_json_string(k)}: {_jsonb(v[k])}" for k in sorted(v, key=_jsonb_key)]
        return "{" + ", ".join(items) + "}"
    if kind is list:
        return "[" + ", ".join(map(_jsonb, v)) + "]"
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if kind is int:
        return str(v)  # -0 parses as 0, which numeric prints too
    d = Decimal(repr(v)) if isinstance(v, float) else Decimal(v)
    return format(abs(d) if d == 0 else d, "f")


def _json_source_text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def counted(texts: Sequence[str]) -> list[str]:
    """`<length>:<text>` for each text, by C-level maps."""
    return list(map(str.__add__, map(str, map(len, texts)), map(":".__add__, texts)))


def plain_doubles(values: Sequence[Any], dialect: str) -> bool:
    """Whether a float column's values are numbers its converter would pass as they are
    (MySQL refuses infinity and NaN), so their canonical texts need no conversion first."""
    present = [v for v in values if v is not None] if None in values else values
    if not set(map(type, present)) <= {float, int}:
        return False
    return dialect != "mysql" or all(map(math.isfinite, present))


def canonical_texts(values: Sequence[Any], c: ColumnSpec, dialect: str) -> list[str]:
    """The canonical texts of a column of converted values (None for NULL) on this target."""
    present = [v for v in values if v is not None] if None in values else values
    kind = c.kind
    if kind == "text":
        texts = counted(
            present if all(type(v) is str for v in present) else list(map(_norm_text, present))
        )
    elif kind == "json":
        render = jsonb_text if dialect == "postgresql" else _json_source_text
        texts = counted(list(map(render, present)))
    elif kind == "float":
        texts = (
            (_pg_doubles if dialect == "postgresql" else _mariadb_doubles)(present)
            if present
            else []
        )
    elif kind == "bool":
        texts = ["1" if v else "0" for v in present]
    elif kind in NORMALISERS:
        texts = normalise_column(present, kind)  # int, decimal, blob, dates and times
    else:  # pragma: no cover - every kind is above
        raise ValueError(kind)
    if len(present) == len(values):
        return texts
    following = iter(texts).__next__
    return [NULL_TEXT if v is None else following() for v in values]


def sum_md5_rows(columns: Sequence[Sequence[str]]) -> int:
    """The sum (mod 2**64) of the first 64 bits, big-endian, of each row's MD5."""
    md5 = hashlib.md5
    digests = b"".join(
        [
            md5(line.encode("utf-8", "surrogatepass")).digest()
            for line in map(SEPARATOR.join, zip(*columns, strict=True))
        ]
    )
    if not digests:
        return 0
    # The first 8 of each 16 bytes, as big-endian unsigned 64-bit numbers, summed.
    heads = struct.unpack(f">{len(digests) // 8}Q", digests)[::2]
    return sum(heads) & MASK64


class RangeChecksums:
    """Targets' checksums computed while the copy goes on: a table keyed by one integer
    column is summed a key range at a time, by a thread of its own, as soon as the batches
    of the range are committed, so little is left to sum when the copy ends. The ranges run
    from no lower bound to no upper bound: together they cover every row the table holds."""

    EVERY_ROWS = 100_000

    def __init__(self, engine: sa.Engine):
        from concurrent.futures import ThreadPoolExecutor

        self.engine = engine
        self.threads = ThreadPoolExecutor(1, thread_name_prefix="mlkit-range-checksum")
        self.parts: dict[str, list] = {}
        self.open: dict[str, tuple[TableSpec, int | None, int]] = {}

    @staticmethod
    def covers(spec: TableSpec) -> bool:
        key = spec.primary_key
        return len(key) == 1 and spec.column(key[0]).kind == "int"

    def start(self, spec: TableSpec) -> None:
        self.parts[spec.name] = []
        self.open[spec.name] = (spec, None, 0)

    def committed(self, table: str, last_key: int, rows: int) -> None:
        """Rows up to `last_key` are committed: sum their range once it holds enough."""
        spec, low, pending = self.open[table]
        pending += rows
        if pending >= self.EVERY_ROWS:
            self._submit(spec, low, int(last_key))
            self.open[table] = (spec, int(last_key), 0)
        else:
            self.open[table] = (spec, low, pending)

    def copied(self, table: str) -> None:
        """The table's copy is done: sum what is left, up to no bound."""
        spec, low, _pending = self.open.pop(table)
        self._submit(spec, low, None)

    def _submit(self, spec: TableSpec, low: int | None, high: int | None) -> None:
        q = quote(self.engine, spec.primary_key[0])
        bounds = [f"{q} > {low}"] if low is not None else []
        bounds += [f"{q} <= {high}"] if high is not None else []
        where = f" WHERE {' AND '.join(bounds)}" if bounds else ""
        self.parts[spec.name].append(self.threads.submit(_checksum_part, self.engine, spec, where))

    def has(self, table: str) -> bool:
        return table in self.parts and table not in self.open

    def result(self, table: str) -> tuple[int, int]:
        parts = [f.result() for f in self.parts[table]]
        return sum(p[0] for p in parts), sum(p[1] for p in parts) & MASK64

    def close(self) -> None:
        self.threads.shutdown(wait=True, cancel_futures=True)
