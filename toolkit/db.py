"""Engines, schema creation, DDL and each dialect's fastest bulk-load path."""

from __future__ import annotations

import io
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from .config import SUPPORTED_BACKENDS, mask_url
from .errors import MlkitError

if TYPE_CHECKING:
    import pandas as pd

    from .config import Config
    from .sources.mapping import Sources

DIALECTS = ("postgresql", "mysql", "sqlite")
KPI_VIEW = "kpi_hourly"
# The KPI view covers the 30 days before the newest order, so it stays bounded as
# orders grow and still shows data whose clock is not today's (demo worlds, backfills).
KPI_WINDOW_DAYS = 30
DRIVERS = {
    "postgresql": "postgresql+psycopg2",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}
LOAD_CHUNK_ROWS = 100_000


def parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise MlkitError(
            f"invalid database URL {mask_url(url)!r}",
            hint="use sqlite:///path.db, postgresql+psycopg2://user@host/db "
            "or mysql+pymysql://user@host/db",
        ) from None
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise MlkitError(
            f"unsupported database dialect '{backend}'",
            hint="mlkit supports sqlite, postgresql and mysql (mariadb) URLs",
        )
    if "+" not in parsed.drivername and backend in DRIVERS:
        parsed = parsed.set(drivername=DRIVERS[backend])
    elif backend == "mariadb":
        parsed = parsed.set(drivername="mysql+" + parsed.get_driver_name())
    return parsed


def dialect_name(engine_or_url: Engine | URL) -> str:
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else engine_or_url
    return "mysql" if url.get_backend_name() == "mariadb" else url.get_backend_name()


def masked(engine_or_url: Engine | URL | str) -> str:
    if isinstance(engine_or_url, Engine):
        return engine_or_url.url.render_as_string(hide_password=True)
    if isinstance(engine_or_url, URL):
        return engine_or_url.render_as_string(hide_password=True)
    return mask_url(engine_or_url)


def make_engine(
    url: str | URL,
    *,
    check: bool = True,
    state_schema: str | None = None,
    autocommit: bool = False,
    ping: bool | None = None,
) -> Engine:
    """An engine for the URL; with `check`, connect once so bad settings fail here, clearly.
    `ping` (default: unless autocommit) checks a pooled connection before each checkout (a
    migration, whose connections are minutes old at most, needs none). The drivers learn
    numpy's scalars once anything imports numpy (`register_numpy_scalars`).
    With `state_schema`, unqualified names resolve to mlkit's state schema first: on
    PostgreSQL through the search path (then `public`), on MySQL by connecting to that
    database on the same server. With `autocommit` (a server's reads), each statement
    commits alone and a pooled connection is used as it is: no BEGIN, ROLLBACK or ping
    round trip around a read; a connection the database dropped fails one statement
    (`connection_invalidated`) and the pool reconnects."""
    parsed = parse_url(url) if isinstance(url, str) else url
    dialect = dialect_name(parsed)
    kwargs: dict = {"pool_pre_ping": not autocommit if ping is None else ping}
    if autocommit:
        kwargs |= {"isolation_level": "AUTOCOMMIT", "pool_reset_on_return": None}
    if dialect == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _sqlite_parent(parsed.database)
        kwargs["connect_args"] = {"timeout": 30}
    elif dialect == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": 5, "application_name": "mlkit"}
        if state_schema:
            kwargs["connect_args"]["options"] = search_path_option(state_schema)
    else:
        kwargs["connect_args"] = {"connect_timeout": 5, "charset": "utf8mb4"}
        if state_schema:
            parsed = parsed.set(database=state_schema)
    if state_schema:
        # Engines made from this one's URL (the dashboard's) find the state schema here.
        kwargs["execution_options"] = {STATE_SCHEMA_OPTION: state_schema}
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except NoSuchModuleError:
        raise MlkitError(
            f"no driver for {parsed.drivername!r}",
            hint="use postgresql+psycopg2:// or mysql+pymysql://",
        ) from None
    except ModuleNotFoundError as exc:
        raise MlkitError(f"database driver {exc.name!r} is not installed") from None
    if dialect == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "connect", sqlite_functions)
    elif dialect == "mysql":
        sa.event.listen(engine, "connect", _pymysql_live_encoders)
    register_numpy_scalars()
    if check:
        try:
            with engine.connect():
                pass
        except DBAPIError as exc:
            raise explain_db_error(exc, engine.url) from None
    return engine


