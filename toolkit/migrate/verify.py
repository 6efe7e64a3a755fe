"""Both sides compared: row counts and an order-independent checksum of normalised rows
(the sum of 64-bit row hashes), the source's rows first passed through the same
conversion as the copy, less the rows set aside in the reject file. PostgreSQL and MariaDB
compute their side themselves (digest.py); elsewhere, or with --read-back, the target's rows
are read back and hashed here."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, fields

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from . import digest
from .plan import TablePlan, TargetInfo
from .reflect import ColumnSpec, TableSpec, quote
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
    sum_row_hashes,
)

FETCH_ROWS = 5000


@dataclass
class TableCheck:
    table: str
    method: str  # "server checksum": computed by the target; "read back": rows hashed here
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


READ_BACK = "read back"


def table_method(spec: TableSpec, target: TargetInfo, read_back: bool) -> str:
    """How a table is verified: by the target's own checksum where it can compute one."""
    if not read_back and digest.covers(spec, target.dialect, target.flavor):
        return digest.METHOD
    return READ_BACK


class Verification:
    """Both sides' checksums. The source's come from the copy itself where it summed them
    as it wrote (`summed` in finish); for the other tables they are computed in a forked
    process that starts before the copy and runs beside it (the source is only read). The
    target's come after the copy, computed by the target itself in parallel over a
    connection per table, or read back and hashed here where it cannot."""

    def __init__(
        self,
        source_text: str,
        source: Engine,
        target: TargetInfo,
        plans: list[TablePlan],
        *,
        read_back: bool,
        summed: set[str] | frozenset[str] = frozenset(),
    ):
        self.source_text = source_text
        self.plans = plans
        self.dialect = target.dialect
        self.methods = {p.name: table_method(p.spec, target, read_back) for p in plans}
        self.early = {}
        self.pool = None
        reread = [p for p in plans if p.name not in summed]
        if not reread:
            return
        import multiprocessing

        source.dispose()  # no pooled connection crosses the fork
        try:
            context = multiprocessing.get_context("fork")
        except ValueError:  # pragma: no cover - platforms without fork
            return
        self.pool = context.Pool(1)
        self.early = {
            p.name: self.pool.apply_async(
                _source_side, (source_text, p.spec, self.dialect, self.methods[p.name], None)
            )
            for p in reread
        }

    def close(self) -> None:
        """Stop the source side (a failed copy needs it no more)."""
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None

    def finish(
        self,
        target: Engine,
        rejected: dict[str, Counter],
        summed: dict[str, tuple[int, int, int]] | None = None,
        ranges: digest.RangeChecksums | None = None,
    ) -> list[TableCheck]:
        """`summed`: the source side the copy computed, per table: (rows read, rows
        rejected, checksum of the rows written); `ranges`: target checksums the copy had
        the target compute meanwhile."""
        from concurrent.futures import ThreadPoolExecutor

        summed = summed or {}

        try:
            workers = max(1, min(4, len(self.plans)))
            with ThreadPoolExecutor(workers, thread_name_prefix="mlkit-verify") as threads:
                targets = [
                    threads.submit(ranges.result, p.name)
                    if ranges is not None and ranges.has(p.name)
                    else threads.submit(_target_side, target, p, self.methods[p.name])
                    for p in self.plans
                ]
                sides = [
                    (*summed[p.name][:2], 0, summed[p.name][2])
                    if p.name in summed
                    else self._source(p, rejected.get(p.name) or Counter())
                    for p in self.plans
                ]
                return [
                    _combine(p, self.methods[p.name], side, t.result())
                    for p, side, t in zip(self.plans, sides, targets, strict=True)
                ]
        finally:
            self.close()

    def _source(self, plan: TablePlan, in_file: Counter) -> tuple[int, int, int, int]:
        method = self.methods[plan.name]
        early = self.early.get(plan.name)
        if early is not None:
            rows, _, _, total, failed = early.get()
            if not in_file - failed:
                # Every row in the reject file failed conversion here too: those not in it
                # are rows the copy lost.
                rejected = sum((failed & in_file).values())
                return rows, rejected, sum((failed - in_file).values()), total
        # The target refused rows the converters let through: sum again without them.
        rows, rejected, unconvertible, total, _ = _source_side(
            self.source_text, plan.spec, self.dialect, method, in_file
        )
        return rows, rejected, unconvertible, total


