"""The copy: tables created on the target without their indexes and foreign keys, rows
streamed from the source a batch at a time (keyset pages, so memory stays flat) and
written by the target's fastest path (PostgreSQL COPY, MySQL LOAD DATA LOCAL INFILE or else
multi-row INSERT, SQLite executemany), each batch committed together with its resume point
in migration_progress. The next batch is read and formatted in a thread while the target
works on this one. A crash loses at most the batch in flight; --resume continues after the
last commit.

Tables without a primary key page by SQLite's rowid; from other sources they are copied
in one transaction, so a crash leaves them empty and --resume copies them again."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import queue
import shutil
import tempfile
import threading
import time as clock
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as time_of_day
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pymysql.converters import escape_string
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import AddConstraint, CreateIndex, CreateTable

from ..db import explain_db_error, masked
from ..errors import MlkitError
from ..schema import migration_progress
from .bulk import FORMAT_ERRORS, MysqlLoad
from .plan import (
    PROGRESS_TABLE,
    Plan,
    TablePlan,
    TargetInfo,
    build_plan,
    open_source,
    open_target,
    plan_document,
    source_url,
)
from .reflect import quote
from .values import RejectValue, fewer_collections, json_safe, raw_row_hasher, row_converter
from .verify import check_tables, count_rows

# MySQL errors that are about a value, not the connection: bad datetime, failed CHECK
# (MariaDB's JSON), invalid JSON (MySQL 8), out of range.
MYSQL_VALUE_ERRORS = {1292, 1367, 1411, 1690, 3140, 4025}
# A refused batch is written again in INSERTs of this many rows, and a refused INSERT row
# by row: one bad value costs a few thousand statements, not one per row of a big batch.
FALLBACK_ROWS = 1000

Progress = Callable[[str, int, int | None], None]


@dataclass
class MigrationOptions:
    source: str
    target: str
    tables: list[str] | None = None
    exclude: list[str] | None = None
    batch_size: int | None = None  # None: default_batch_size, or bigger for LOAD DATA
    default_batch_size: int = 1000
    dry_run: bool = False
    resume: bool = False
    replace: bool = False
    verify: bool = True
    on_error: str = "fail"  # fail | skip
    reject_file: Path | None = None


@dataclass
class TableResult:
    table: str
    rows: int
    strategy: str
    copied: int = 0
    rejected: int = 0
    status: str = "pending"  # copied | resumed | already done | planned
    seconds: float = 0.0
    batches: int = 0
    writer: str | None = None  # how rows went in: LOAD DATA, INSERT, COPY, executemany
    ddl: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    verify: dict | None = None

    def document(self) -> dict:
        doc = {
            "table": self.table,
            "rows": self.rows,
            "strategy": self.strategy,
            "batches": self.batches,
            "writer": self.writer,
            "status": self.status,
            "copied": self.copied,
            "rejected": self.rejected,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.copied / self.seconds) if self.seconds else None,
            "notes": self.notes,
        }
        if self.ddl:
            doc["ddl"] = self.ddl
        if self.verify is not None:
            doc["verify"] = self.verify
        return doc


@dataclass
class MigrationReport:
    migration_id: str
    source: str
    target: str
    source_dialect: str
    target_dialect: str
    dry_run: bool
    tables: list[TableResult]
    views: list[str] = field(default_factory=list)
    skipped_tables: list[str] = field(default_factory=list)
    database_created: bool = False
    reject_file: str | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems and not self.mismatched

    def document(self) -> dict:
        return {
            "migration_id": self.migration_id,
            "source": self.source,
            "target": self.target,
            "source_dialect": self.source_dialect,
            "target_dialect": self.target_dialect,
            "dry_run": self.dry_run,
            "database_created": self.database_created,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "rows_copied": sum(t.copied for t in self.tables),
            "rows_rejected": sum(t.rejected for t in self.tables),
            "reject_file": self.reject_file,
            "views_not_copied": self.views,
            "tables_not_copied": self.skipped_tables,
            "mismatched_tables": self.mismatched,
            "problems": self.problems,
            "notes": self.notes,
            "tables": [t.document() for t in self.tables],
        }


def migration_id(source: str, target: str) -> str:
    """The same source and target give the same id, which is how --resume finds its rows."""
    text = f"{masked(source_url(source))}\n{masked(target)}"
    return hashlib.sha1(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- the run


def migrate(
    options: MigrationOptions,
    *,
    on_progress: Progress | None = None,
    log: Callable[[str], None] | None = None,
) -> MigrationReport:
    started = clock.perf_counter()
    say = log or (lambda _text: None)
    progress = on_progress or (lambda _label, _done, _total: None)
    if options.resume and options.replace:
        raise MlkitError("--resume and --replace contradict each other", hint="choose one")
    if options.on_error not in ("fail", "skip"):
        raise MlkitError(f"--on-error {options.on_error!r}", hint="use fail or skip")
    if (options.batch_size or options.default_batch_size) < 1:
        raise MlkitError("--batch-size must be at least 1")
    source = open_source(options.source)
    if masked(source_url(options.source)) == masked(options.target):
        raise MlkitError("source and target are the same database")
    target = open_target(options.target, create=False)
    plan = build_plan(
        source,
        target,
        tables=options.tables,
        exclude=options.exclude,
        batch_size=options.batch_size,
        default_batch_size=options.default_batch_size,
    )
    mid = migration_id(options.source, options.target)
    report = MigrationReport(
        mid,
        masked(source.url)
        if source.dialect.name != "sqlite"
        else masked(source_url(options.source)),
        masked(target.url),
        plan.source_dialect,
        target.dialect,
        options.dry_run,
        [],
        views=plan.views,
        skipped_tables=plan.skipped,
        database_created=not target.exists and not options.dry_run,
    )
    if options.dry_run:
        _dry_run(plan, report)
        report.seconds = clock.perf_counter() - started
        return report
    if target.engine is None:
        # Only now, with a plan that holds, does a missing target database get created.
        target = plan.target = open_target(options.target, create=True)
    engine = target.engine
    _check_writable(engine)
    states = _progress_states(engine, mid)
    existing = _prepare_tables(engine, plan, states, options, mid)
    rejects = RejectLog(options.reject_file or Path(f"mlkit-migrate-{mid}-rejects.jsonl"))
    copier = Copier(source, engine, target, mid, report.source, options, rejects, progress)
    for tp in plan.tables:
        result = TableResult(tp.name, tp.spec.rows, tp.strategy, batches=tp.batches)
        result.notes = list(tp.notes)
        report.tables.append(result)
        state = states.get(tp.name)
        if options.resume and state and state["status"] == "done":
            result.status = "already done"
            result.copied = state["rows_copied"] or 0
        else:
            say(f"{tp.name}: copying {tp.spec.rows:,} rows")
            t0 = clock.perf_counter()
            copier.copy(tp, state if options.resume else None, result)
            result.seconds = clock.perf_counter() - t0
        result.rejected = rejects.count(tp.name)
        report.problems += _finish_table(engine, tp, existing.get(tp.name, set()))
    report.problems += _add_foreign_keys(engine, plan)
    if rejects.written:
        report.reject_file = str(rejects.path)
    if options.verify:
        say("verifying: row counts and checksums on both sides")
        checks = check_tables(
            options.source,
            source,
            engine,
            plan.tables,
            {tp.name: rejects.hashes(tp.name) for tp in plan.tables},
        )
        for check, result in zip(checks, report.tables, strict=True):
            result.verify = check.document()
            if not check.ok:
                report.mismatched.append(check.table)
    source.dispose()
    engine.dispose()
    report.seconds = clock.perf_counter() - started
    return report


def _dry_run(plan: Plan, report: MigrationReport) -> None:
    """The plan with what the target holds today; reads only."""
    docs = plan_document(plan)
    existing: dict[str, int] = {}
    engine = plan.target.engine
    if engine is not None:
        with engine.connect() as conn:
            names = set(sa.inspect(conn).get_table_names())
            for tp in plan.tables:
                if tp.name in names:
                    existing[tp.name] = count_rows(conn, tp.name)
    for tp, doc in zip(plan.tables, docs, strict=True):
        result = TableResult(tp.name, doc["rows"], tp.strategy, status="planned")
        result.batches, result.ddl, result.notes = doc["batches"], doc["ddl"], list(doc["notes"])
        if tp.name in existing:
            rows = existing[tp.name]
            result.notes.append(
                f"target table exists with {rows:,} rows: "
                + ("refused without --resume or --replace" if rows else "rows go into it")
            )
        report.tables.append(result)
    if engine is None:
        report.notes.append("the target database does not exist yet: the run creates it")


def _check_writable(engine: Engine) -> None:
    """Create the progress table (or write to it and roll back): a read-only target fails
    here, before anything else is written."""
    try:
        with engine.begin() as conn:
            migration_progress.create(conn, checkfirst=True)
        with engine.connect() as conn:
            trans = conn.begin()
            conn.execute(
                migration_progress.insert().values(
                    migration_id="write-probe",
                    table_name="write-probe",
                    source_url="",
                    status="probe",
                    rows_copied=0,
                    updated_at=_now(),
                )
            )
            trans.rollback()
    except DBAPIError as exc:
        raise _target_error(exc, engine, "cannot write to the target") from None


def _target_error(exc: DBAPIError, engine: Engine, what: str) -> MlkitError:
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


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _progress_states(engine: Engine, mid: str) -> dict[str, dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(migration_progress).where(migration_progress.c.migration_id == mid)
        ).mappings()
        return {r["table_name"]: dict(r) for r in rows}


def _prepare_tables(
    engine: Engine, plan: Plan, states: dict[str, dict], options: MigrationOptions, mid: str
) -> dict[str, set[str]]:
    """Refuse non-empty tables this migration did not fill, drop them with --replace, and
    create the missing ones. Returns each existing table's index names."""
    with engine.connect() as conn:
        names = set(sa.inspect(conn).get_table_names())
        counts = {tp.name: count_rows(conn, tp.name) for tp in plan.tables if tp.name in names}
    conflicts = []
    for tp in plan.tables:
        rows = counts.get(tp.name, 0)
        state = states.get(tp.name)
        if not rows or options.replace:
            continue
        if options.resume and state:
            continue
        if state and state["status"] != "done":
            conflicts.append(
                f"{tp.name} ({rows:,} rows; an interrupted migration copied "
                f"{state['rows_copied']:,} of {tp.spec.rows:,})"
            )
        else:
            conflicts.append(f"{tp.name} ({rows:,} rows)")
    if conflicts:
        raise MlkitError(
            "target tables are not empty: " + ", ".join(conflicts),
            hint="--resume continues an interrupted migration; --replace drops and copies again",
        )
    try:
        with engine.begin() as conn:
            if options.replace:
                _drop_tables(conn, [tp for tp in reversed(plan.tables) if tp.name in names])
                names -= {tp.name for tp in plan.tables}
            if not options.resume:
                # A fresh start for these tables: forget earlier runs' resume points.
                conn.execute(
                    migration_progress.delete().where(
                        migration_progress.c.migration_id == mid,
                        migration_progress.c.table_name.in_([tp.name for tp in plan.tables]),
                    )
                )
                states.clear()
        existing: dict[str, set[str]] = {}
        for tp in plan.tables:
            if tp.name in names:
                existing[tp.name] = _check_columns(engine, tp)
                continue
            inline = None if plan.target.dialect == "sqlite" else []
            create = CreateTable(tp.table, include_foreign_key_constraints=inline)
            with engine.begin() as conn:
                conn.execute(create)
            existing[tp.name] = set()
        return existing
    except DBAPIError as exc:
        raise _target_error(exc, engine, "cannot create the target tables") from None


