"""The plan: which tables move, the target's DDL for each (types chosen per dialect from what
is actually stored), how each table is paged and resumed, and the notes a person should
read before trusting it. `--dry-run` prints this and writes nothing anywhere."""

from __future__ import annotations

import hashlib
import math
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote as url_quote

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import AddConstraint, CreateIndex, CreateTable

from ..db import _sa_dialect, dialect_name, explain_db_error, make_engine, parse_url
from ..errors import MlkitError
from .reflect import ColumnSpec, TableSpec, list_tables, reflect_tables

# mlkit's own bookkeeping lives in the target; a source's copy of it is never moved.
PROGRESS_TABLE = "migration_progress"
# Tables that belong to one database and never travel: the migration's own progress, and
# the identity (with the bandit's generation) that keys its artifacts and Redis state, so a
# copy gets an identity of its own on first use instead of sharing the source's files.
LOCAL_TABLES = (PROGRESS_TABLE, "bandit_generations")
# InnoDB's index key limit (3072 bytes) over utf8mb4's 4 bytes a character.
MYSQL_KEY_BYTES = 3072
MYSQL_INDEX_CHARS = MYSQL_KEY_BYTES // 4
# VARCHAR up to this many characters when a column is not indexed; longer text is TEXT.
MYSQL_VARCHAR_MAX = 255
MYSQL_ROW_BYTES = 60_000  # below InnoDB's 65,535-byte row limit for inline columns
# PostgreSQL's btree refuses entries over ~2,700 bytes; longer text is indexed by md5().
PG_INDEX_BYTES = 2000
# LOAD DATA and COPY pay a fixed cost per statement and commit: when no --batch-size is
# given their batches hold up to this many rows, and no more than about this many bytes.
LOAD_BATCH_ROWS = 50_000
LOAD_BATCH_BYTES = 32 * 1024 * 1024
# The resume key is stored as JSON in migration_progress.last_key, VARCHAR(255).
KEY_JSON_MAX = 255
IDENT_MAX = 63
SQLITE_HEADER = b"SQLite format 3\x00"


@dataclass
class TargetInfo:
    url: URL
    dialect: str
    engine: Engine | None  # None while the target database does not exist yet
    exists: bool
    flavor: str = ""  # mariadb | mysql8 | mysql for MySQL servers
    load_data: bool = False  # the server takes LOAD DATA LOCAL INFILE from this client

    @property
    def bulk_text(self) -> bool:
        """Batches go as tab-separated text: LOAD DATA on MySQL, COPY on PostgreSQL."""
        return self.load_data or self.dialect == "postgresql"

    @property
    def text_collation(self) -> str | None:
        """Binary, no-pad comparison on MySQL: SQLite and PostgreSQL compare text byte by
        byte, so 'a' and 'A' (or 'a ') are different keys there and must stay so."""
        if self.dialect != "mysql":
            return None
        return {"mariadb": "utf8mb4_nopad_bin", "mysql8": "utf8mb4_0900_bin"}.get(
            self.flavor, "utf8mb4_bin"
        )


@dataclass
class TablePlan:
    spec: TableSpec
    table: sa.Table  # the target table: columns, primary key, generated hash columns
    indexes: list[sa.Index]  # built after the table's data
    foreign_keys: list[sa.ForeignKeyConstraint]  # added after every table's data
    strategy: str  # "keyset": resumable batches by key; "single": one transaction
    batches: int
    batch_rows: int  # rows per batch and commit
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    def ddl(self, dialect) -> list[str]:
        # SQLite cannot add a foreign key later: it goes into CREATE TABLE, unchecked while
        # the load runs with foreign_keys off.
        inline = None if dialect.name == "sqlite" else []
        create = CreateTable(self.table, include_foreign_key_constraints=inline)
        statements = [str(create.compile(dialect=dialect))]
        statements += [str(CreateIndex(ix).compile(dialect=dialect)) for ix in self.indexes]
        statements += [str(AddConstraint(fk).compile(dialect=dialect)) for fk in self.foreign_keys]
        return [s.strip() + ";" for s in statements]


