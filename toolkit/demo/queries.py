"""Queries the demo generators share to read back where a world stands."""

from __future__ import annotations

import sqlalchemy as sa


def latest_rows(table: sa.Table, group: str, time: str, *columns) -> sa.Select:
    """`columns` of the rows of `table` at the latest `time` of each `group` (ties all kept)."""
    latest = (
        sa.select(table.c[group].label("group_key"), sa.func.max(table.c[time]).label("latest"))
        .group_by(table.c[group])
        .subquery()
    )
    return sa.select(*columns).join_from(
        latest,
        table,
        sa.and_(table.c[group] == latest.c.group_key, table.c[time] == latest.c.latest),
    )
