"""The copy of each table in keyset pages, each batch committed with its resume point, so a crash
loses at most the batch in flight; a table without a primary key pages by SQLite's rowid, else is
copied in one transaction.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as time_of_day
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from ..db import explain_db_error, masked
from ..errors import MlkitError, message_line
from ..formats import json_safe
from ..schema import migration_progress
from . import producers
from .bulk import FORMAT_ERRORS
from .plan import TablePlan, TargetInfo
from .reflect import quote
from .rejects import RejectLog, reject_entry
from .values import RejectValue, fewer_collections, raw_row_hasher, row_converter
from .writer import Writer

if TYPE_CHECKING:
    from .batchsum import BatchChecksum
    from .digest import RangeChecksums
    from .run import TableResult

# MySQL errors that are about a value, not the connection: bad datetime, failed CHECK
# (MariaDB's JSON), invalid JSON (MySQL 8), out of range.
MYSQL_VALUE_ERRORS = {1292, 1367, 1411, 1690, 3140, 4025}
# A refused batch is written again in INSERTs of this many rows, and a refused INSERT row
# by row: one bad value costs a few thousand statements, not one per row of a big batch.
FALLBACK_ROWS = 1000

Progress = Callable[[str, int, int | None], None]


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def target_error(exc: DBAPIError, engine: Engine, what: str) -> MlkitError:
    """The target's error for people: a read-only target said so, anything else explained."""
    text = str(exc.orig).lower()
    if any(s in text for s in ("read-only", "read only", "readonly", "denied", "permission")):
        first = str(exc.orig).strip().splitlines()[0]
        if engine.url.password:
            first = first.replace(str(engine.url.password), "***")
        return MlkitError(
            f"the target {masked(engine)} is read-only: {first}",
            hint="use a database and user that can create tables and insert rows",
        )
    explained = explain_db_error(exc, engine.url)
    return MlkitError(f"{what}: {explained.message}", hint=explained.hint)


@dataclass
class _Batch:
    rows: Sequence[Sequence[Any]] | None  # as the source stored them (None: not read here)
    keys: list[list[Any]] | None  # each row's key, for the reject file
    last: list[Any] | None  # the resume point once this batch is committed
    good: list[tuple] | None = None  # converted rows, once converted row by row
    good_at: list[int] = field(default_factory=list)  # their positions in `rows`
    rejects: list[tuple[int, str]] = field(default_factory=list)
    file: Path | bytes | None = None  # the bulk text: LOAD DATA's file, or COPY's bytes
    file_rows: int = 0
    checksum: int | None = None  # the source checksum of all its rows, made with the file
    # Reads the rows (and keys) of a batch formatted elsewhere, when they are needed here.
    reload: Callable[[], tuple[list[tuple], list[list[Any]]]] | None = None

    @property
    def count(self) -> int:
        return len(self.rows) if self.rows is not None else self.file_rows

    def ensure_rows(self) -> None:
        if self.rows is None and self.reload is not None:
            self.rows, self.keys = self.reload()