@dataclass
class Plan:
    source_dialect: str
    target: TargetInfo
    tables: list[TablePlan]
    views: list[str]
    skipped: list[str]
    batch_size: int | None


# ---------------------------------------------------------------- opening both ends


def source_url(text: str) -> URL:
    """A URL, or the path of a SQLite file for convenience."""
    if "://" not in text and Path(text).expanduser().is_file():
        text = f"sqlite:///{Path(text).expanduser().resolve()}"
    return parse_url(text)


def open_source(text: str) -> Engine:
    """An engine that only reads: a SQLite file opens read-only and is never created."""
    url = source_url(text)
    if dialect_name(url) != "sqlite":
        return server_engine(url)
    name = url.database
    if not name or name == ":memory:":
        raise MlkitError("the source names no SQLite file", hint="use sqlite:///path/to/file.db")
    path = Path(name).expanduser().resolve()
    if not path.is_file():
        raise MlkitError(
            f"source database {str(path)!r} does not exist", hint="check the --source path"
        )
    with path.open("rb") as handle:
        head = handle.read(len(SQLITE_HEADER))
    if head and head != SQLITE_HEADER:
        raise MlkitError(
            f"source {str(path)!r} is not a SQLite database",
            hint="--source takes a database URL such as sqlite:///path/to/file.db",
        )
    uri = f"file:{url_quote(str(path))}?mode=ro"
    engine = sa.create_engine(
        "sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False)
    )
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar()
    except DBAPIError as exc:
        raise explain_db_error(exc, url) from None
    return engine


def open_target(text: str, *, create: bool) -> TargetInfo:
    """The target, reachable or a clear error. A missing database is created when `create`
    (the real run), only noted in a dry run; nothing else is written here."""
    from ..db import create_database

    url = parse_url(text)
    dialect = dialect_name(url)
    if dialect == "sqlite":
        name = url.database
        if not name or name == ":memory:":
            raise MlkitError("the target names no SQLite file", hint="use sqlite:///path/new.db")
        exists = Path(name).expanduser().is_file()
        if not exists and not create:
            return TargetInfo(url, dialect, None, False)
        return TargetInfo(url, dialect, make_engine(url), exists)
    engine = _with_local_infile(server_engine(url, check=False))
    try:
        with engine.connect() as conn:
            flavor = _flavor(conn)
            load_data = _load_data(conn)
        return TargetInfo(url, dialect, engine, True, flavor, load_data)
    except DBAPIError as exc:
        explained = explain_db_error(exc, url)
        engine.dispose()
        if "does not exist" not in explained.message:
            raise explained from None
    # The server answers but the database is missing.
    if create:
        create_database(url)
        engine = _with_local_infile(server_engine(url))
        with engine.connect() as conn:
            flavor = _flavor(conn)
            load_data = _load_data(conn)
        return TargetInfo(url, dialect, engine, False, flavor, load_data)
    server = server_engine(url._replace(database="postgres" if dialect == "postgresql" else None))
    server = _with_local_infile(server)
    with server.connect() as conn:
        flavor = _flavor(conn)
        load_data = _load_data(conn)
    server.dispose()
    return TargetInfo(url, dialect, None, False, flavor, load_data)


def server_engine(url: URL, *, check: bool = True) -> Engine:
    """An engine on a PostgreSQL or MySQL server for the migration: db.make_engine's, without
    a ping before every checkout (the run's connections are minutes old at most)."""
    return make_engine(url, check=check, ping=False)


