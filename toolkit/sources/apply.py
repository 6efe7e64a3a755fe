"""Creating the source views (`mlkit sources apply`, and `mlkit db init` through it), and
telling mlkit's own tables from the platform's tables that only share a name."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from ..errors import MlkitError
from ..schema import metadata
from .mapping import DERIVED, INPUTS, Sources, is_identifier
from .views import derived_body, quote, reflect, view_body, view_name

STATE_HINT = (
    "map the platform's table under `sources:` and set `database.state_schema: mlkit`, so "
    "mlkit keeps its own tables and views apart from the platform's"
)


def view_bodies(conn: Connection, sources: Sources) -> dict[str, str]:
    """The SELECT of every view mlkit keeps (mapped inputs, then the derived ones); an
    unreachable source or a mapped column it has not got is an error naming the key."""
    bodies = {}
    for name, src in sources.inputs.items():
        shape = reflect(conn, sources, src)
        if not shape.reachable:
            raise MlkitError(
                f"{src.key}: cannot read {src.described}: {shape.error}",
                hint="run `mlkit sources check` for every problem of the mapping",
            )
        for target, expr in src.columns.items():
            if src.table is not None and is_identifier(expr) and expr.lower() not in shape.names:
                raise MlkitError(
                    f"{src.key}.columns.{target}: {src.table} has no column {expr!r}",
                    hint="run `mlkit sources check` to see the columns it has",
                )
        bodies[name] = view_body(conn.dialect, sources, src, shape)
    for name in sources.derived:
        bodies[name] = derived_body(conn.dialect, sources, name)
    return bodies


def state_location(sources: Sources | None) -> str | None:
    """The schema argument for reflecting mlkit's own objects: the state schema on
    PostgreSQL; on MySQL the engine is connected to the state database already."""
    if sources is None or sources.dialect != "postgresql":
        return None
    return sources.state_schema


def ensure_state_schema(conn: Connection, sources: Sources | None) -> None:
    if sources is not None and sources.state_schema and sources.dialect == "postgresql":
        conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {quote(conn, sources.state_schema)}"))


@contextmanager
def platform_first(conn: Connection, sources: Sources) -> Iterator[None]:
    """Unqualified names in the user's SQL mean the platform's tables, not mlkit's tables
    of the same name in the state schema: resolve them against the platform first while
    views are probed and created (a view keeps the tables it resolved)."""
    if not sources.state_schema or sources.dialect == "sqlite":
        yield
        return
    state, platform = quote(conn, sources.state_schema), quote(conn, sources.platform or "")
    if sources.dialect == "postgresql":
        conn.execute(sa.text(f"SET LOCAL search_path TO {platform}, {state}"))
        yield
        conn.execute(sa.text(f"SET LOCAL search_path TO {state}, {platform}"))
        return
    current = conn.execute(sa.text("SELECT DATABASE()")).scalar()
    conn.execute(sa.text(f"USE {platform}"))
    try:
        yield
    finally:
        if current:
            conn.execute(sa.text(f"USE {quote(conn, current)}"))


def apply_views(conn: Connection, sources: Sources) -> list[str]:
    """Re-create every source view and the KPI view over them in the caller's transaction;
    views of inputs no longer mapped are dropped from the state schema."""
    from ..db import kpi_view_sql

    dialect = conn.dialect.name
    where = state_location(sources)
    views = set(sa.inspect(conn).get_view_names(schema=where))
    with platform_first(conn, sources):
        bodies = view_bodies(conn, sources)
        stale = []
        if sources.state_schema:
            stale = [n for n in (*INPUTS, *DERIVED) if n in views and n not in bodies]
        cascade = " CASCADE" if dialect == "postgresql" else ""
        # Dependants first: derived views read the orders view.
        for name in [*reversed(list(bodies)), *stale]:
            if dialect != "mysql" or name in stale:
                qualified = view_name(conn.dialect, sources, name)
                conn.execute(sa.text(f"DROP VIEW IF EXISTS {qualified}{cascade}"))
        verb = "CREATE OR REPLACE VIEW" if dialect == "mysql" else "CREATE VIEW"
        for name, body in bodies.items():
            conn.execute(sa.text(f"{verb} {view_name(conn.dialect, sources, name)} AS\n{body}"))
    for stmt in kpi_view_sql(dialect):
        conn.execute(sa.text(stmt))
    return list(bodies)


def apply_sources(engine: Engine, config) -> dict:
    """`mlkit sources apply`: the views of the config's `sources:` again after the mapping
    changed, in one transaction (PostgreSQL and SQLite; MySQL commits each view)."""
    from ..db import explain_db_error
    from .mapping import sources_from_config

    sources = sources_from_config(config)
    try:
        with engine.begin() as conn:
            ensure_state_schema(conn, sources)
            views = apply_views(conn, sources)
    except DBAPIError as exc:
        raise explain_db_error(exc, engine.url) from None
    return {"state_schema": sources.state_schema, "views": views}


def foreign_tables(conn: Connection, names: set[str], where: str | None) -> dict[str, list[str]]:
    """Tables named like one of mlkit's that lack its key or required columns: the
    platform's, not mlkit's; each with the mlkit columns it has not got. One reflection."""
    wanted = [n for n in names if n in metadata.tables]
    if not wanted:
        return {}
    found = sa.inspect(conn).get_multi_columns(schema=where, filter_names=wanted)
    out = {}
    for (_, name), columns in found.items():
        have = {c["name"].lower() for c in columns}
        table = metadata.tables[name]
        needed = [c.name for c in table.columns if c.primary_key or not c.nullable]
        missing = [c for c in needed if c.lower() not in have]
        if missing:
            out[name] = missing
    return dict(sorted(out.items()))


def refuse_conflicts(
    conn: Connection, existing: set[str], sources: Sources | None, where: str | None
) -> None:
    """Stop `db init` before it touches a table of mlkit's name that is not mlkit's."""
    from ..db import KPI_VIEW

    mapped = set(sources.views) if sources is not None else set()
    for name in sorted(existing & mapped):
        what = f"sources.{name}" if name in sources.inputs else "the mapped sources.orders"
        hint = (
            f"it is mlkit's own {name} from before the mapping: move its rows out and drop it "
            f"(DROP TABLE {sources.state_schema}.{name}), then run `mlkit db init` again"
            if sources.state_schema
            else "set `database.state_schema: mlkit` so mlkit's views live apart from the "
            "platform's tables"
        )
        raise MlkitError(f"table {name} exists where the view of {what} goes", hint=hint)
    if KPI_VIEW in existing:
        raise MlkitError(f"table {KPI_VIEW} exists and is not mlkit's view", hint=STATE_HINT)
    for name, missing in foreign_tables(conn, existing - mapped, where).items():
        raise MlkitError(
            f"table {name} exists with other columns (no {', '.join(missing)})", hint=STATE_HINT
        )


def own_tables(sources: Sources | None) -> list[sa.Table]:
    """mlkit's own tables in creation order: every table but the mapped inputs, foreign keys
    to a mapped input (a view) left out."""
    mapped = set(sources.views) if sources is not None else set()
    out = []
    for table in metadata.sorted_tables:
        if table.name in mapped:
            continue
        if any(fk.column.table.name in mapped for fk in table.foreign_keys):
            table = _without_foreign_keys(table, mapped)
        out.append(table)
    return out


def _without_foreign_keys(table: sa.Table, mapped: set[str]) -> sa.Table:
    copy = table.to_metadata(sa.MetaData())
    for constraint in list(copy.foreign_key_constraints):
        if constraint.elements[0].target_fullname.split(".")[0] in mapped:
            copy.constraints.discard(constraint)
            for element in constraint.elements:
                element.parent.foreign_keys.discard(element)
    return copy