def _drop_tables(conn: sa.Connection, plans: list[TablePlan]) -> None:
    dialect = conn.dialect.name
    if dialect == "mysql":
        conn.exec_driver_sql("SET SESSION foreign_key_checks = 0")
    for tp in plans:
        cascade = " CASCADE" if dialect == "postgresql" else ""
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {quote(conn, tp.name)}{cascade}")
    if dialect == "mysql":
        conn.exec_driver_sql("SET SESSION foreign_key_checks = 1")


def _check_columns(engine: Engine, tp: TablePlan) -> set[str]:
    """An existing target table must have every source column; returns its index names."""
    inspector = sa.inspect(engine)
    have = {c["name"] for c in inspector.get_columns(tp.name)}
    missing = [c.name for c in tp.spec.columns if c.name not in have]
    if missing:
        raise MlkitError(
            f"target table {tp.name} exists without column(s) {', '.join(missing)}",
            hint="--replace drops it and creates it from the source",
        )
    names = {ix["name"] for ix in inspector.get_indexes(tp.name)}
    names |= {uc["name"] for uc in inspector.get_unique_constraints(tp.name) if uc.get("name")}
    return names


def _finish_table(engine: Engine, tp: TablePlan, existing_indexes: set[str]) -> list[str]:
    """Indexes after the data (one sorted build beats maintaining them row by row), then
    autoincrement moved past the copied ids."""
    problems = []
    for index in tp.indexes:
        if index.name in existing_indexes:
            continue
        try:
            with engine.begin() as conn:
                conn.execute(CreateIndex(index))
        except DBAPIError as exc:
            problems.append(f"{tp.name}: index {index.name} not created: {_first_line(exc)}")
    try:
        _continue_ids(engine, tp)
    except DBAPIError as exc:
        problems.append(f"{tp.name}: autoincrement not moved past the ids: {_first_line(exc)}")
    return problems