def _with_local_infile(engine: Engine) -> Engine:
    """PyMySQL sends a file for LOAD DATA LOCAL only when the connection allows it; only the
    migration's own target engine does (the server names the file it asks for, and these
    connections run nothing but the migration's statements)."""
    if engine.dialect.name == "mysql" and engine.dialect.driver == "pymysql":

        @sa.event.listens_for(engine, "do_connect")
        def allow(_dialect, _record, _cargs, cparams) -> None:
            cparams["local_infile"] = True

        engine.dispose()  # a connection pooled before the listener would lack it
    return engine


def _load_data(conn: sa.Connection) -> bool:
    """LOAD DATA LOCAL needs the server's local_infile on and a driver that sends files."""
    if conn.dialect.name != "mysql" or conn.dialect.driver != "pymysql":
        return False
    return bool(conn.exec_driver_sql("SELECT @@GLOBAL.local_infile").scalar())


def _flavor(conn: sa.Connection) -> str:
    if conn.dialect.name != "mysql":
        return ""
    version = conn.exec_driver_sql("SELECT VERSION()").scalar() or ""
    if "mariadb" in version.lower():
        return "mariadb"
    return "mysql8" if int(version.split(".")[0] or 0) >= 8 else "mysql"


# ---------------------------------------------------------------- the plan


def select_tables(
    available: list[str], include: list[str] | None, exclude: list[str] | None
) -> tuple[list[str], list[str]]:
    """(tables to move, tables left out and why); unknown names are an error listing
    what the source has."""
    wanted = _split(include)
    unwanted = _split(exclude)
    unknown = [t for t in wanted + unwanted if t not in available]
    if unknown:
        listing = ", ".join(available) if available else "(none)"
        raise MlkitError(
            f"table{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"not in the source; it has: {listing}",
            hint="check --tables/--exclude against the source's table names",
        )
    chosen = [t for t in (wanted or available) if t not in unwanted]
    skipped = []
    for local in LOCAL_TABLES:
        if local in chosen:
            chosen.remove(local)
            skipped.append(local)
    if not chosen:
        raise MlkitError("no tables to migrate", hint="the source is empty or all were excluded")
    return chosen, skipped


def _split(names: list[str] | None) -> list[str]:
    out: list[str] = []
    for item in names or []:
        out.extend(n.strip() for n in item.split(",") if n.strip())
    return out


def build_plan(
    source: Engine,
    target: TargetInfo,
    *,
    tables: list[str] | None = None,
    exclude: list[str] | None = None,
    batch_size: int | None = None,
    default_batch_size: int = 1000,
) -> Plan:
    """`batch_size` None: `default_batch_size` rows a batch, or for MySQL's LOAD DATA as many
    as fit LOAD_BATCH_BYTES (at least the default, at most LOAD_BATCH_ROWS)."""
    try:
        available, views = list_tables(source)
        chosen, skipped = select_tables(available, tables, exclude)
        specs = reflect_tables(source, chosen)
    except DBAPIError as exc:
        raise explain_db_error(exc, source.url) from None
    source_dialect = source.dialect.name
    meta = sa.MetaData()
    used_names: set[str] = set()
    plans = [
        _table_plan(
            s,
            meta,
            target,
            source_dialect,
            batch_size or _auto_batch_rows(s, target, default_batch_size),
            used_names,
        )
        for s in specs
    ]
    migrated = {p.name for p in plans}
    for p in plans:
        _foreign_keys(p, meta, migrated, used_names, target.dialect)
    return Plan(source_dialect, target, plans, views, skipped, batch_size)


def _short_name(name: str, used: set[str]) -> str:
    """An index or constraint name under the identifier limit, unique across the target."""
    candidate = name
    if len(candidate) > IDENT_MAX:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        candidate = f"{name[: IDENT_MAX - 9]}_{digest}"
    n = 2
    base = candidate
    while candidate.lower() in used:
        candidate = f"{base[: IDENT_MAX - 4]}_{n}"
        n += 1
    used.add(candidate.lower())
    return candidate