def _combine(plan: TablePlan, method: str, side: tuple, target: tuple) -> TableCheck:
    source_rows, rejected, unconvertible, source_sum = side
    target_rows, target_sum = target
    return TableCheck(
        plan.spec.name,
        method,
        source_rows,
        rejected,
        target_rows,
        f"{source_sum:016x}",
        f"{target_sum:016x}",
        unconvertible,
    )


def column_texts(c: ColumnSpec, source: str, target: str, method: str) -> Callable:
    """A column of source values to the texts the method hashes; raises RejectValue."""
    convert = make_converter(c, source, target)
    if method == digest.METHOD and c.kind in ("float", "text", "json", "bool"):
        # Texts bound for jsonb are parsed by jsonb_text, which refuses what the converter
        # would; doubles the converter would pass as they are need it no more.
        jsonb = c.kind == "json" and target == "postgresql"

        def canonical(values):
            if (
                convert is None
                or (jsonb and all(type(v) is str for v in values if v is not None))
                or (c.kind == "float" and digest.plain_doubles(values, target))
            ):
                return digest.canonical_texts(values, c, target)
            return digest.canonical_texts(list(map(convert, values)), c, target)

        return canonical
    shortcut = normalised_shortcut(c, target)
    if method == READ_BACK:
        return lambda values: converted_column(values, c.kind, convert, shortcut)

    def normalised(values):
        # The normalised form is the canonical one for these kinds but for NULL's mark.
        texts = converted_column(values, c.kind, convert, shortcut)
        if None not in values:
            return texts
        return [digest.NULL_TEXT if v is None else t for v, t in zip(values, texts, strict=True)]

    return normalised


def _source_side(
    source_text: str,
    spec: TableSpec,
    target_dialect: str,
    method: str,
    pending_hashes: Counter | None,
) -> tuple[int, int, int, int, Counter]:
    """(rows, rows skipped as in the reject file, rows failing conversion, checksum, raw
    hashes of the rows failing conversion)."""
    from .plan import open_source

    source = open_source(source_text)
    names = [c.name for c in spec.columns]
    dialect = source.dialect.name
    texts_of = [column_texts(c, dialect, target_dialect, method) for c in spec.columns]
    convert = row_converter(spec.columns, dialect, target_dialect)
    sum_rows = digest.sum_md5_rows if method == digest.METHOD else sum_row_hashes
    raw_hash = raw_row_hasher(len(names))
    pending = Counter(pending_hashes or {})
    failed: Counter = Counter()
    rows = rejected = 0
    total = 0
    for chunk in _chunks(source, _select(source, spec.name, names)):
        rows += len(chunk)
        if not pending:
            # The common case a batch at a time; a value that fails its conversion sends
            # the batch through the row loop below, which counts it.
            try:
                texts = [
                    fn(col) for fn, col in zip(texts_of, zip(*chunk, strict=True), strict=True)
                ]
            except RejectValue:
                pass
            else:
                total = (total + sum_rows(texts)) & MASK64
                continue
        good = []
        for row in chunk:
            if pending:
                h = raw_hash(row)
                if pending[h] > 0:
                    pending[h] -= 1
                    rejected += 1
                    continue
            if convert is not None:
                try:
                    convert(row)
                except RejectValue:
                    failed[raw_hash(row)] += 1
                    continue
            good.append(row)
        if good:
            texts = [fn(col) for fn, col in zip(texts_of, zip(*good, strict=True), strict=True)]
            total = (total + sum_rows(texts)) & MASK64
    source.dispose()
    return rows, rejected, sum(failed.values()), total, failed


def _target_side(target: Engine, plan: TablePlan, method: str) -> tuple[int, int]:
    spec = plan.spec
    if method == digest.METHOD:
        return digest.target_checksum(target, spec)
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
