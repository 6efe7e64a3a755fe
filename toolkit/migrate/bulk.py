"""The bulk loaders' text: a batch as tab-separated lines, built a column at a time, sent by
MySQL's LOAD DATA LOCAL INFILE (from a file) or PostgreSQL's COPY FROM STDIN (from memory). Both
read the same escapes; they differ in how a blob is written. Since LOAD DATA turns a refused
value into a warning, a batch with any warning or missing row is refused whole and written
again by INSERT, which names the row; COPY refuses the batch with an error.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import digest
from .plan import TablePlan
from .reflect import ColumnSpec, quote
from .values import column_shortcut, make_converter

if TYPE_CHECKING:
    from .batchsum import BatchChecksum

# Escaped the way LOAD DATA reads them back: \N for NULL, backslash escapes for backslash,
# tab, newline, carriage return and NUL; blobs go as hex through UNHEX().
NULL = "\\N"
_SPECIAL = re.compile("[\\\\\t\n\r\x00]")
# Backslash first: the other escapes add backslashes of their own.
_ESCAPE_PAIRS = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"), ("\x00", "\\0"))
_ESCAPES = str.maketrans(dict(_ESCAPE_PAIRS))
# Joins a column's texts while they are escaped as one string (when no value holds it).
_JOIN = "\x1e"
# Anything a formatter may raise on a value of an unexpected type: the batch then goes by
# INSERT, whose errors name the row.
FORMAT_ERRORS = (ValueError, TypeError, KeyError, AttributeError, OverflowError)


def _escaped(texts: list[str]) -> list[str]:
    """Every text with its special characters escaped: the whole column in one string by
    a few C-level replaces (translate with a table is a Python call per character)."""
    joined = _JOIN.join(texts)
    if joined.count(_JOIN) != len(texts) - 1:
        return [t.translate(_ESCAPES) for t in texts]
    for char, escape in _ESCAPE_PAIRS:
        joined = joined.replace(char, escape)
    return joined.split(_JOIN)


class LoadRefused(ValueError):
    """The server took the file with warnings or skipped rows: nothing of it may stay."""


def _text(v: Any) -> str:
    if type(v) is str:
        return v
    return json.dumps(v) if isinstance(v, dict | list) else str(v)


def _decimal(v: Any) -> str:
    return format(v, "f") if isinstance(v, Decimal) else float.__repr__(v)


def _datetime(v: Any) -> str:
    return v if type(v) is str else datetime.isoformat(v, " ")


def _date(v: Any) -> str:
    return v if type(v) is str else date.isoformat(v)


def _time(v: Any) -> str:
    return v if type(v) is str else time.isoformat(v)


# Kinds whose formatters write only digits, signs, points, letters or hex: nothing to escape.
_UNESCAPED_KINDS = {"int", "float", "decimal", "bool", "blob"}

# What a converted value becomes in the file, per kind; each raises on a value of another
# type rather than guess. None for text: the values are the strings themselves.
_FORMAT: dict[str, Callable[[Any], str] | None] = {
    "int": int.__repr__,
    "float": float.__repr__,
    "decimal": _decimal,
    "bool": {True: "1", False: "0"}.__getitem__,  # 0 and 1 hash as False and True
    "blob": bytes.hex,
    "date": _date,
    "datetime": _datetime,
    "time": _time,
    "text": None,
    "json": _text,
}


class TextLoad:
    """One table's bulk statement and the text of its batches: LOAD DATA on MySQL (the text
    goes through a file), COPY on PostgreSQL."""

    def __init__(self, conn, tp: TablePlan, source_dialect: str):
        columns = tp.spec.columns
        self.dialect = conn.dialect.name
        self.width = len(columns)
        self.columns = [_Column(c, source_dialect, self.dialect) for c in columns]
        self.through_file = self.dialect == "mysql"
        names = ", ".join(quote(conn, c.name) for c in columns)
        self.copy = f"COPY {quote(conn, tp.name)} ({names}) FROM STDIN"
        targets, sets = [], []
        for i, c in enumerate(columns):
            if c.kind == "blob":
                targets.append(f"@mlkit_{i}")
                sets.append(f"{quote(conn, c.name)} = UNHEX(@mlkit_{i})")
            else:
                targets.append(quote(conn, c.name))
        self.tail = (
            f" INTO TABLE {quote(conn, tp.name)} CHARACTER SET utf8mb4"
            " FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'"
            f" ({', '.join(targets)})" + (f" SET {', '.join(sets)}" if sets else "")
        )

    def statement(self, path: str) -> str:
        from pymysql.converters import escape_string  # MySQL targets only: imported here

        return f"LOAD DATA LOCAL INFILE '{escape_string(path)}'" + self.tail

    def load(self, cursor, batch: Path | bytes, rows: int) -> None:
        """A batch's file (LOAD DATA) or text (COPY) into the table; raises LoadRefused
        unless every row went in as is."""
        if isinstance(batch, Path):
            cursor.execute(self.statement(str(batch)))
        else:
            cursor.copy_expert(self.copy, io.BytesIO(batch))
        self.check(cursor, rows)

    def payload(self, rows: Sequence[Sequence[Any]], *, convert: bool) -> bytes:
        """The file for a batch. With `convert`, the source's values pass their columns'
        converters first (a RejectValue then means: convert row by row to find the row).
        Raises one of FORMAT_ERRORS for a value the formatters do not take."""
        return self._build(rows, convert, None)[0]

    def payload_summed(
        self, rows: Sequence[Sequence[Any]], checksum: BatchChecksum
    ) -> tuple[bytes, int]:
        """The file for a batch of the source's values (as payload with `convert`), and the
        batch's source checksum, mostly from the same texts."""
        return self._build(rows, True, checksum)

    def _build(self, rows, convert: bool, checksum: BatchChecksum | None) -> tuple[bytes, int]:
        if not rows:
            return b"", 0
        columns = list(zip(*rows, strict=True)) if self.width > 1 else [[r[0] for r in rows]]
        if len(columns) != self.width:
            raise ValueError("rows of another width than the table")
        texts = []
        canonical = []
        for i, (c, values) in enumerate(zip(self.columns, columns, strict=True)):
            escaped, plain = c.texts(values, convert)
            texts.append(escaped)
            if checksum is not None:
                canonical.append(checksum.column(i, values, plain))
        body = "\n".join(map("\t".join, zip(*texts, strict=True)))
        summed = digest.sum_md5_rows(canonical) if checksum is not None else 0
        return (body + "\n").encode("utf-8"), summed

    def check(self, cursor, rows: int) -> None:
        """Every row arrived and nothing was cut, rounded or refused on the way."""
        if self.dialect == "postgresql":
            if cursor.rowcount != rows:
                raise LoadRefused(f"COPY took {cursor.rowcount} of {rows} rows")
            return
        if cursor.warning_count or cursor.rowcount != rows:
            cursor.execute("SHOW WARNINGS LIMIT 1")
            first = cursor.fetchone()
            why = f": {first[2]} ({first[1]})" if first else ""
            raise LoadRefused(
                f"LOAD DATA took {cursor.rowcount} of {rows} rows with "
                f"{cursor.warning_count} warning(s){why}"
            )


