"""Both sides compared: row counts and an order-independent checksum of normalised rows
(the sum of 64-bit row hashes), the source's rows first passed through the same
conversion as the copy, less the rows set aside in the reject file."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, fields

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .plan import TablePlan
from .reflect import TableSpec, quote
from .values import (
    MASK64,
    RejectValue,
    converted_column,
    fewer_collections,
    make_converter,
    normalise_column,
    normalised_shortcut,
    raw_row_hasher,
    row_converter,
    row_hasher,
    sum_row_hashes,
)

FETCH_ROWS = 5000


@dataclass
class TableCheck:
    table: str
    source_rows: int
    rejected: int
    target_rows: int
    source_checksum: str
    target_checksum: str
    unconvertible: int = 0  # source rows that fail conversion yet are not in the reject file

    @property
    def ok(self) -> bool:
        return (
            self.source_rows - self.rejected == self.target_rows
            and self.source_checksum == self.target_checksum
            and not self.unconvertible
        )

    def document(self) -> dict:
        """Every field but the table's name (the table's document holds it), `ok` first."""
        return {"ok": self.ok} | {f.name: getattr(self, f.name) for f in fields(self)[1:]}


def _stream(engine: Engine, sql: str):
    """Rows in chunks from a server-side cursor (SQLite's cursor streams by itself)."""
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True).exec_driver_sql(sql)
        while chunk := result.fetchmany(FETCH_ROWS):
            yield chunk


def _select(engine: Engine, table: str, columns: list[str]) -> str:
    cols = ", ".join(quote(engine, c) for c in columns)
    return f"SELECT {cols} FROM {quote(engine, table)}"  # run without parameters: % stays %