class _TableJob:
    """One table's copy: its writer and converters, and a folder for LOAD DATA files."""

    def __init__(
        self, copier: Copier, tconn, tp: TablePlan, folder: Path, checksum: BatchChecksum | None
    ):
        source_dialect = copier.source.dialect.name
        self.tp = tp
        self.writer = Writer(tconn, tp, copier.info, source_dialect)
        # The source side of verification, summed as the batches go in (bulk loads only).
        self.checksum = checksum if self.writer.bulk is not None else None
        self.convert = row_converter(tp.spec.columns, source_dialect, copier.info.dialect)
        self.raw_hash = raw_row_hasher(len(tp.spec.columns))
        self.folder = folder
        self.files = 0

    def convert_rows(self, batch: _Batch) -> None:
        if batch.good is not None:  # done already
            return
        if self.convert is None:
            batch.good, batch.good_at = [tuple(r) for r in batch.rows], list(range(len(batch.rows)))
            return
        batch.good, batch.good_at = [], []
        for i, row in enumerate(batch.rows):
            try:
                batch.good.append(self.convert(row))
                batch.good_at.append(i)
            except RejectValue as exc:
                batch.rejects.append((i, str(exc)))

    def summed(self, batch: _Batch, written: int) -> None:
        """Add a written batch to the table's source checksum: the one made with its file
        when every row went in, else the rows that did, from their values."""
        if self.checksum is None:
            return
        total = batch.checksum
        if total is None or written != batch.count:
            batch.ensure_rows()
            left = {i for i, _reason in batch.rejects}
            total = self.checksum.of_rows([r for i, r in enumerate(batch.rows) if i not in left])
        self.checksum.add(batch.count, total)

    def prepare(self, rows, keys, last) -> _Batch:
        """Convert a batch; for LOAD DATA and COPY also build its text (in a file for LOAD
        DATA). Column by column first; a
        value that fails there sends the batch through the row-by-row conversion, which
        names it."""
        batch = _Batch(rows, keys, last)
        bulk = self.writer.bulk
        if bulk is None:
            self.convert_rows(batch)
            return batch
        try:
            if self.checksum is not None:
                data, batch.checksum = bulk.payload_summed(rows, self.checksum)
            else:
                data = bulk.payload(rows, convert=True)
            batch.file_rows = len(rows)
        except RejectValue:
            self.convert_rows(batch)
            try:
                data = bulk.payload(batch.good, convert=False)
            except FORMAT_ERRORS:
                return batch
            batch.file_rows = len(batch.good)
        except FORMAT_ERRORS:
            return batch  # goes by INSERT, converted when written
        if batch.file_rows and not bulk.through_file:
            batch.file = data
        elif batch.file_rows:
            self.files += 1
            batch.file = self.folder / f"batch-{self.files}.tsv"
            batch.file.write_bytes(data)
        elif batch.good is None:
            self.convert_rows(batch)
        return batch


_END = object()
LOAD_FOLDER = "mlkit-load-"  # + pid: a run killed with -9 cannot remove its folder itself


