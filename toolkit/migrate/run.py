"""The run: the plan checked, the target's tables prepared (created without their indexes
and foreign keys, refused when another run filled them), each table copied, then indexes
and foreign keys added and both sides verified."""

from __future__ import annotations

import hashlib
import time as clock
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import AddConstraint, CreateIndex, CreateTable

from ..db import first_line, masked
from ..errors import MlkitError
from ..schema import migration_progress
from . import digest
from .batchsum import BatchChecksum
from .copier import Copier, Progress, ResumePoints, now_utc, target_error
from .plan import Plan, TablePlan, build_plan, open_source, open_target, plan_document, source_url
from .reflect import quote
from .rejects import RejectLog
from .verify import Verification, count_rows, table_method

if TYPE_CHECKING:
    from ..config import Config


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
    read_back: bool = False  # verify by reading rows back even where the target can checksum
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
        plain = ("table", "rows", "strategy", "batches", "writer", "status", "copied", "rejected")
        doc = {name: getattr(self, name) for name in plain} | {
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

    @property
    def rows_copied(self) -> int:
        return sum(t.copied for t in self.tables)

    def failure(self) -> MlkitError | None:
        """What the run ends with: a verification mismatch, else the first problem."""
        if self.mismatched:
            return MlkitError(
                f"verification failed for {', '.join(self.mismatched)}: the target's rows "
                "differ from the source's",
                hint="see the verify columns above; --replace copies those tables again",
            )
        if self.problems:
            return MlkitError(self.problems[0], hint=f"{len(self.problems)} problem(s) in all")
        return None

    def document(self) -> dict:
        plain = (
            "migration_id",
            "source",
            "target",
            "source_dialect",
            "target_dialect",
            "dry_run",
            "database_created",
        )
        return {name: getattr(self, name) for name in plain} | {
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "rows_copied": self.rows_copied,
            "rows_rejected": sum(t.rejected for t in self.tables),
            "reject_file": self.reject_file,
            "views_not_copied": self.views,
            "tables_not_copied": self.skipped_tables,
            "mismatched_tables": self.mismatched,
            "problems": self.problems,
            "notes": self.notes,
            "tables": [t.document() for t in self.tables],
        }


# The trading system's variables behind each `mysql:` setting, named in errors.
MYSQL_VARIABLES = {"host": "MYSQL_HOST", "user": "MYSQL_USER", "db": "MYSQL_DB"}


def mysql_target(config: Config) -> str | None:
    """The MySQL URL from config.yaml's `mysql:` (the MYSQL_* variables), or None when
    MYSQL_ENABLED is not true."""
    section = config.data["mysql"]
    if not section["enabled"]:
        return None
    missing = [var for key, var in MYSQL_VARIABLES.items() if not str(section[key]).strip()]
    if missing:
        raise MlkitError(
            f"MYSQL_ENABLED is true but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set",
            hint="export the missing variable(s), or pass --target URL",
        )
    return URL.create(
        "mysql+pymysql",
        username=section["user"],
        password=section["password"] or None,
        host=section["host"],
        port=int(section["port"]) if section["port"] else None,
        database=section["db"],
        query={"charset": section["charset"]} if section["charset"] else {},
    ).render_as_string(hide_password=False)


def migrate_configured(
    config: Config,
    *,
    source: str | None,
    target: str | None,
    reject_file: Path | None,
    on_progress: Progress | None = None,
    log: Callable[[str], None] | None = None,
    **choices: Any,
) -> MigrationReport:
    """`migrate` with the config's defaults: the configured database as source, MYSQL_* as
    target, migrate.batch_size, and the reject file in <home>/migrations. `choices` are the
    other MigrationOptions fields."""
    source = source or config.database_url
    target = target or mysql_target(config)
    if not target:
        raise MlkitError(
            "no target database",
            hint="pass --target URL, or set MYSQL_ENABLED=true with MYSQL_HOST, MYSQL_USER, "
            "MYSQL_PASSWORD and MYSQL_DB",
        )
    if reject_file is None:
        reject_file = config.home / "migrations" / f"{migration_id(source, target)}-rejects.jsonl"
    options = MigrationOptions(
        source=source,
        target=target,
        default_batch_size=int(config.data["migrate"]["batch_size"]),
        reject_file=reject_file,
        **choices,
    )
    return migrate(options, on_progress=on_progress, log=log)


def migration_id(source: str, target: str) -> str:
    """The same source and target give the same id, which is how --resume finds its rows."""
    text = f"{masked(source_url(source))}\n{masked(target)}"
    return hashlib.sha1(text.encode()).hexdigest()[:16]


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
    points = ResumePoints(mid, report.source)
    states = points.read(engine)
    existing = _prepare_tables(engine, plan, states, options, points)
    rejects = RejectLog(options.reject_file or Path(f"mlkit-migrate-{mid}-rejects.jsonl"))
    verification = None
    checksums: dict[str, BatchChecksum] = {}
    ranges: digest.RangeChecksums | None = None
    if options.verify:
        # Tables copied from their start by a bulk load sum the source side of their server
        # checksum as they go; the others' source checksums start now, beside the copy.
        for tp in plan.tables:
            fresh = not (options.resume and states.get(tp.name))
            method = table_method(tp.spec, target, options.read_back)
            if fresh and target.bulk_text and method == digest.METHOD:
                checksums[tp.name] = BatchChecksum(
                    tp.spec.columns, plan.source_dialect, target.dialect
                )
                if tp.strategy == "keyset" and digest.RangeChecksums.covers(tp.spec):
                    # The target sums what is committed while the copy goes on.
                    ranges = ranges or digest.RangeChecksums(engine)
                    ranges.start(tp.spec)
        verification = Verification(
            options.source,
            source,
            target,
            plan.tables,
            read_back=options.read_back,
            summed=set(checksums),
        )
    try:
        copier = Copier(source, engine, target, points, options.on_error, rejects, progress)
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
                copier.copy(
                    tp,
                    state if options.resume else None,
                    result,
                    checksums.get(tp.name),
                    ranges if ranges is not None and tp.name in ranges.parts else None,
                )
                result.seconds = clock.perf_counter() - t0
            result.rejected = rejects.count(tp.name)
            report.problems += _finish_table(engine, tp, existing.get(tp.name, set()))
        report.problems += _add_foreign_keys(engine, plan)
        if rejects.written:
            report.reject_file = str(rejects.path)
        if verification is not None:
            say("verifying: row counts and checksums on both sides")
            rejected = {tp.name: rejects.hashes(tp.name) for tp in plan.tables}
            summed = {
                name: (c.rows, c.rows - t.copied, c.total)
                for t in report.tables
                if (c := checksums.get(name := t.table)) is not None
            }
            checks = verification.finish(engine, rejected, summed, ranges)
            for check, result in zip(checks, report.tables, strict=True):
                result.verify = check.document()
                if not check.ok:
                    report.mismatched.append(check.table)
    finally:
        if verification is not None:
            verification.close()
        if ranges is not None:
            ranges.close()
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
                    updated_at=now_utc(),
                )
            )
            trans.rollback()
    except DBAPIError as exc:
        raise target_error(exc, engine, "cannot write to the target") from None