def check_tables(
    source_text: str,
    source: Engine,
    target: Engine,
    plans: list[TablePlan],
    rejected: dict[str, Counter],
) -> list[TableCheck]:
    """Every table's check. The source side runs in a forked process while this one reads
    the target, as both sides are Python-bound (driver parsing, hashing)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    target_dialect = target.dialect.name
    source.dispose()  # no pooled connection crosses the fork
    try:
        context = multiprocessing.get_context("fork")
    except ValueError:  # pragma: no cover - platforms without fork
        context = None
    if context is None:
        sides = [
            _source_side(source_text, p.spec, target_dialect, rejected.get(p.name)) for p in plans
        ]
        return [
            _combine(p, side, _target_side(target, p)) for p, side in zip(plans, sides, strict=True)
        ]
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        futures = [
            pool.submit(_source_side, source_text, p.spec, target_dialect, rejected.get(p.name))
            for p in plans
        ]
        targets = [_target_side(target, p) for p in plans]
        sides = [f.result() for f in futures]
    return [_combine(p, s, tg) for p, s, tg in zip(plans, sides, targets, strict=True)]


def _combine(plan: TablePlan, side: tuple, target: tuple) -> TableCheck:
    source_rows, rejected, unconvertible, source_sum = side
    target_rows, target_sum = target
    return TableCheck(
        plan.spec.name,
        source_rows,
        rejected,
        target_rows,
        f"{source_sum:016x}",
        f"{target_sum:016x}",
        unconvertible,
    )


def _source_side(
    source_text: str, spec: TableSpec, target_dialect: str, rejected_hashes: Counter | None
) -> tuple[int, int, int, int]:
    from .plan import open_source

    source = open_source(source_text)
    names = [c.name for c in spec.columns]
    kinds = [c.kind for c in spec.columns]
    hasher = row_hasher(spec.columns)
    convert = row_converter(spec.columns, source.dialect.name, target_dialect)
    converters = [make_converter(c, source.dialect.name, target_dialect) for c in spec.columns]
    shortcuts = [normalised_shortcut(c, target_dialect) for c in spec.columns]
    raw_hash = raw_row_hasher(len(names))
    pending = Counter(rejected_hashes or {})
    rows = rejected = unconvertible = 0
    total = 0
    for chunk in _chunks(source, _select(source, spec.name, names)):
        rows += len(chunk)
        if not pending:
            # The common case a batch at a time; a value that fails its conversion sends
            # the batch through the row loop below, which counts it.
            try:
                columns = zip(zip(*chunk, strict=True), kinds, converters, shortcuts, strict=True)
                texts = [converted_column(*column) for column in columns]
            except RejectValue:
                pass
            else:
                total = (total + sum_row_hashes(texts)) & MASK64
                continue
        for row in chunk:
            if pending:
                h = raw_hash(row)
                if pending[h] > 0:
                    pending[h] -= 1
                    rejected += 1
                    continue
            if convert is not None:
                try:
                    row = convert(row)
                except RejectValue:
                    unconvertible += 1
                    continue
            total = (total + hasher(row)) & MASK64
    source.dispose()
    return rows, rejected, unconvertible, total


def _target_side(target: Engine, plan: TablePlan) -> tuple[int, int]:
    spec = plan.spec
    if target.dialect.name == "mysql" and target.dialect.driver == "pymysql":
        return _mysql_target_side(target, spec)
    kinds = [c.kind for c in spec.columns]
    rows = total = 0
    for chunk in _chunks(target, _select(target, spec.name, [c.name for c in spec.columns])):
        rows += len(chunk)
        texts = [
            normalise_column(c, k) for c, k in zip(zip(*chunk, strict=True), kinds, strict=True)
        ]
        total = (total + sum_row_hashes(texts)) & MASK64
    return rows, total


def _mysql_target_side(target: Engine, spec: TableSpec) -> tuple[int, int]:
    """MySQL's rows as the text the server sends, skipping PyMySQL's slow Python-level
    decoding: text already in normalised form is hashed as it is, any other value decoded
    as PyMySQL would and normalised."""
    from pymysql.converters import decoders
    from pymysql.cursors import SSCursor

    kinds = [c.kind for c in spec.columns]
    sql = _select(target, spec.name, [c.name for c in spec.columns])
    rows = total = 0
    raw = target.raw_connection()
    driver = raw.driver_connection
    saved = driver.decoders
    driver.decoders = {}  # every value arrives as the server's text (bytes for binary)
    try:
        cursor = driver.cursor(SSCursor)
        cursor.execute(sql)
        decode = [decoders.get(d[1]) for d in cursor.description]
        with fewer_collections():
            while chunk := cursor.fetchmany(FETCH_ROWS):
                rows += len(chunk)
                columns = zip(zip(*chunk, strict=True), kinds, decode, strict=True)
                texts = [_mysql_texts(col, kind, fn) for col, kind, fn in columns]
                total = (total + sum_row_hashes(texts)) & MASK64
        cursor.close()
    finally:
        driver.decoders = saved
        raw.close()
    return rows, total


def _lines(one: str) -> re.Pattern:
    return re.compile(f"{one}(?:\n{one})*")


# Texts MySQL sends that are already what the normaliser makes of the decoded value.
_MYSQL_NORMAL = {
    "int": _lines("-?(?:0|[1-9][0-9]*)"),
    "date": _lines("[0-9]{4}-[0-9]{2}-[0-9]{2}"),
    "datetime": _lines("[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}"),
}


def _mysql_texts(values: tuple, kind: str, decode) -> list[str]:
    pattern = _MYSQL_NORMAL.get(kind)
    if pattern is not None and values and None not in values:
        try:
            joined = "\n".join(values)
        except TypeError:  # bytes: a binary column
            joined = None
        if joined is not None and pattern.fullmatch(joined):
            return list(values)
    if kind == "float" and decode is float:
        # float() of the text is PyMySQL's own decoding; normalise_column does the rest.
        return normalise_column([None if v is None else float(v) for v in values], kind)
    if decode is not None:
        values = [None if v is None else decode(v) for v in values]
    return normalise_column(values, kind)


def _chunks(engine: Engine, sql: str):
    """Rows in chunks, with the collector held back; SQLite's own cursor streams by
    itself and skips SQLAlchemy's row objects."""
    with fewer_collections():
        if engine.dialect.name == "sqlite":
            with engine.connect() as conn:
                cursor = conn.connection.driver_connection.cursor()
                cursor.execute(sql)
                while chunk := cursor.fetchmany(FETCH_ROWS):
                    yield chunk
                cursor.close()
        else:
            yield from _stream(engine, sql)


def count_rows(conn: sa.Connection, table: str) -> int:
    return conn.exec_driver_sql(f"SELECT COUNT(*) FROM {quote(conn, table)}").scalar_one()