def _sweep_load_folders() -> None:
    """Remove LOAD DATA folders left by runs that were killed (their process is gone)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{LOAD_FOLDER}*-*"):
        pid = folder.name[len(LOAD_FOLDER) :].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # alive, or another user's: not ours to remove
            continue


def _prefetched(items: Iterator[Any], depth: int = 1) -> Iterator[Any]:
    """`items` produced in a thread, up to `depth` ahead of the consumer: reading and
    formatting the next batch overlaps the target's work on this one (the driver waits on
    its socket without the GIL). The producer stops when the consumer does."""
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                handoff.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_END, None))
        except BaseException as exc:  # handed to the consumer, which raises it
            put((_END, exc))

    worker = threading.Thread(target=run, name="mlkit-migrate-read", daemon=True)
    worker.start()
    try:
        while True:
            item, error = handoff.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        worker.join()


@dataclass
class ResumePoints:
    """This migration's rows in migration_progress: a table's status, rows copied and the
    key of its last committed row."""

    mid: str
    source_label: str

    def read(self, engine: Engine) -> dict[str, dict]:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(migration_progress).where(self._mine())).mappings()
            return {r["table_name"]: dict(r) for r in rows}

    def forget(self, conn: sa.Connection, tables: list[str]) -> None:
        conn.execute(
            migration_progress.delete().where(
                self._mine(), migration_progress.c.table_name.in_(tables)
            )
        )

    def save(self, conn: sa.Connection, tp: TablePlan, **values: Any) -> None:
        values["updated_at"] = now_utc()
        where = self._mine() & (migration_progress.c.table_name == tp.name)
        done = conn.execute(migration_progress.update().where(where).values(**values))
        if done.rowcount == 0:
            conn.execute(
                migration_progress.insert().values(
                    migration_id=self.mid,
                    table_name=tp.name,
                    source_url=self.source_label[:512],
                    rows_total=tp.spec.rows,
                    **{"rows_copied": 0, "status": "copying", **values},
                )
            )

    def _mine(self):
        return migration_progress.c.migration_id == self.mid


class Copier:
    """Copies a table at a time, committing each batch with its resume point."""

    def __init__(
        self,
        source: Engine,
        target: Engine,
        info: TargetInfo,
        points: ResumePoints,
        on_error: str,
        rejects: RejectLog,
        progress: Progress,
    ):
        self.source = source
        self.target = target
        self.info = info
        self.points = points
        self.rejects = rejects
        self.progress = progress
        self.batches = BatchWriter(target, info, on_error, rejects)

    def copy(
        self,
        tp: TablePlan,
        state: dict | None,
        result: TableResult,
        checksum: BatchChecksum | None = None,
        ranges: RangeChecksums | None = None,
    ) -> None:
        """Copy one table; with `checksum`, the copy also sums the source side of its
        verification (a table copied from its start: a resumed copy would miss batches);
        with `ranges`, the target sums its committed key ranges meanwhile."""
        _sweep_load_folders()
        try:
            with (
                fewer_collections(),
                self.source.connect() as sconn,
                self.target.connect() as tconn,
                tempfile.TemporaryDirectory(prefix=f"{LOAD_FOLDER}{os.getpid()}-") as folder,
            ):
                restore = _load_session(tconn)
                try:
                    job = _TableJob(self, tconn, tp, Path(folder), checksum)
                    result.writer = job.writer.method
                    if tp.strategy == "keyset":
                        self._copy_keyset(sconn, tconn, job, state, result, ranges)
                    else:
                        self._copy_single(sconn, tconn, job, result)
                finally:
                    if tconn.in_transaction():
                        tconn.rollback()
                    restore()
        except DBAPIError as exc:
            raise target_error(exc, self.target, f"{tp.name}: copy failed") from None
        except self.batches.driver_error as exc:
            if isinstance(exc, self.source.dialect.dbapi.Error):
                raise MlkitError(f"{tp.name}: copy failed: {exc}") from None
            first = message_line(exc)
            raise MlkitError(f"{tp.name}: the target failed: {first}") from None

    def _copy_keyset(
        self, sconn, tconn, job: _TableJob, state, result: TableResult, ranges
    ) -> None:
        tp = job.tp
        spec = tp.spec
        start = None
        copied = 0
        if state and state["status"] != "done":
            start = _decode_key(state["last_key"]) if state["last_key"] else None
            copied = state["rows_copied"] or 0
            result.status = "resumed"
        else:
            self.rejects.clear(spec.name)
            result.status = "copied"
            with tconn.begin():
                self.points.save(tconn, tp, status="copying", last_key=None, rows_copied=0)
        done = copied + self.rejects.count(spec.name)
        if producers.usable(job, self.source.dialect.name, start):
            batches = producers.batches(sconn, self.source, job)
        else:
            batches = _prefetched(_keyset_batches(sconn, job, start))
        for batch in batches:
            with tconn.begin():
                written, rejected = self.batches.write(job, batch)
                copied += written
                # One statement for the resume point, committed with the batch it follows.
                last_key = _encode_key(batch.last)
                self.points.save(tconn, tp, status="copying", last_key=last_key, rows_copied=copied)
            job.summed(batch, written)
            if ranges is not None:
                ranges.committed(tp.name, batch.last[0], written)
            done += written + rejected
            result.copied = copied
            self.progress(spec.name, done, spec.rows)
        with tconn.begin():
            self.points.save(tconn, tp, status="done", rows_copied=copied)
        if ranges is not None:
            ranges.copied(tp.name)
        result.copied = copied

    def _copy_single(self, sconn, tconn, job: _TableJob, result: TableResult) -> None:
        tp = job.tp
        spec = tp.spec
        columns = [c.name for c in spec.columns]
        self.rejects.clear(spec.name)
        cols = ", ".join(quote(sconn, c) for c in columns)
        copied = done = 0
        with tconn.begin():
            self.points.save(tconn, tp, status="copying", last_key=None, rows_copied=0)
            tconn.exec_driver_sql(f"DELETE FROM {quote(tconn, spec.name)}")
            stream = sconn.execution_options(stream_results=True).exec_driver_sql(
                f"SELECT {cols} FROM {quote(sconn, spec.name)}"
            )
            while rows := stream.fetchmany(tp.batch_rows):
                batch = job.prepare(rows, None, None)
                written, rejected = self.batches.write(job, batch)
                job.summed(batch, written)
                copied += written
                done += written + rejected
                self.progress(spec.name, done, spec.rows)
            stream.close()
            self.points.save(tconn, tp, status="done", rows_copied=copied)
        result.status = "copied"
        result.copied = copied


def _keyset_batches(sconn, job: _TableJob, start: list[Any] | None) -> Iterator[_Batch]:
    """Source pages after `start`, converted and (for LOAD DATA) written out: this runs in a
    thread, one batch ahead of the target's writes."""
    tp = job.tp
    spec = tp.spec
    key = spec.key
    rowid = spec.rowid if key == [spec.rowid] else None
    selected = ([rowid] if rowid else []) + [c.name for c in spec.columns]
    key_at = [selected.index(k) for k in key]
    offset = 1 if rowid else 0
    first_sql, next_sql = _page_queries(sconn, spec.name, selected, key, tp.batch_rows)
    last = start
    # The driver's own cursor: plain tuples, no per-row wrapping.
    reader = sconn.connection.driver_connection.cursor()
    while True:
        if last is None:
            reader.execute(first_sql)
        else:
            reader.execute(next_sql, _key_params(last))
        rows = reader.fetchall()
        sconn.connection.driver_connection.rollback()  # no snapshot between batches
        if not rows:
            return
        last = [rows[-1][i] for i in key_at]
        data = [r[offset:] for r in rows] if offset else rows
        keys = [[r[i] for i in key_at] for r in rows]
        yield job.prepare(data, keys, last)


