"""A set-based upsert of a frame into any table on a key, in the caller's transaction and
in the same words on SQLite, PostgreSQL and MySQL: the frame goes into a temporary staging
table by the dialect's bulk path, then one UPDATE ... FROM and one INSERT ... SELECT move it
across. Rows equal to what is stored are counted as skipped and left untouched."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from ..db import bulk_insert, sync_sequences

if TYPE_CHECKING:
    import pandas as pd


def _staging(conn: sa.Connection, table: sa.Table, columns: list[str], keys: list[str]):
    name = f"mlkit_load_{table.name}"
    if conn.dialect.name == "mysql":
        # A temporary table outlives a rolled-back transaction on MySQL.
        conn.execute(sa.text(f"DROP TEMPORARY TABLE IF EXISTS {name}"))
    staging = sa.Table(
        name,
        sa.MetaData(),
        *[sa.Column(c, table.c[c].type, primary_key=c in keys) for c in columns],
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DROP",
    )
    staging.create(conn)
    return staging


def upsert_frame(
    conn: sa.Connection,
    table: sa.Table,
    frame: pd.DataFrame,
    keys: list[str],
    *,
    insert_only: tuple[str, ...] = (),
    stamp: tuple[str, ...] = (),
) -> dict[str, int]:
    """Insert the frame's new rows and update the changed ones, matched on `keys` (unique
    within the frame); columns in `insert_only` (defaults the file did not give) are written
    on insert and never overwrite a stored value; `stamp` columns (when a row was computed)
    are not compared, and written with a changed row. Returns inserted, updated and skipped."""
    if frame.empty:
        return {"inserted": 0, "updated": 0, "skipped": 0}
    columns = list(frame.columns)
    staging = _staging(conn, table, columns, keys)
    bulk_insert(conn, staging, frame)
    counts = upsert_staged(conn, table, staging, keys, insert_only=insert_only, stamp=stamp)
    if conn.dialect.name != "postgresql":
        staging.drop(conn)
    return counts


def upsert_staged(
    conn: sa.Connection,
    table: sa.Table,
    staging: sa.Table,
    keys: list[str],
    *,
    insert_only: tuple[str, ...] = (),
    stamp: tuple[str, ...] = (),
) -> dict[str, int]:
    """upsert_frame's merge from rows already in `staging` (its columns a subset of the
    table's, `keys` unique): the Spark engine stages them itself over JDBC."""
    columns = [c.name for c in staging.columns]
    rows = conn.execute(sa.select(sa.func.count()).select_from(staging)).scalar_one()
    on_key = sa.and_(*[table.c[k] == staging.c[k] for k in keys])
    compared = [c for c in columns if c not in keys and c not in insert_only + stamp]
    same = sa.and_(sa.true(), *[table.c[c].is_not_distinct_from(staging.c[c]) for c in compared])
    count = sa.select(sa.func.count()).select_from(staging.join(table, on_key))
    matched = conn.execute(count).scalar_one()
    unchanged = conn.execute(count.where(same)).scalar_one()
    if compared and matched > unchanged:
        conn.execute(
            sa.update(table)
            .values({c: staging.c[c] for c in (*compared, *stamp)})
            .where(on_key, sa.not_(same))
        )
    if matched < rows:
        absent = ~sa.exists(sa.select(sa.literal(1)).select_from(table).where(on_key))
        select = sa.select(*[staging.c[c] for c in columns]).where(absent)
        conn.execute(sa.insert(table).from_select(columns, select))
    if conn.dialect.name == "postgresql":
        sync_sequences(conn, [table])
    return {"inserted": rows - matched, "updated": matched - unchanged, "skipped": unchanged}