def _first_line(exc: DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)


def _continue_ids(engine: Engine, tp: TablePlan) -> None:
    auto = [c for c in tp.spec.columns if c.autoincrement and tp.spec.primary_key == [c.name]]
    if not auto:
        return
    column = auto[0].name
    floor = tp.spec.sqlite_sequence or 0
    with engine.begin() as conn:
        q = lambda n: quote(conn, n)  # noqa: E731
        top = conn.exec_driver_sql(f"SELECT MAX({q(column)}) FROM {q(tp.name)}").scalar() or 0
        following = max(int(top), int(floor)) + 1
        if conn.dialect.name == "postgresql":
            sequence = conn.execute(
                sa.text("SELECT pg_get_serial_sequence(:t, :c)"),
                {"t": q(tp.name), "c": column},
            ).scalar()
            if sequence:
                conn.execute(
                    sa.text("SELECT setval(:s, :v, false)"), {"s": sequence, "v": following}
                )
        elif conn.dialect.name == "mysql" and floor > top:
            conn.exec_driver_sql(f"ALTER TABLE {q(tp.name)} AUTO_INCREMENT = {following}")


def _add_foreign_keys(engine: Engine, plan: Plan) -> list[str]:
    """Foreign keys once every table holds its rows; the target checks them as it adds them."""
    problems = []
    for tp in plan.tables:
        if not tp.foreign_keys:
            continue
        have = {fk.get("name") for fk in sa.inspect(engine).get_foreign_keys(tp.name)}
        for fk in tp.foreign_keys:
            if fk.name in have:
                continue
            try:
                with engine.begin() as conn:
                    conn.execute(AddConstraint(fk))
            except DBAPIError as exc:
                problems.append(f"{tp.name}: foreign key {fk.name} not added: {_first_line(exc)}")
    return problems