class BatchWriter:
    """One batch into the target inside the caller's transaction. A batch the target refuses
    is written again in small INSERTs, and an INSERT it refuses row by row, to name the rows
    at fault: they fail the run, or go to the reject file with `--on-error skip`."""

    def __init__(self, target: Engine, info: TargetInfo, on_error: str, rejects: RejectLog):
        self.info = info
        self.on_error = on_error
        self.rejects = rejects
        dbapi = target.dialect.dbapi
        self.data_errors = (dbapi.DataError, dbapi.IntegrityError)
        self.driver_error = dbapi.Error
        self.write_errors = (dbapi.Error, ValueError, TypeError)

    def write(self, job: _TableJob, batch: _Batch) -> tuple[int, int]:
        """(rows written, rows rejected)."""
        tp, writer = job.tp, job.writer
        if batch.file is None:
            job.convert_rows(batch)  # a no-op when prepare() converted it
        self._check_rejects(tp, batch)
        cursor = writer.cursor()
        cursor.execute("SAVEPOINT mlkit_batch")
        try:
            if batch.file is not None:
                try:
                    writer.load(cursor, batch.file, batch.file_rows)
                finally:
                    if isinstance(batch.file, Path):
                        batch.file.unlink(missing_ok=True)
                written = batch.file_rows
            else:
                writer.write_batch(cursor, batch.good)
                written = len(batch.good)
            cursor.execute("RELEASE SAVEPOINT mlkit_batch")
        except self.write_errors as batch_error:
            if not self._is_value_error(batch_error):
                raise
            cursor.execute("ROLLBACK TO SAVEPOINT mlkit_batch")
            batch.ensure_rows()
            if batch.good is None:  # the file came from the raw rows
                job.convert_rows(batch)
                self._check_rejects(tp, batch)
            written = self._write_slowly(tp, writer, cursor, batch)
        if batch.rejects:
            self._reject(job, batch)
        return written, len(batch.rejects)

    def _write_slowly(self, tp: TablePlan, writer: Writer, cursor, batch: _Batch) -> int:
        written = 0
        for at in range(0, len(batch.good), FALLBACK_ROWS):
            chunk = batch.good[at : at + FALLBACK_ROWS]
            cursor.execute("SAVEPOINT mlkit_chunk")
            try:
                writer.write_batch(cursor, chunk)
                cursor.execute("RELEASE SAVEPOINT mlkit_chunk")
                written += len(chunk)
                continue
            except self.write_errors as chunk_error:
                if not self._is_value_error(chunk_error):
                    raise
                cursor.execute("ROLLBACK TO SAVEPOINT mlkit_chunk")
            for row, i in zip(chunk, batch.good_at[at : at + FALLBACK_ROWS], strict=True):
                cursor.execute("SAVEPOINT mlkit_row")
                try:
                    writer.write_row(cursor, row)
                    cursor.execute("RELEASE SAVEPOINT mlkit_row")
                    written += 1
                except self.write_errors as exc:
                    if not self._is_value_error(exc):
                        raise
                    cursor.execute("ROLLBACK TO SAVEPOINT mlkit_row")
                    reason = _error_text(exc)
                    if self.on_error == "fail":
                        raise _refused(tp, batch, i, reason) from exc
                    batch.rejects.append((i, reason))
        return written

    def _check_rejects(self, tp: TablePlan, batch: _Batch) -> None:
        if batch.rejects and self.on_error == "fail":
            raise _refused(tp, batch, *batch.rejects[0])

    def _reject(self, job: _TableJob, batch: _Batch) -> None:
        names = [c.name for c in job.tp.spec.columns]
        entries = []
        for i, reason in sorted(batch.rejects):
            row, key = batch.rows[i], batch.keys[i] if batch.keys else None
            entries.append(reject_entry(job.tp.name, names, row, key, reason, job.raw_hash(row)))
        self.rejects.add(job.tp.name, entries)

    def _is_value_error(self, exc: Exception) -> bool:
        if isinstance(exc, (*self.data_errors, ValueError, TypeError)):
            return True
        return bool(self.info.dialect == "mysql" and exc.args and exc.args[0] in MYSQL_VALUE_ERRORS)


