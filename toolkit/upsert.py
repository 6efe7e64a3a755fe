"""Write a recomputed frame over a table's rows, touching only the rows that changed.

Deleting a range and inserting it again leaves a dead row per live one on PostgreSQL (and
rewrites every page and index entry on every dialect) even when nothing changed; here the
frame goes to a temporary staging table by the dialect's bulk path, then three set-based
statements: delete the scope's rows the frame no longer has, update the rows whose values
differ (NULL-safe comparison), insert the rows that are new.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from .db import bulk_insert

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Merged:
    inserted: int
    updated: int
    deleted: int

    def as_dict(self) -> dict:
        return {"inserted": self.inserted, "updated": self.updated, "deleted": self.deleted}


def _staging(conn: sa.Connection, table: sa.Table) -> sa.Table:
    """An empty temporary table of `table`'s columns, private to this connection."""
    name = f"{table.name}_stage"
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.exec_driver_sql(f'DROP TABLE IF EXISTS pg_temp."{name}"')
        conn.exec_driver_sql(
            f'CREATE TEMP TABLE "{name}" (LIKE "{table.name}" INCLUDING DEFAULTS) ON COMMIT DROP'
        )
    elif dialect == "mysql":
        conn.exec_driver_sql(f"DROP TEMPORARY TABLE IF EXISTS `{name}`")
        conn.exec_driver_sql(f"CREATE TEMPORARY TABLE `{name}` LIKE `{table.name}`")
    else:
        conn.exec_driver_sql(f'DROP TABLE IF EXISTS temp."{name}"')
        conn.exec_driver_sql(f'CREATE TEMP TABLE "{name}" AS SELECT * FROM "{table.name}" WHERE 0')
    return sa.Table(name, sa.MetaData(), *[sa.Column(c.name, c.type) for c in table.c])


def _drop(conn: sa.Connection, stage: sa.Table) -> None:
    dialect = conn.dialect.name
    if dialect == "mysql":
        conn.exec_driver_sql(f"DROP TEMPORARY TABLE IF EXISTS `{stage.name}`")
    elif dialect == "sqlite":
        conn.exec_driver_sql(f'DROP TABLE IF EXISTS temp."{stage.name}"')
    else:
        conn.exec_driver_sql(f'DROP TABLE IF EXISTS pg_temp."{stage.name}"')


def merge_frame(
    conn: sa.Connection,
    table: sa.Table,
    frame: pd.DataFrame,
    *,
    key: str,
    scope: sa.ColumnElement,
    stamp: tuple[str, ...] = (),
    on_rows: Callable[[int], None] | None = None,
) -> Merged:
    """Make `table`'s rows within `scope` (and any row of a key in `frame`) equal `frame`,
    in the caller's transaction: rows of `scope` the frame lacks go, rows that differ in a
    column other than `key` and the `stamp` columns (when they were computed, say) are
    updated, stamp included, and new keys are inserted. Unchanged rows are not written."""
    stage = _staging(conn, table)
    bulk_insert(conn, stage, frame, on_rows=on_rows)
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f'ANALYZE "{stage.name}"')
    same_key = table.c[key] == stage.c[key]
    deleted = conn.execute(
        table.delete().where(scope, ~sa.exists(sa.select(1).where(same_key)))
    ).rowcount
    written = [c for c in frame.columns if c != key]
    compared = [c for c in written if c not in stamp]
    changed = sa.or_(*[table.c[c].is_distinct_from(stage.c[c]) for c in compared])
    updated = conn.execute(
        table.update().where(same_key, changed).values({c: stage.c[c] for c in written})
    ).rowcount
    columns = list(frame.columns)
    new = sa.select(*[stage.c[c] for c in columns]).where(
        ~sa.exists(sa.select(1).select_from(table).where(same_key))
    )
    inserted = conn.execute(table.insert().from_select(columns, new)).rowcount
    # On failure the transaction rolls back; the next merge drops a leftover stage first.
    _drop(conn, stage)
    return Merged(inserted, updated, deleted)
