"""Rows into the target by its fastest path: PostgreSQL COPY, MySQL LOAD DATA LOCAL INFILE
or multi-row INSERTs of literals, SQLite executemany; each value written as the target
reads it back."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from .bulk import TextLoad
from .plan import TablePlan, TargetInfo
from .reflect import quote

# Below MariaDB's default max_allowed_packet (16 MiB) even when every character is 4 bytes.
MYSQL_STATEMENT_CHARS = 2_000_000


class Writer:
    """Batches into the target by its fastest path; single rows for finding bad ones."""

    def __init__(self, conn: sa.Connection, tp: TablePlan, info: TargetInfo, source: str):
        self.conn = conn
        self.dialect = info.dialect
        self.bulk = TextLoad(conn, tp, source) if info.bulk_text else None
        names = [c.name for c in tp.spec.columns]
        q = lambda n: quote(conn, n)  # noqa: E731
        self.table = q(tp.name)
        cols = ", ".join(q(n) for n in names)
        if self.dialect == "sqlite":
            self.insert = (
                f"INSERT INTO {self.table} ({cols}) VALUES ({', '.join('?' * len(names))})"
            )
        else:
            marks = ", ".join(["%s"] * len(names))
            # The driver formats % in a query with parameters: escape it in identifiers.
            escaped = f"{self.table} ({cols})".replace("%", "%%")
            self.insert = f"INSERT INTO {escaped} VALUES ({marks})"
        self.copy_sql = f"COPY {self.table} ({cols}) FROM STDIN"
        self.values_sql = f"INSERT INTO {self.table} ({cols}) VALUES "
        if self.dialect == "postgresql":
            self.formatters = [_COPY_FORMAT.get(c.kind, _copy_text) for c in tp.spec.columns]
        elif self.dialect == "mysql":
            self.formatters = [_MYSQL_LITERAL.get(c.kind, _mysql_text) for c in tp.spec.columns]

    @property
    def method(self) -> str:
        if self.bulk is not None and self.dialect == "mysql":
            return "LOAD DATA LOCAL INFILE"
        return {"postgresql": "COPY", "mysql": "multi-row INSERT"}.get(self.dialect, "executemany")

    def cursor(self):
        return self.conn.connection.driver_connection.cursor()

    def write_batch(self, cursor, rows: list[tuple]) -> None:
        if not rows:
            return
        if self.dialect == "postgresql":
            fmts = self.formatters
            lines = [
                "\t".join(["\\N" if v is None else f(v) for f, v in zip(fmts, row, strict=True)])
                for row in rows
            ]
            buffer = io.StringIO("\n".join(lines) + "\n")
            cursor.copy_expert(self.copy_sql, buffer)
        elif self.dialect == "mysql":
            # Multi-row INSERTs written as literals by a formatter per column type: several
            # times faster than the driver's generic per-value escaping.
            fmts = self.formatters
            parts: list[str] = []
            size = 0
            for row in rows:
                text = (
                    "("
                    + ",".join(
                        ["NULL" if v is None else f(v) for f, v in zip(fmts, row, strict=True)]
                    )
                    + ")"
                )
                parts.append(text)
                size += len(text)
                if size > MYSQL_STATEMENT_CHARS:
                    cursor.execute(self.values_sql + ",".join(parts))
                    parts, size = [], 0
            if parts:
                cursor.execute(self.values_sql + ",".join(parts))
        else:
            cursor.executemany(self.insert, rows)

    def load(self, cursor, batch: Path | bytes, rows: int) -> None:
        """A batch's file (LOAD DATA) or text (COPY); raises LoadRefused unless every row
        went in as is."""
        self.bulk.load(cursor, batch, rows)

    def write_row(self, cursor, row: tuple) -> None:
        if self.dialect == "mysql":
            self.write_batch(cursor, [row])
        else:
            cursor.execute(self.insert, row)


def _mysql_text(v: Any) -> str:
    if not isinstance(v, str):
        v = json.dumps(v) if isinstance(v, dict | list) else str(v)
    return "'" + _escape_string()(v) + "'"


def _escape_string() -> Callable[[str], str]:
    """PyMySQL's escaping, imported on a MySQL target's first INSERT, not at start-up."""
    from pymysql.converters import escape_string

    return escape_string


def _mysql_quoted(v: Any) -> str:
    return "'" + v.isoformat() + "'" if not isinstance(v, str) else _mysql_text(v)


def _mysql_decimal(v: Any) -> str:
    return format(v, "f") if isinstance(v, Decimal) else repr(v)


_MYSQL_LITERAL: dict[str, Callable[[Any], str]] = {
    "int": str,
    "float": repr,
    "decimal": _mysql_decimal,
    "bool": lambda v: "1" if v else "0",
    "blob": lambda v: "X'" + bytes(v).hex() + "'",
    "date": _mysql_quoted,
    "datetime": _mysql_quoted,
    "time": _mysql_quoted,
    "text": _mysql_text,
    "json": _mysql_text,
}
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(v: Any) -> str:
    if not isinstance(v, str):
        v = json.dumps(v) if isinstance(v, dict | list) else str(v)
    return v.translate(_COPY_ESCAPES)


def _copy_float(v: Any) -> str:
    f = float(v)
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "Infinity" if f > 0 else "-Infinity"
    return repr(f)


def _copy_bytes(v: Any) -> str:
    return "\\\\x" + bytes(v).hex()


def _copy_temporal(v: Any) -> str:
    return v.isoformat() if not isinstance(v, str) else v


_COPY_FORMAT: dict[str, Callable[[Any], str]] = {
    "int": str,
    "float": _copy_float,
    "decimal": str,
    "bool": lambda v: "t" if v else "f",
    "blob": _copy_bytes,
    "date": _copy_temporal,
    "datetime": _copy_temporal,
    "time": _copy_temporal,
    "text": _copy_text,
    "json": _copy_text,
}