def _prepare_tables(
    engine: Engine,
    plan: Plan,
    states: dict[str, dict],
    options: MigrationOptions,
    points: ResumePoints,
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
                points.forget(conn, [tp.name for tp in plan.tables])
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
        raise target_error(exc, engine, "cannot create the target tables") from None


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
    autoincrement moved past the copied ids; PostgreSQL's planner statistics taken (a
    bulk-loaded table has none until autovacuum comes by)."""
    problems: list[str] = []
    for index in tp.indexes:
        if index.name not in existing_indexes:
            failure = f"{tp.name}: index {index.name} not created"
            _try_ddl(engine, CreateIndex(index), failure, problems)
    if engine.dialect.name == "postgresql":
        failure = f"{tp.name}: not analysed"
        _try_ddl(engine, sa.text(f"ANALYZE {quote(engine, tp.name)}"), failure, problems)
    try:
        _continue_ids(engine, tp)
    except DBAPIError as exc:
        problems.append(f"{tp.name}: autoincrement not moved past the ids: {first_line(exc)}")
    return problems


def _try_ddl(engine: Engine, statement: Any, failure: str, problems: list[str]) -> None:
    """Run one DDL statement in a transaction of its own; a refusal goes into `problems`."""
    try:
        with engine.begin() as conn:
            conn.execute(statement)
    except DBAPIError as exc:
        problems.append(f"{failure}: {first_line(exc)}")


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
    problems: list[str] = []
    for tp in plan.tables:
        if not tp.foreign_keys:
            continue
        have = {fk.get("name") for fk in sa.inspect(engine).get_foreign_keys(tp.name)}
        for fk in tp.foreign_keys:
            if fk.name not in have:
                failure = f"{tp.name}: foreign key {fk.name} not added"
                _try_ddl(engine, AddConstraint(fk), failure, problems)
    return problems