def _table_plan(
    spec: TableSpec,
    meta: sa.MetaData,
    target: TargetInfo,
    source_dialect: str,
    batch_size: int,
    used_names: set[str],
) -> TablePlan:
    dialect = target.dialect
    notes: list[str] = []
    indexed = set(spec.primary_key)
    for ix in spec.indexes:
        indexed.update(ix.columns)
    # Which indexed text/blob columns are too long for the target's index keys.
    hashed = {
        c.name
        for c in spec.columns
        if c.name in indexed
        and c.kind in ("text", "blob", "json")
        and _too_long_to_index(c, dialect)
    }
    for name in hashed & set(spec.primary_key):
        c = spec.column(name)
        raise MlkitError(
            f"{spec.name}.{name} is in the primary key and holds values of {c.max_chars:,} "
            f"characters; {dialect} cannot index values that long",
            hint=f"leave the table out with --exclude {spec.name}",
        )
    columns = []
    for c in spec.columns:
        column_type = _target_type(c, target, indexed=c.name in indexed and c.name not in hashed)
        notes.extend(_type_notes(c, column_type, target))
        autoinc = c.autoincrement and spec.primary_key == [c.name]
        if autoinc and dialect == "sqlite":
            column_type = sa.Integer()  # only INTEGER PRIMARY KEY hands out ids on SQLite
        columns.append(
            sa.Column(
                c.name,
                column_type,
                primary_key=c.name in spec.primary_key,
                nullable=c.nullable and c.name not in spec.primary_key,
                autoincrement=bool(autoinc),
            )
        )
    kwargs = {}
    if dialect == "mysql":
        kwargs = {
            "mysql_engine": "InnoDB",
            "mysql_charset": "utf8mb4",
            "mysql_collate": target.text_collation,
        }
    table = sa.Table(spec.name, meta, *columns, **kwargs)
    if dialect == "mysql":
        _fit_mysql_row(table, spec, indexed, notes)
    hash_columns: dict[str, sa.Column] = {}
    if dialect == "mysql":
        for name in sorted(hashed):
            hash_name = _free_column_name(table, f"{name}_sha256")
            column = sa.Column(
                hash_name,
                mysql.CHAR(64, charset="ascii", collation="ascii_bin"),
                sa.Computed(f"SHA2({_q(target, name)}, 256)", persisted=True),
            )
            table.append_column(column)
            hash_columns[name] = column
    indexes = []
    for ix in spec.indexes:
        members = []
        for name in ix.columns:
            if name not in hashed:
                members.append(table.c[name])
            elif dialect == "mysql":
                members.append(hash_columns[name])
            else:
                members.append(sa.func.md5(table.c[name]))
        if set(ix.columns) & hashed:
            how = "a generated SHA-256 column" if dialect == "mysql" else "md5() of the value"
            notes.append(
                f"{'unique ' if ix.unique else ''}index {ix.name} covers text longer than "
                f"{dialect} can index: built over {how}, so "
                f"{'uniqueness holds for whole values' if ix.unique else 'equality lookups work'}"
            )
        # Bound to the table through its columns; CREATE TABLE never includes indexes.
        indexes.append(sa.Index(_short_name(ix.name, used_names), *members, unique=ix.unique))
    strategy, why = _strategy(spec, source_dialect)
    if why:
        notes.append(why)
    if spec.sqlite_sequence and spec.primary_key:
        notes.append(f"ids continue after {spec.sqlite_sequence:,} (sqlite_sequence)")
    batches = math.ceil(spec.rows / batch_size) if spec.rows else 0
    return TablePlan(spec, table, indexes, [], strategy, batches, batch_size, notes)