# ---------------------------------------------------------------- rejects


class RejectLog:
    """Rows the target cannot hold, one JSON line each. Lines are written before their
    batch commits, so a crash may repeat a line; readers keep one per key."""

    def __init__(self, path: Path):
        self.path = path
        self.written = False
        self._entries: dict[str, list[dict]] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    entry = json.loads(line)
                    self._entries.setdefault(entry["table"], []).append(entry)
            self.written = bool(self._entries)

    def clear(self, table: str) -> None:
        if self._entries.pop(table, None) is not None:
            self._rewrite()

    def _rewrite(self) -> None:
        lines = [json.dumps(e) for entries in self._entries.values() for e in entries]
        self.path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")

    def add(self, table: str, entries: list[dict]) -> None:
        if not entries:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            for entry in entries:
                handle.write(json.dumps(entry) + "\n")
            handle.flush()
        self._entries.setdefault(table, []).extend(entries)
        self.written = True

    def _unique(self, table: str) -> list[dict]:
        seen: set[str] = set()
        out = []
        for entry in self._entries.get(table, []):
            if entry.get("key") is not None:
                marker = json.dumps(entry["key"])
                if marker in seen:
                    continue
                seen.add(marker)
            out.append(entry)
        return out

    def count(self, table: str) -> int:
        return len(self._unique(table))

    def hashes(self, table: str) -> Counter:
        return Counter(e["raw_hash"] for e in self._unique(table))


# ---------------------------------------------------------------- writers


