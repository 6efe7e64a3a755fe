"""Batches of a big SQLite table read and formatted by forked worker processes, a key range
each, while this process loads the finished ones in key order: reading rows into Python and
building the LOAD DATA/COPY text (with the batch's source checksum) is CPU work one
interpreter does on one core, and it was what held the copy back.

Only for a table keyed by one integer column: its key splits into ranges up front, so the
workers need not wait for each other's last key. The batches still commit one at a time in
key order with their resume points, exactly as the sequential copy commits them. A batch a
worker cannot format whole (a value its converter refuses, or one no formatter takes) is
read again here and goes the sequential copy's way, which names the row.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any

from .bulk import FORMAT_ERRORS
from .reflect import quote
from .values import RejectValue

if TYPE_CHECKING:
    from .copier import _Batch, _TableJob

# Tables with fewer rows, or fewer than two batches, go the sequential way: forking costs
# more than it saves.
PARALLEL_ROWS = 20_000
MAX_WORKERS = 4

# What forked workers inherit: the table's job and the source engine, set just before the
# fork (a worker opens a connection of its own on first use).
_shared: dict[str, Any] = {}


def usable(job: _TableJob, source_dialect: str, start: list[Any] | None) -> bool:
    """Whether this table's copy can go by key ranges in worker processes."""
    spec = job.tp.spec
    key = spec.primary_key
    if not (
        start is None
        and source_dialect == "sqlite"
        and job.writer.bulk is not None
        and spec.rows >= max(PARALLEL_ROWS, 2 * job.tp.batch_rows)
        and len(key) == 1
        and spec.key == key
        and spec.column(key[0]).kind == "int"
        and (os.cpu_count() or 1) > 1
    ):
        return False
    import multiprocessing  # only for a table that may use it

    return "fork" in multiprocessing.get_all_start_methods()


def key_ranges(sconn, table: str, key: str, rows: int, batch_rows: int) -> list[tuple[int, int]]:
    """Inclusive key ranges of about `batch_rows` rows each, covering every key."""
    t, k = quote(sconn, table), quote(sconn, key)
    driver = sconn.connection.driver_connection
    low, high = driver.execute(f"SELECT MIN({k}), MAX({k}) FROM {t}").fetchone()
    if low is None:
        return []
    if high - low < 2 * max(rows, 1):
        # Dense keys: ranges by value hold at most batch_rows rows each.
        bounds = list(range(low + batch_rows - 1, high, batch_rows))
    else:
        # Sparse keys: every batch_rows-th key, counted by SQLite in one scan of the key.
        bounds = [
            b
            for (b,) in driver.execute(
                f"SELECT {k} FROM (SELECT {k}, row_number() OVER (ORDER BY {k}) AS n "
                f"FROM {t}) WHERE n % {int(batch_rows)} = 0"
            )
        ]
    driver.rollback()
    starts = [low] + [b + 1 for b in bounds]
    ends = [*bounds, high]
    return [(s, e) for s, e in zip(starts, ends, strict=True) if s <= e]


def range_sql(sconn, job: _TableJob) -> str:
    spec = job.tp.spec
    cols = ", ".join(quote(sconn, c.name) for c in spec.columns)
    k = quote(sconn, spec.primary_key[0])
    return f"SELECT {cols} FROM {quote(sconn, spec.name)} WHERE {k} BETWEEN ? AND ? ORDER BY {k}"


def _rows(connection, sql: str, bounds: tuple[int, int]) -> list[tuple]:
    cursor = connection.execute(sql, bounds)
    rows = cursor.fetchall()
    connection.rollback()  # no snapshot held between batches
    return rows


def _worker_start() -> None:
    _die_with_parent()
    # The parent's pooled connections are the parent's: this process opens its own.
    _shared["source"].dispose(close=False)
    _shared["connection"] = _shared["source"].raw_connection().driver_connection


def _die_with_parent() -> None:
    """A worker ends with the migration even when that is killed outright (-9): it would
    otherwise wait for work forever (Linux; elsewhere the pool's own cleanup only)."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != _shared["parent"]:  # the parent died before the call
        os._exit(1)


def _produce(bounds: tuple[int, int]) -> tuple:
    """In a worker: (bounds, rows, last key, the file's path or COPY's bytes or None when
    the batch must go the sequential way, its source checksum or None)."""
    job: _TableJob = _shared["job"]
    rows = _rows(_shared["connection"], _shared["sql"], bounds)
    if not rows:
        return bounds, 0, None, None, None
    last = [rows[-1][_shared["key_at"]]]
    bulk = job.writer.bulk
    try:
        if job.checksum is not None:
            data, checksum = bulk.payload_summed(rows, job.checksum)
        else:
            data, checksum = bulk.payload(rows, convert=True), None
    except (RejectValue, *FORMAT_ERRORS):
        return bounds, len(rows), last, None, None
    if not bulk.through_file:
        return bounds, len(rows), last, data, checksum
    path = job.folder / f"range-{bounds[0]}.tsv"
    path.write_bytes(data)
    return bounds, len(rows), last, path, checksum


def batches(sconn, source_engine, job: _TableJob) -> Iterator[_Batch]:
    """The table's batches in key order, formatted by worker processes ahead of the loads."""
    from .copier import _Batch

    spec = job.tp.spec
    key = spec.primary_key[0]
    ranges = key_ranges(sconn, spec.name, key, spec.rows, job.tp.batch_rows)
    if not ranges:
        return
    sql = range_sql(sconn, job)
    key_at = [c.name for c in spec.columns].index(key)
    workers = max(2, min(MAX_WORKERS, os.cpu_count() or 2, len(ranges)))
    _shared.update(job=job, source=source_engine, sql=sql, key_at=key_at, parent=os.getpid())
    import multiprocessing

    context = multiprocessing.get_context("fork")
    pool = context.Pool(workers, initializer=_worker_start)
    try:
        driver = sconn.connection.driver_connection
        # A few ranges in flight: the workers stay busy, yet memory holds a few batches.
        ahead = iter(ranges)
        pending = deque(pool.apply_async(_produce, (r,)) for r in islice(ahead, 2 * workers))
        while pending:
            bounds, count, last, payload, checksum = pending.popleft().get()
            following = next(ahead, None)
            if following is not None:
                pending.append(pool.apply_async(_produce, (following,)))
            if not count:
                continue
            if payload is None:
                rows = _rows(driver, sql, bounds)
                yield job.prepare(rows, [[r[key_at]] for r in rows], last)
                continue

            def reload(bounds=bounds) -> tuple[list[tuple], list[list[Any]]]:
                rows = _rows(driver, sql, bounds)
                return rows, [[r[key_at]] for r in rows]

            yield _Batch(
                None, None, last, file=payload, file_rows=count, checksum=checksum, reload=reload
            )
    finally:
        pool.terminate()
        pool.join()
        _shared.clear()