def _refused(tp: TablePlan, batch: _Batch, i: int, reason: str) -> MlkitError:
    """The error for a row the target cannot hold, named by its key when it has one."""
    key = batch.keys[i] if batch.keys else None
    where = f"row {json.dumps([json_safe(v, exact=True) for v in key])}" if key else "a row"
    return MlkitError(
        f"{tp.name}: {where} cannot go into the target: {reason}",
        hint="fix the value in the source, or --on-error skip to set such rows aside in a "
        "reject file (then --resume)",
    )


def _error_text(exc: Exception) -> str:
    args = getattr(exc, "args", ())
    if len(args) == 2 and isinstance(args[0], int):  # PyMySQL: (code, message)
        return f"{args[1]} ({args[0]})"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _load_session(conn: sa.Connection) -> Callable[[], None]:
    """Foreign-key checks off (and strict values on MySQL) for the load; returns the undo."""
    dialect = conn.dialect.name
    if dialect == "mysql":
        checks = conn.exec_driver_sql("SELECT @@SESSION.foreign_key_checks").scalar()
        conn.exec_driver_sql("SET SESSION foreign_key_checks = 0")
        # Strict: a value that does not fit is an error, never silently cut or zeroed; an
        # id 0 stays 0 instead of drawing the next AUTO_INCREMENT; backslash escapes on.
        conn.exec_driver_sql(
            "SET SESSION sql_mode = "
            "'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO'"
        )
        conn.exec_driver_sql("SET SESSION time_zone = '+00:00'")
        # Notes count as warnings too, so LOAD DATA's check sees a rounded decimal (a server
        # without the variable is fine: the converters refuse extra places anyway).
        with suppress(DBAPIError):
            conn.exec_driver_sql("SET SESSION sql_notes = 1")
        conn.commit()

        def restore() -> None:
            conn.exec_driver_sql(f"SET SESSION foreign_key_checks = {int(checks)}")
            conn.commit()

        return restore
    if dialect == "postgresql":
        # Triggers (and so foreign-key checks) off needs superuser; without it, parents are
        # loaded first anyway and the foreign keys come after the data.
        replica = True
        try:
            with conn.begin_nested() if conn.in_transaction() else conn.begin():
                conn.exec_driver_sql("SET session_replication_role = replica")
        except DBAPIError:
            replica = False
        conn.exec_driver_sql("SET synchronous_commit = off")
        conn.commit()

        def restore_pg() -> None:
            if replica:
                conn.exec_driver_sql("SET session_replication_role = DEFAULT")
            conn.exec_driver_sql("SET synchronous_commit = DEFAULT")
            conn.commit()

        return restore_pg
    conn.exec_driver_sql("PRAGMA foreign_keys = OFF")
    conn.commit()

    def restore_sqlite() -> None:
        conn.exec_driver_sql("PRAGMA foreign_keys = ON")
        conn.commit()

    return restore_sqlite