@dataclass
class _Batch:
    rows: Sequence[Sequence[Any]]  # as the source stored them
    keys: list[list[Any]] | None  # each row's key, for the reject file
    last: list[Any] | None  # the resume point once this batch is committed
    good: list[tuple] | None = None  # converted rows, once converted row by row
    good_at: list[int] = field(default_factory=list)  # their positions in `rows`
    rejects: list[tuple[int, str]] = field(default_factory=list)
    file: Path | None = None  # LOAD DATA's file for this batch
    file_rows: int = 0


class _TableJob:
    """One table's copy: its writer and converters, and a folder for LOAD DATA files."""

    def __init__(self, copier: Copier, tconn, tp: TablePlan, folder: Path):
        source_dialect = copier.source.dialect.name
        self.tp = tp
        self.writer = Writer(tconn, tp, copier.info, source_dialect)
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

    def prepare(self, rows, keys, last) -> _Batch:
        """Convert a batch; for LOAD DATA also write its file. Column by column first; a
        value that fails there sends the batch through the row-by-row conversion, which
        names it."""
        batch = _Batch(rows, keys, last)
        bulk = self.writer.bulk
        if bulk is None:
            self.convert_rows(batch)
            return batch
        try:
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
        if batch.file_rows:
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


class Copier:
    def __init__(
        self,
        source: Engine,
        target: Engine,
        info: TargetInfo,
        mid: str,
        source_label: str,
        options: MigrationOptions,
        rejects: RejectLog,
        progress: Progress,
    ):
        self.source = source
        self.target = target
        self.info = info
        self.mid = mid
        self.source_label = source_label[:512]
        self.options = options
        self.rejects = rejects
        self.progress = progress
        dbapi = target.dialect.dbapi
        self.data_errors = (dbapi.DataError, dbapi.IntegrityError)
        self.driver_error = dbapi.Error
        self.write_errors = (dbapi.Error, ValueError, TypeError)

    # -- progress rows

    def _progress_row(self, conn, tp: TablePlan, **values) -> None:
        values["updated_at"] = _now()
        where = (migration_progress.c.migration_id == self.mid) & (
            migration_progress.c.table_name == tp.name
        )
        done = conn.execute(migration_progress.update().where(where).values(**values))
        if done.rowcount == 0:
            conn.execute(
                migration_progress.insert().values(
                    migration_id=self.mid,
                    table_name=tp.name,
                    source_url=self.source_label,
                    rows_total=tp.spec.rows,
                    **{"rows_copied": 0, "status": "copying", **values},
                )
            )

    # -- the table loop

    def copy(self, tp: TablePlan, state: dict | None, result: TableResult) -> None:
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
                    job = _TableJob(self, tconn, tp, Path(folder))
                    result.writer = job.writer.method
                    if tp.strategy == "keyset":
                        self._copy_keyset(sconn, tconn, job, state, result)
                    else:
                        self._copy_single(sconn, tconn, job, result)
                finally:
                    if tconn.in_transaction():
                        tconn.rollback()
                    restore()
        except DBAPIError as exc:
            raise _target_error(exc, self.target, f"{tp.name}: copy failed") from None
        except self.driver_error as exc:
            if isinstance(exc, self.source.dialect.dbapi.Error):
                raise MlkitError(f"{tp.name}: copy failed: {exc}") from None
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise MlkitError(f"{tp.name}: the target failed: {first}") from None

    def _copy_keyset(self, sconn, tconn, job: _TableJob, state, result: TableResult) -> None:
        tp = job.tp
        spec = tp.spec
        key = spec.key
        rowid = spec.rowid if key == [spec.rowid] else None
        columns = [c.name for c in spec.columns]
        selected = ([rowid] if rowid else []) + columns
        key_at = [selected.index(k) for k in key]
        offset = 1 if rowid else 0
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
                self._progress_row(tconn, tp, status="copying", last_key=None, rows_copied=0)
        first_sql, next_sql = _page_queries(sconn, spec.name, selected, key, tp.batch_rows)
        done = copied + self.rejects.count(spec.name)

        def batches() -> Iterator[_Batch]:
            """Source pages, converted and (for LOAD DATA) written out: this runs in a
            thread, one batch ahead of the target's writes."""
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

        for batch in _prefetched(batches()):
            with tconn.begin():
                self._progress_row(tconn, tp, status="copying", last_key=_encode_key(batch.last))
                written, rejected = self._write(tconn, job, batch)
                copied += written
                self._progress_row(tconn, tp, rows_copied=copied)
            done += written + rejected
            result.copied = copied
            self.progress(spec.name, done, spec.rows)
        with tconn.begin():
            self._progress_row(tconn, tp, status="done", rows_copied=copied)
        result.copied = copied

    def _copy_single(self, sconn, tconn, job: _TableJob, result: TableResult) -> None:
        tp = job.tp
        spec = tp.spec
        columns = [c.name for c in spec.columns]
        self.rejects.clear(spec.name)
        cols = ", ".join(quote(sconn, c) for c in columns)
        copied = done = 0
        with tconn.begin():
            self._progress_row(tconn, tp, status="copying", last_key=None, rows_copied=0)
            tconn.exec_driver_sql(f"DELETE FROM {quote(tconn, spec.name)}")
            stream = sconn.execution_options(stream_results=True).exec_driver_sql(
                f"SELECT {cols} FROM {quote(sconn, spec.name)}"
            )
            while rows := stream.fetchmany(tp.batch_rows):
                written, rejected = self._write(tconn, job, job.prepare(rows, None, None))
                copied += written
                done += written + rejected
                self.progress(spec.name, done, spec.rows)
            stream.close()
            self._progress_row(tconn, tp, status="done", rows_copied=copied)
        result.status = "copied"
        result.copied = copied

    def _write(self, tconn, job: _TableJob, batch: _Batch) -> tuple[int, int]:
        """Write one batch inside the caller's transaction: (rows written, rows rejected).
        A batch the target refuses is written again in small INSERTs, and an INSERT the
        target refuses row by row, to name the rows at fault."""
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
                    if self.options.on_error == "fail":
                        key = batch.keys[i] if batch.keys else None
                        self._fail(tp, batch.rows[i], key, reason)
                    batch.rejects.append((i, reason))
        return written

    def _check_rejects(self, tp: TablePlan, batch: _Batch) -> None:
        if batch.rejects and self.options.on_error == "fail":
            i, reason = batch.rejects[0]
            self._fail(tp, batch.rows[i], batch.keys[i] if batch.keys else None, reason)

    def _reject(self, job: _TableJob, batch: _Batch) -> None:
        names = [c.name for c in job.tp.spec.columns]
        rows, keys = batch.rows, batch.keys
        self.rejects.add(
            job.tp.name,
            [
                {
                    "table": job.tp.name,
                    "key": [json_safe(v) for v in keys[i]] if keys else None,
                    "reason": reason,
                    "row": {n: json_safe(v) for n, v in zip(names, rows[i], strict=True)},
                    "raw_hash": job.raw_hash(rows[i]),
                }
                for i, reason in sorted(batch.rejects)
            ],
        )

    def _is_value_error(self, exc: Exception) -> bool:
        if isinstance(exc, (*self.data_errors, ValueError, TypeError)):
            return True
        return bool(self.info.dialect == "mysql" and exc.args and exc.args[0] in MYSQL_VALUE_ERRORS)

    def _fail(self, tp: TablePlan, row, key, reason: str) -> None:
        where = f"row {json.dumps([json_safe(v) for v in key])}" if key else "a row"
        raise MlkitError(
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


class Writer:
    """Batches into the target by its fastest path; single rows for finding bad ones."""

    def __init__(self, conn: sa.Connection, tp: TablePlan, info: TargetInfo, source: str):
        self.conn = conn
        self.dialect = info.dialect
        self.bulk = MysqlLoad(conn, tp, source) if info.load_data else None
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
        if self.bulk is not None:
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

    def load(self, cursor, path: Path, rows: int) -> None:
        """LOAD DATA of a batch's file; raises LoadRefused unless every row went in as is."""
        cursor.execute(self.bulk.statement(str(path)))
        self.bulk.check(cursor, rows)

    def write_row(self, cursor, row: tuple) -> None:
        if self.dialect == "mysql":
            self.write_batch(cursor, [row])
        else:
            cursor.execute(self.insert, row)


def _mysql_text(v: Any) -> str:
    if not isinstance(v, str):
        v = json.dumps(v) if isinstance(v, dict | list) else str(v)
    return "'" + escape_string(v) + "'"


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
# Below MariaDB's default max_allowed_packet (16 MiB) even when every character is 4 bytes.
MYSQL_STATEMENT_CHARS = 2_000_000

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

__all__ = ["PROGRESS_TABLE", "MigrationOptions", "MigrationReport", "migrate"]