def _auto_batch_rows(spec: TableSpec, target: TargetInfo, default: int) -> int:
    """Rows per batch without --batch-size. LOAD DATA's and COPY's cost is mostly per
    statement and commit, so their batches grow until the widest row the table holds, times
    the batch, reaches LOAD_BATCH_BYTES: memory stays bounded by bytes, not rows."""
    if not target.bulk_text:
        return default
    # Widest tab-separated line: text may double when escaped, blobs go as hex.
    # Numbers and dates are measured on SQLite only: 32 bytes covers their text.
    widest = sum(2 * max(c.max_bytes, 32) + 1 for c in spec.columns)
    return max(default, min(LOAD_BATCH_ROWS, LOAD_BATCH_BYTES // widest))


def _q(target: TargetInfo, name: str) -> str:
    return _sa_dialect(target.dialect).identifier_preparer.quote_identifier(name)


def _free_column_name(table: sa.Table, name: str) -> str:
    candidate, n = name, 2
    while candidate in table.c:
        candidate, n = f"{name}_{n}", n + 1
    return candidate


def _too_long_to_index(c: ColumnSpec, dialect: str) -> bool:
    if dialect == "mysql":
        return c.max_chars > MYSQL_INDEX_CHARS or c.max_bytes > MYSQL_KEY_BYTES
    if dialect == "postgresql":
        return c.max_bytes > PG_INDEX_BYTES
    return False


def _strategy(spec: TableSpec, source_dialect: str) -> tuple[str, str | None]:
    key = spec.key
    if not key:
        return "single", (
            "no primary key: copied in one transaction, so a crash leaves it empty and "
            "--resume copies it again whole"
        )
    key_bytes = sum(max(spec.column(k).max_bytes, 8) + 8 for k in key if k != spec.rowid)
    if key_bytes + 8 * len(key) > KEY_JSON_MAX - 20:
        return "single", "primary key values too long to record as a resume point: one transaction"
    if spec.rowid and key == [spec.rowid]:
        return "keyset", "no primary key: batches and resume follow SQLite's rowid"
    return "keyset", None


def _target_type(c: ColumnSpec, target: TargetInfo, *, indexed: bool) -> sa.types.TypeEngine:
    dialect = target.dialect
    kind = c.kind
    if kind == "int":
        return {"small": sa.SmallInteger(), "int": sa.Integer()}.get(
            c.integer_width, sa.BigInteger()
        )
    if kind == "float":
        return sa.Double()
    if kind == "decimal":
        return sa.Numeric(min(c.precision or 38, 65), c.scale or 0)
    if kind == "bool":
        return sa.Boolean()
    if kind == "date":
        return sa.Date()
    if kind == "time":
        return mysql.TIME(fsp=6) if dialect == "mysql" else sa.Time()
    if kind == "datetime":
        if dialect == "mysql":
            return mysql.DATETIME(fsp=6)  # plain DATETIME would round the microseconds
        return sa.DateTime(timezone=c.timezone and dialect == "postgresql")
    if kind == "json":
        return postgresql.JSONB() if dialect == "postgresql" else sa.JSON()
    if kind == "blob":
        if dialect == "mysql":
            if indexed:
                return mysql.VARBINARY(max(c.max_bytes, min(c.length or 255, MYSQL_KEY_BYTES), 1))
            return _mysql_sized(c.max_bytes, mysql.BLOB, mysql.MEDIUMBLOB, mysql.LONGBLOB)
        return sa.LargeBinary()
    # text
    longest = max(c.max_chars, 1)
    if dialect == "mysql":
        collation = target.text_collation
        if indexed:
            length = max(longest, min(c.length or MYSQL_VARCHAR_MAX, MYSQL_INDEX_CHARS))
            return mysql.VARCHAR(length, charset="utf8mb4", collation=collation)
        if c.length and c.max_chars <= c.length <= MYSQL_VARCHAR_MAX:
            return mysql.VARCHAR(c.length, charset="utf8mb4", collation=collation)
        # By bytes: TEXT holds 65,535, MEDIUMTEXT 16 MiB, LONGTEXT 4 GiB.
        declared_bytes = 4 * c.length if c.length else 0
        return _mysql_sized(
            max(c.max_bytes, declared_bytes),
            lambda: mysql.TEXT(charset="utf8mb4", collation=collation),
            lambda: mysql.MEDIUMTEXT(charset="utf8mb4", collation=collation),
            lambda: mysql.LONGTEXT(charset="utf8mb4", collation=collation),
        )
    if c.length and c.max_chars <= c.length:
        return sa.String(c.length)
    return sa.Text()


def _mysql_sized(size: int, small, medium, large) -> sa.types.TypeEngine:
    if size <= 65_535:
        return small()
    if size <= 16_777_215:
        return medium()
    return large()


def _fit_mysql_row(table: sa.Table, spec: TableSpec, indexed: set[str], notes: list[str]) -> None:
    """InnoDB limits a row's inline columns to 65,535 bytes: turn the widest unindexed
    VARCHARs into TEXT until the row fits."""

    def inline_bytes() -> int:
        return sum(
            4 * c.type.length
            for c in table.columns
            if isinstance(c.type, mysql.VARCHAR | mysql.VARBINARY)
        )

    wide = sorted(
        (c for c in table.columns if isinstance(c.type, mysql.VARCHAR) and c.name not in indexed),
        key=lambda c: -c.type.length,
    )
    for column in wide:
        if inline_bytes() <= MYSQL_ROW_BYTES:
            return
        column.type = mysql.TEXT(charset="utf8mb4", collation=column.type.collation)
        notes.append(f"{column.name}: TEXT instead of VARCHAR so the row fits InnoDB's limit")


def _type_notes(c: ColumnSpec, column_type: sa.types.TypeEngine, target: TargetInfo) -> list[str]:
    notes = []
    if c.kind in ("date", "datetime") and c.epoch_unit:
        unit = "milliseconds" if c.epoch_unit == "ms" else "seconds"
        notes.append(f"{c.name}: epoch {unit} stored by SQLite become {c.kind} values (UTC)")
    if c.kind == "text" and c.length and c.max_chars > c.length:
        notes.append(
            f"{c.name}: declared {c.declared} but holds {c.max_chars:,} characters: widened"
        )
    if c.kind == "text" and target.dialect == "mysql" and c.max_chars > MYSQL_VARCHAR_MAX:
        rendered = str(column_type.compile(dialect=_sa_dialect("mysql"))).split(" ")[0]
        notes.append(f"{c.name}: longest value {c.max_chars:,} characters -> {rendered}")
    if c.nonconforming:
        notes.append(
            f"{c.name}: {c.nonconforming:,} value(s) stored as another type than {c.declared} "
            "(converted where exact, else they follow --on-error)"
        )
    return notes


def _foreign_keys(
    p: TablePlan, meta: sa.MetaData, migrated: set[str], used: set[str], target_dialect: str
) -> None:
    for fk in p.spec.foreign_keys:
        if fk.ref_table not in migrated:
            p.notes.append(
                f"foreign key ({', '.join(fk.columns)}) -> {fk.ref_table} not added: "
                f"{fk.ref_table} is not migrated"
            )
            continue
        name = fk.name or f"fk_{p.name}_{'_'.join(fk.columns)}_{fk.ref_table}"
        constraint = sa.ForeignKeyConstraint(
            fk.columns,
            [meta.tables[fk.ref_table].c[c] for c in fk.ref_columns],
            name=_short_name(name, used),
            ondelete=fk.ondelete,
            onupdate=fk.onupdate,
        )
        p.table.append_constraint(constraint)
        if target_dialect != "sqlite":
            p.foreign_keys.append(constraint)


def plan_document(plan: Plan) -> list[dict]:
    """Per table what a dry run shows: DDL, rows, batches, strategy, notes."""
    dialect = _sa_dialect(plan.target.dialect)
    return [
        {
            "table": p.name,
            "rows": p.spec.rows,
            "batches": p.batches,
            "strategy": p.strategy,
            "ddl": p.ddl(dialect),
            "notes": p.notes,
        }
        for p in plan.tables
    ]