def _page_queries(conn, table: str, selected: list[str], key: list[str], limit: int):
    """Keyset pages: the first page, and the page after a given key (by row comparison
    spelled out, which every dialect plans as a range scan)."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"

    def q(name: str) -> str:
        quoted = quote(conn, name)
        # Only the query with parameters goes through the driver's % formatting.
        return quoted if mark == "?" else quoted.replace("%", "%%")

    cols = ", ".join(q(c) for c in selected)
    order = ", ".join(q(k) for k in key)
    base = f"SELECT {cols} FROM {q(table)}"
    first = f"{base} ORDER BY {order} LIMIT {int(limit)}".replace("%%", "%")
    ors = []
    for i in range(len(key)):
        parts = [f"{q(k)} = {mark}" for k in key[:i]] + [f"{q(key[i])} > {mark}"]
        ors.append("(" + " AND ".join(parts) + ")")
    following = f"{base} WHERE {' OR '.join(ors)} ORDER BY {order} LIMIT {int(limit)}"
    return first, following


def _key_params(last: list[Any]) -> tuple:
    params: list[Any] = []
    for i in range(len(last)):
        params.extend(last[: i + 1])
    return tuple(params)


def _encode_key(values: list[Any]) -> str:
    def one(v: Any) -> Any:
        if isinstance(v, bytes | bytearray | memoryview):
            return {"hex": bytes(v).hex()}
        if isinstance(v, datetime):
            return {"datetime": v.isoformat()}
        if isinstance(v, date):
            return {"date": v.isoformat()}
        if isinstance(v, time_of_day):
            return {"time": v.isoformat()}
        if isinstance(v, Decimal):
            return {"decimal": str(v)}
        return v

    text = json.dumps([one(v) for v in values], ensure_ascii=False)
    if len(text) > 255:
        raise MlkitError("a primary key value is too long to record as the resume point")
    return text


def _decode_key(text: str) -> list[Any]:
    def one(v: Any) -> Any:
        if isinstance(v, dict):
            ((kind, value),) = v.items()
            return {
                "hex": bytes.fromhex,
                "datetime": datetime.fromisoformat,
                "date": date.fromisoformat,
                "time": time_of_day.fromisoformat,
                "decimal": Decimal,
            }[kind](value)
        return v

    return [one(v) for v in json.loads(text)]