STATE_SCHEMA_OPTION = "mlkit_state_schema"


def search_path_option(state_schema: str) -> str:
    """PostgreSQL's connect option putting mlkit's state schema before the platform's."""
    return f"-csearch_path={state_schema},public"


def state_schema_of(engine: Engine) -> str | None:
    """The state schema an engine was made with (make_engine's `state_schema`)."""
    return engine.get_execution_options().get(STATE_SCHEMA_OPTION)


def config_engine(config: Config, *, check: bool = True, autocommit: bool = False) -> Engine:
    """The engine on the config's database, its state schema first: every command's."""
    state = config.data["database"].get("state_schema") or None
    return make_engine(config.database_url, check=check, state_schema=state, autocommit=autocommit)


def sqlite_functions(dbapi_connection, _record) -> None:
    """A connect listener giving SQLite the functions source views call (mlkit_id)."""
    from .sources.views import register_sqlite_functions

    register_sqlite_functions(dbapi_connection)


_NUMPY_REGISTERED = False


def register_numpy_scalars() -> None:
    """Teach every driver numpy's scalars (NaN as NULL), once per process, so no write path
    depends on remembering `.item()`: untaught, drivers send numpy's repr as SQL text,
    quote it as a string or refuse it. Taught at once when numpy is imported already, else
    the moment anything imports it: no numpy scalar exists before that, and a command that
    never uses numpy does not pay its import (about 0.1 s of a 0.5 s start)."""
    if _NUMPY_REGISTERED:
        return
    if "numpy" in sys.modules:
        _teach_drivers_numpy()
    elif not any(isinstance(f, _AfterNumpyImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterNumpyImport())


def _pymysql_live_encoders(dbapi_connection, _record) -> None:
    """PyMySQL copies its module's encoders into each new connection; sharing them instead
    (the same entries) lets numpy's scalars, taught when numpy arrives, reach connections
    opened before it did."""
    from pymysql import converters

    if isinstance(getattr(dbapi_connection, "encoders", None), dict):
        dbapi_connection.encoders = converters.encoders


class _AfterNumpyImport:
    """An import hook that teaches the drivers numpy's scalars right after numpy's own
    import has run, then leaves the import system."""

    def find_spec(self, name, path, target=None):
        if name != "numpy":
            return None
        sys.meta_path.remove(self)
        from importlib.util import find_spec

        spec = find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        run_module = spec.loader.exec_module

        def exec_module(module) -> None:
            run_module(module)
            _teach_drivers_numpy()

        spec.loader.exec_module = exec_module
        return spec


def _teach_drivers_numpy() -> None:
    global _NUMPY_REGISTERED
    if _NUMPY_REGISTERED:
        return
    import sqlite3

    import numpy as np

    floats = (np.float16, np.float32, np.float64, np.longdouble)
    integers = tuple(
        np.sctypeDict[f"{sign}int{bits}"] for sign in ("", "u") for bits in (8, 16, 32, 64)
    )
    scalars = (*floats, *integers, np.bool_)

    def plain(value):
        item = value.item()
        return None if isinstance(item, float) and item != item else item

    for kind in scalars:
        sqlite3.register_adapter(kind, plain)
    try:
        from psycopg2.extensions import AsIs, adapt, register_adapter
    except ImportError:
        pass
    else:
        for kind in scalars:
            register_adapter(
                kind, lambda v: adapt(plain(v)) if plain(v) is not None else AsIs("NULL")
            )
    try:
        from pymysql import converters
    except ImportError:
        pass
    else:

        def escape(value, mapping=None):
            return converters.escape_item(plain(value), "utf8mb4", mapping)

        for table in (converters.encoders, converters.conversions):
            for kind in scalars:
                table[kind] = escape
    _NUMPY_REGISTERED = True


def _sqlite_parent(database: str) -> None:
    """The database's folder, and the file itself, created private (0700 / 0600) when
    missing: it holds customers' orders. SQLite takes an empty file as a new database and
    gives its -wal and -shm files the database file's mode."""
    from .datasets import private_mkdir

    path = Path(database).expanduser()
    try:
        private_mkdir(path.parent)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass  # another process created it meanwhile
    except OSError as exc:
        raise MlkitError(
            f"cannot create the SQLite database {str(path)!r}: {exc.strerror}",
            hint="choose another path in the database URL or MLKIT_HOME",
        ) from None


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the dashboard read while a cron job writes; foreign keys are off by default.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def driver_message(exc: DBAPIError, password: str | None = None) -> str:
    """The driver's whole message, a password it quotes masked."""
    text = str(exc.orig if exc.orig is not None else exc).strip()
    return text.replace(password, "***") if password else text


def first_line(exc: DBAPIError, password: str | None = None) -> str:
    """The driver's message, first line: what an error or problem line quotes."""
    text = driver_message(exc, password)
    return text.splitlines()[0] if text else type(exc).__name__


def explain_db_error(exc: DBAPIError, url: URL | None = None) -> MlkitError:
    """Turn a driver error into one line a user can act on; never includes the password."""
    password = str(url.password) if url is not None and url.password else None
    first, text = first_line(exc, password), driver_message(exc, password)
    if url is None:
        where = "the configured server"
    elif dialect_name(url) == "sqlite":
        where = url.database or "memory"
    else:
        where = f"{url.host or 'localhost'}:{url.port or _default_port(url)}"
    username = url.username if url is not None else None
    database = url.database if url is not None else None
    lowered = text.lower()
    if any(s in lowered for s in ("password authentication failed", "access denied")) or re.search(
        r"role .* does not exist", lowered
    ):
        return MlkitError(
            f"authentication failed for user {username!r} at {where}",
            hint="check the user and password (DB_PASSWORD or the database URL)",
        )
    if re.search(r"database .* does not exist|unknown database", lowered):
        return MlkitError(
            f"database {database!r} does not exist at {where}",
            hint="create it with `mlkit db init --create-database`",
        )
    if any(
        s in lowered
        for s in (
            "could not connect",
            "connection refused",
            "can't connect",
            "could not translate host",
            "name or service not known",
            "timeout expired",
            "timed out",
        )
    ):
        return MlkitError(
            f"cannot reach the database at {where}: {first}",
            hint="is the server running, and are host and port right?",
        )
    if "unable to open database file" in lowered:
        return MlkitError(
            f"cannot open SQLite file {database!r}", hint="check the path and its permissions"
        )
    return MlkitError(f"database error: {first}")


def _default_port(url: URL) -> int | str:
    return {"postgresql": 5432, "mysql": 3306}.get(dialect_name(url), "-")


def create_database(url: str | URL) -> bool:
    """Create the URL's database on PostgreSQL/MySQL if missing; True if it was created."""
    parsed = parse_url(url) if isinstance(url, str) else url
    dialect = dialect_name(parsed)
    name = parsed.database
    if dialect == "sqlite":
        if not name or name == ":memory:":
            return False
        path = Path(name).expanduser()
        existed = path.exists()
        _sqlite_parent(name)
        return not existed
    if not name:
        raise MlkitError("the database URL names no database", hint="append /<name> to the URL")
    # Connect to the server itself: PostgreSQL's maintenance database, MySQL with none.
    server = parsed._replace(database="postgres" if dialect == "postgresql" else None)
    engine = make_engine(server).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if dialect == "postgresql":
                exists = conn.execute(
                    sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
                ).first()
                if exists:
                    return False
                conn.execute(sa.text(f'CREATE DATABASE "{_ident(name)}"'))
                return True
            exists = conn.execute(
                sa.text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :n"),
                {"n": name},
            ).first()
            conn.execute(
                sa.text(
                    f"CREATE DATABASE IF NOT EXISTS `{_ident(name)}` "
                    "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                )
            )
            return not exists
    except DBAPIError as exc:
        raise explain_db_error(exc, parsed) from None
    finally:
        engine.dispose()


def _ident(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_\-$]+", name):
        raise MlkitError(
            f"refusing to create database {name!r}",
            hint="use letters, digits, '_', '-' or '$' in database names",
        )
    return name


# ---------------------------------------------------------------- schema and DDL


def kpi_view_sql(dialect: str) -> list[str]:
    """Statements that create kpi_hourly (toolkit.kpi: a kept table on PostgreSQL)."""
    from .kpi import view_sql

    return view_sql(dialect)


def ddl(dialect: str) -> str:
    """The full DDL for a dialect: what `mlkit db ddl` prints and `sql/<dialect>.sql` holds."""
    from sqlalchemy.schema import CreateIndex, CreateTable

    from .schema import metadata

    if dialect not in DIALECTS:
        raise MlkitError(
            f"unknown dialect {dialect!r}", hint=f"choose one of {', '.join(DIALECTS)}"
        )
    sa_dialect = _sa_dialect(dialect)
    parts = [f"-- mlkit schema for {dialect}; generated by `mlkit db ddl --dialect {dialect}`."]
    for table in metadata.sorted_tables:
        create = str(CreateTable(table).compile(dialect=sa_dialect)).strip()
        parts.append("\n".join(line.rstrip() for line in create.splitlines()) + ";")
        for index in sorted(table.indexes, key=lambda i: i.name):
            parts.append(str(CreateIndex(index).compile(dialect=sa_dialect)).strip() + ";")
    parts.extend(stmt + ";" for stmt in kpi_view_sql(dialect))
    return "\n\n".join(parts) + "\n"


def _sa_dialect(dialect: str):
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import psycopg2

        return psycopg2.dialect()
    if dialect == "mysql":
        from sqlalchemy.dialects.mysql import pymysql

        return pymysql.dialect()
    from sqlalchemy.dialects.sqlite import pysqlite

    return pysqlite.dialect()


def init_schema(
    engine: Engine, sources: Sources | None = None, indexes_added: list[str] | None = None
) -> list[str]:
    """Create every missing table, index and the KPI view; return the tables created, and
    append to `indexes_added` the indexes added to tables that were there already. With
    `sources`, mlkit's own tables go in the state schema and each mapped input becomes a
    view there. A table of mlkit's name with other columns stops it, naming the fix."""
    from .schema import metadata
    from .sources.apply import (
        apply_views,
        ensure_state_schema,
        own_tables,
        refuse_conflicts,
        state_location,
    )

    dialect = dialect_name(engine)
    where = state_location(sources)
    own = own_tables(sources)
    try:
        with engine.begin() as conn:
            ensure_state_schema(conn, sources)
            existing = set(sa.inspect(conn).get_table_names(schema=where))
            refuse_conflicts(conn, existing, sources, where)
            if sources is None or not sources.active:
                metadata.create_all(conn, checkfirst=True)
            else:
                # Not checkfirst: that would also see the platform's tables on the search path.
                for table in own:
                    if table.name not in existing:
                        table.create(conn)
            # Tables made by an older mlkit get the indexes added since, lose those retired.
            for table in own:
                if table.name in existing:
                    added = _create_missing_indexes(conn, table, where)
                    if indexes_added is not None:
                        indexes_added.extend(added)
                    _drop_retired_indexes(conn, table, where)
            if sources is not None and sources.active:
                apply_views(conn, sources)
            else:
                for stmt in kpi_view_sql(dialect):
                    conn.execute(sa.text(stmt))
    except DBAPIError as exc:
        raise explain_db_error(exc, engine.url) from None
    return [t.name for t in own if t.name not in existing]


def _create_missing_indexes(conn: sa.Connection, table: sa.Table, where: str | None) -> list[str]:
    """The indexes an older mlkit did not make, created; their names."""
    have = {i["name"] for i in sa.inspect(conn).get_indexes(table.name, schema=where)}
    missing = sorted((i for i in table.indexes if i.name not in have), key=lambda i: i.name)
    for index in missing:
        index.create(conn)
    return [index.name for index in missing]


def _drop_retired_indexes(conn: sa.Connection, table: sa.Table, where: str | None) -> None:
    from .schema import RETIRED_INDEXES

    retired = set(RETIRED_INDEXES.get(table.name, ()))
    if not retired:
        return
    have = {i["name"] for i in sa.inspect(conn).get_indexes(table.name, schema=where)}
    # A stand-in table, so the DROP names the right table and schema on every dialect.
    stand_in = sa.Table(table.name, sa.MetaData(), sa.Column("id"), schema=where)
    for name in sorted(retired & have):
        sa.Index(name, stand_in.c.id).drop(conn)


def analyze(engine: Engine, names: list[str]) -> None:
    """Fresh planner statistics for tables just bulk-loaded (`[schema.]name`), on the
    dialects that keep them per table: PostgreSQL and MySQL."""
    statement = {"postgresql": "ANALYZE {}", "mysql": "ANALYZE TABLE {}"}.get(engine.dialect.name)
    if statement is None:
        return
    quote = engine.dialect.identifier_preparer.quote
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for name in names:
            conn.exec_driver_sql(statement.format(".".join(quote(n) for n in name.split("."))))


def refresh_kpi(engine: Engine) -> None:
    """Bring kpi_hourly up to date where it is kept (PostgreSQL); a plain view elsewhere."""
    from .kpi import refresh_kpi as refresh

    refresh(engine)


def table_counts(
    engine: Engine, foreign: dict[str, list[str]] | None = None
) -> dict[str, int | None]:
    """Row count of every schema table (through its view where an input is mapped); None
    for a table that does not exist yet, or whose name a platform's table with other
    columns holds (those are put in `foreign` with the mlkit columns they lack)."""
    from .schema import metadata
    from .sources.apply import foreign_tables

    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            tables = set(inspector.get_table_names())
            others = foreign_tables(conn, tables, None)
            if foreign is not None:
                foreign.update(others)
            existing = (tables - set(others)) | set(inspector.get_view_names())
            counts: dict[str, int | None] = {}
            for table in metadata.sorted_tables:
                if table.name in existing:
                    counts[table.name] = conn.execute(
                        sa.select(sa.func.count()).select_from(table)
                    ).scalar_one()
                else:
                    counts[table.name] = None
            return dict(sorted(counts.items()))
    except DBAPIError as exc:
        raise explain_db_error(exc, engine.url) from None


def relation_names(conn: sa.Connection) -> set[str]:
    """Tables and views of the connection's default (state) schema: a mapped input is a view."""
    inspector = sa.inspect(conn)
    return set(inspector.get_table_names()) | set(inspector.get_view_names())


@dataclass(frozen=True)
class SchemaInit:
    """What `mlkit db init` did: the database it reached and what it created there."""

    dialect: str
    database: str  # the URL, password masked
    name: str | None  # the database's own name
    database_created: bool
    tables_created: list[str]
    views: list[str] = field(default_factory=list)  # the views of mapped (and derived) inputs
    indexes_added: list[str] = field(default_factory=list)  # to tables an older mlkit made

    def as_dict(self) -> dict:
        document = {
            "dialect": self.dialect,
            "database": self.database,
            "database_created": self.database_created,
            "tables_created": self.tables_created,
            "indexes_added": self.indexes_added,
        }
        if self.views:
            document["views"] = self.views
        return document


def init_database(
    config: Config, connect: Callable[[], Engine], *, create: bool = False
) -> SchemaInit:
    """`mlkit db init`: with `create`, the URL's database itself first (it must exist before
    `connect` opens an engine on it), then the state schema (MySQL: database) when one is
    set, then every missing table, index, source view of `sources:` and the KPI view."""
    from .sources.mapping import sources_from_config

    url = config.database_url
    sources = sources_from_config(config)
    database_created = create_database(url) if create else False
    if sources.state_schema:
        _create_state_schema(url, sources.state_schema)
    engine = connect()
    indexes: list[str] = []
    tables = init_schema(engine, sources, indexes)
    views = sources.views if sources.active else []
    return SchemaInit(
        dialect_name(engine),
        masked(engine),
        engine.url.database,
        database_created,
        tables,
        views,
        indexes,
    )


def _create_state_schema(url: str, state: str) -> None:
    """The state schema before any engine opens on it (so the engine's default schema is
    it): a schema on PostgreSQL, a database of the same server on MySQL."""
    parsed = parse_url(url)
    if dialect_name(parsed) == "mysql":
        create_database(parsed.set(database=state))
        return
    engine = make_engine(parsed)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{_ident(state)}"'))
    except DBAPIError as exc:
        raise explain_db_error(exc, engine.url) from None
    finally:
        engine.dispose()


def database_status(engine: Engine) -> dict:
    """`mlkit db status`: the dialect, the masked URL and every table's row count (None for
    a table not created yet); `foreign_tables`, when there are any, names the tables of
    mlkit's names that are the platform's (other columns) and are not counted."""
    foreign: dict[str, list[str]] = {}
    counts = table_counts(engine, foreign)
    document = {"dialect": dialect_name(engine), "database": masked(engine), "tables": counts}
    if foreign:
        document["foreign_tables"] = foreign
    return document


# ---------------------------------------------------------------- bulk loads


def bulk_insert(
    conn: sa.Connection,
    table: sa.Table,
    frame: pd.DataFrame,
    *,
    on_rows: Callable[[int], None] | None = None,
) -> int:
    """Append a frame to a table inside the caller's transaction, by the dialect's fastest path
    (COPY on PostgreSQL), in chunks so memory stays flat however long the frame is."""
    if frame.empty:
        return 0
    columns = list(frame.columns)
    unknown = [c for c in columns if c not in table.c]
    if unknown:
        raise ValueError(f"{table.name} has no column(s) {unknown}")
    frame = _integers_as_integers(table, frame)
    from .driver_rows import driver_rows, insert_sql

    copy = conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg2"
    for start in range(0, len(frame), LOAD_CHUNK_ROWS):
        chunk = frame.iloc[start : start + LOAD_CHUNK_ROWS]
        rows = None if copy else driver_rows(table, chunk)
        if copy:
            _copy_chunk(conn, table, chunk)
        elif rows is not None:  # executemany; PyMySQL sends it as multi-row INSERTs
            conn.exec_driver_sql(insert_sql(conn, table, list(chunk.columns)), rows)
        else:
            conn.execute(table.insert(), _records(table, chunk))
        if on_rows:
            on_rows(len(chunk))
    return len(frame)


def _integers_as_integers(table: sa.Table, frame: pd.DataFrame) -> pd.DataFrame:
    """Integer columns held as floats (NaN for NULL) or objects become nullable integers,
    so COPY never sends "3.0" to a SMALLINT and drivers never see a NaN."""
    import pandas as pd

    converted = {}
    for name in frame.columns:
        if isinstance(table.c[name].type, sa.Integer) and not pd.api.types.is_integer_dtype(
            frame[name]
        ):
            converted[name] = pd.to_numeric(frame[name]).astype("Int64")
    return frame.assign(**converted) if converted else frame


def _copy_chunk(conn: sa.Connection, table: sa.Table, chunk: pd.DataFrame) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    out = chunk
    json_columns = [n for n in out.columns if isinstance(table.c[n].type, sa.JSON)]
    if json_columns:
        out = out.assign(**{n: out[n].map(_json_text) for n in json_columns})
    # Arrow's CSV writer is much faster than DataFrame.to_csv, writes
    # NULL as an empty field and quotes every string, so an empty string stays one.
    buffer = io.BytesIO()
    arrow = pa.Table.from_pandas(out, preserve_index=False)
    pacsv.write_csv(arrow, buffer, pacsv.WriteOptions(include_header=False))
    buffer.seek(0)
    columns = ", ".join(f'"{c}"' for c in out.columns)
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.copy_expert(f'COPY "{table.name}" ({columns}) FROM STDIN WITH (FORMAT csv)', buffer)
    finally:
        cursor.close()


def _records(table: sa.Table, chunk: pd.DataFrame) -> list[dict]:
    import numpy as np
    import pandas as pd

    columns: dict[str, list] = {}
    for name in chunk.columns:
        series = chunk[name]
        if pd.api.types.is_datetime64_any_dtype(series):
            values = [None if pd.isna(v) else v.to_pydatetime() for v in series]
        elif pd.api.types.is_bool_dtype(series):
            values = [bool(v) for v in series.to_numpy()]
        elif pd.api.types.is_integer_dtype(series):
            values = [None if v is pd.NA else int(v) for v in series.astype(object)]
        elif pd.api.types.is_float_dtype(series):
            arr = series.to_numpy(dtype=float)
            values = [None if np.isnan(v) else v for v in arr.tolist()]
        else:
            values = [None if is_missing(v) else v for v in series.astype(object)]
            if isinstance(table.c[name].type, sa.JSON):
                values = [json.loads(v) if isinstance(v, str) else v for v in values]
        columns[name] = values
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _json_text(value) -> str | None:
    if is_missing(value):
        return None
    return value if isinstance(value, str) else json.dumps(value)


def is_missing(value) -> bool:
    """None, NaN or pandas NA: what a database stores as NULL."""
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN and pandas NA
    except (TypeError, ValueError):
        return False


def sync_sequences(conn: sa.Connection, tables: list[sa.Table]) -> None:
    """After loading explicit ids, move PostgreSQL's sequences past them (MySQL and SQLite
    already continue after the largest id)."""
    if conn.dialect.name != "postgresql":
        return
    for table in tables:
        pk = list(table.primary_key.columns)
        if len(pk) != 1 or not isinstance(pk[0].type, sa.Integer):
            continue
        column = pk[0].name
        sequence = conn.execute(
            sa.text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": column}
        ).scalar()
        if sequence:
            conn.execute(
                sa.text(
                    f'SELECT setval(:s, COALESCE((SELECT MAX("{column}") '
                    f'FROM "{table.name}"), 0) + 1, false)'
                ),
                {"s": sequence},
            )


def prepare_bulk_transaction(conn: sa.Connection) -> None:
    """Settings for one large loading transaction; they end with it."""
    if conn.dialect.name == "postgresql":
        # Skips waiting for the WAL flush at commit: a crash loses the whole load, never half.
        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")


# ---------------------------------------------------------------- bulk reads


def _read_copy_csv(data: io.BytesIO, columns: list) -> pd.DataFrame:
    """Parse COPY's CSV with Arrow (multi-threaded C++); an unquoted empty field is NULL,
    a quoted one an empty string, as COPY writes them."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    text = {c.name: pa.string() for c in columns if isinstance(c.type, (sa.String, sa.Text))}
    table = pacsv.read_csv(
        data,
        convert_options=pacsv.ConvertOptions(
            column_types=text,
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        ),
    )
    return table.to_pandas()


def read_frame(conn: sa.Connection, query: sa.Select) -> pd.DataFrame:
    """A select's rows as a frame, typed by the select's columns; COPY on PostgreSQL."""
    import pandas as pd

    columns = list(query.selected_columns)
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg2":
        sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
        buffer = io.BytesIO()
        cursor = conn.connection.driver_connection.cursor()
        try:
            cursor.copy_expert(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER true)", buffer)
        finally:
            cursor.close()
        buffer.seek(0)
        frame = _read_copy_csv(buffer, columns)
    else:
        result = conn.execute(query)
        frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    for column in columns:
        name = column.name
        if isinstance(column.type, sa.DateTime):
            frame[name] = pd.to_datetime(frame[name]).astype("datetime64[us]")
        elif isinstance(column.type, sa.Boolean):
            # PostgreSQL's CSV says t/f; the other drivers give bools or 0/1.
            frame[name] = (
                frame[name].map({"t": True, "f": False, True: True, False: False}).astype("boolean")
            )
        elif isinstance(column.type, sa.Integer):
            frame[name] = pd.to_numeric(frame[name])
        elif isinstance(column.type, (sa.Float, sa.Numeric)):
            frame[name] = pd.to_numeric(frame[name]).astype(float)
    return frame