class _Column:
    """One column's way into the file: the converter the copy uses everywhere, then a
    formatter, or (for the commonest SQLite storage) one shortcut that does both for a whole
    column and gives up, returning None, on anything it does not cover exactly."""

    def __init__(self, spec: ColumnSpec, source_dialect: str, target_dialect: str):
        self.fmt = _FORMAT.get(spec.kind, _text)
        # bytea's hex form on PostgreSQL, its backslash written escaped (blobs are hex
        # everywhere, under UNHEX() on MySQL).
        self.prefix = "\\\\x" if spec.kind == "blob" and target_dialect == "postgresql" else ""
        self.escape = spec.kind not in _UNESCAPED_KINDS
        self.convert = make_converter(spec, source_dialect, target_dialect)
        # Only raw source values have a shortcut: they are what the converter would take.
        self.shortcut = column_shortcut(spec, target_dialect) if self.convert is not None else None

    def texts(self, values: Sequence[Any], convert: bool) -> tuple[list[str], Sequence[str]]:
        """(the column's texts for the file, NULL as \\N; the texts of the values that are not
        NULL before escaping)."""
        present = [v for v in values if v is not None] if None in values else values
        texts = None
        if convert and self.shortcut is not None:
            texts = self.shortcut(present)
        plain = texts
        if texts is None:
            if convert and self.convert is not None:
                present = list(map(self.convert, present))
            texts = plain = present if self.fmt is None else list(map(self.fmt, present))
            # One scan of the whole column decides whether any value needs escaping;
            # joining also proves every value is a string.
            if self.escape and _SPECIAL.search("".join(texts)):
                texts = _escaped(texts)
            if self.prefix:
                texts = [self.prefix + t for t in texts]
        if len(present) == len(values):
            return (texts if isinstance(texts, list) else list(texts)), plain
        following = iter(texts).__next__
        return [NULL if v is None else following() for v in values], plain
