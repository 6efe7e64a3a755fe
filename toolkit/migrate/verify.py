"""Both sides compared: row counts and an order-independent checksum of normalised rows
(the sum of 64-bit row hashes), the source's rows first passed through the same
conversion as the copy, less the rows set aside in the reject file."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .plan import TablePlan
from .reflect import TableSpec, quote
from .values import MASK64, RejectValue, raw_row_hasher, row_converter, row_hasher

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
        return {
            "ok": self.ok,
            "source_rows": self.source_rows,
            "rejected": self.rejected,
            "target_rows": self.target_rows,
            "source_checksum": self.source_checksum,
            "target_checksum": self.target_checksum,
            "unconvertible": self.unconvertible,
        }


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
    the target: both sides are Python-bound (driver parsing, hashing), so two processes
    take half the time of one."""
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
    hasher = row_hasher(spec.columns)
    convert = row_converter(spec.columns, source.dialect.name, target_dialect)
    raw_hash = raw_row_hasher(len(names))
    pending = Counter(rejected_hashes or {})
    rows = rejected = unconvertible = 0
    total = 0
    for chunk in _stream(source, _select(source, spec.name, names)):
        for row in chunk:
            rows += 1
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
    hasher = row_hasher(spec.columns)
    rows = total = 0
    for chunk in _stream(target, _select(target, spec.name, [c.name for c in spec.columns])):
        for row in chunk:
            rows += 1
            total = (total + hasher(row)) & MASK64
    return rows, total


def count_rows(conn: sa.Connection, table: str) -> int:
    return conn.exec_driver_sql(f"SELECT COUNT(*) FROM {quote(conn, table)}").scalar_one()
