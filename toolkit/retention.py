"""Data retention: old orders and their predictions move to their archive tables.

Each batch of consecutive order ids is one transaction that copies, checks and deletes, so a crash
leaves every row in exactly one place and a rerun carries on. Runs hold the `retention` job lock, so
two started at once run one after the other.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .clock import parse_moment, utcnow
from .errors import MlkitError
from .locks import job_lock
from .schema import fraud_predictions, fraud_predictions_archive, orders, orders_archive

# Archiving anything younger is almost certainly a typo (0d, 1h).
MIN_AGE = timedelta(days=1)


# ---------------------------------------------------------------- retention


def cutoff_of(older_than: str, now: datetime) -> datetime:
    cutoff = parse_moment(older_than, now=now, option="--older-than")
    if cutoff > now - MIN_AGE:
        raise MlkitError(
            f"--older-than {older_than!r} would archive rows younger than a day "
            f"(cut-off {cutoff:%Y-%m-%d %H:%M})",
            hint="use a duration like 365d, or a date at least a day ago",
        )
    return cutoff


def _counts(conn: sa.Connection) -> dict[str, int]:
    return {
        t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
        for t in (orders, orders_archive, fraud_predictions, fraud_predictions_archive)
    }


def _require_tables(engine: Engine) -> None:
    with engine.connect() as conn:
        existing = set(sa.inspect(conn).get_table_names())
    missing = [
        t.name
        for t in (orders, orders_archive, fraud_predictions, fraud_predictions_archive)
        if t.name not in existing
    ]
    if missing:
        raise MlkitError(
            f"missing table(s): {', '.join(missing)}", hint="create them with `mlkit db init`"
        )


def _orphan_predictions(cutoff: datetime):
    """Predictions older than the cut-off whose order is no longer live."""
    p = fraud_predictions
    return sa.and_(
        p.c.created_at < cutoff,
        ~sa.exists().where(orders.c.order_id == p.c.order_id),
    )


def _plan(conn: sa.Connection, cutoff: datetime) -> dict[str, int]:
    def count(table: sa.Table, where) -> int:
        return int(
            conn.execute(sa.select(sa.func.count()).select_from(table).where(where)).scalar_one()
        )

    old_orders = sa.select(orders.c.order_id).where(orders.c.created_at < cutoff)
    p = fraud_predictions
    # Two disjoint sets counted apart: one OR of both defeats the planners' (anti-)joins.
    return {
        "orders": count(orders, orders.c.created_at < cutoff),
        "predictions": count(p, p.c.order_id.in_(old_orders))
        + count(p, _orphan_predictions(cutoff)),
    }


def _mismatch(text: str) -> MlkitError:
    """A batch would delete a row it did not find in the archive: it is rolled back."""
    return MlkitError(
        f"retention batch rolled back, nothing lost: {text}",
        hint="another process may be writing the archive tables; run again when it is done",
    )


def _copy_then_delete(
    conn: sa.Connection,
    source: sa.Table,
    archive: sa.Table,
    key: str,
    where: sa.ColumnElement,
    now: datetime,
) -> int:
    """Copy the rows of `source` matching `where` into `archive` (those not there yet),
    check that every one is archived, then delete them; returns the rows moved."""
    names = [c.name for c in source.columns]
    pending = int(
        conn.execute(sa.select(sa.func.count()).select_from(source).where(where)).scalar_one()
    )
    if pending == 0:
        return 0
    rows = sa.select(
        *[source.c[n] for n in names], sa.literal(now, sa.DateTime()).label("archived_at")
    ).where(where)
    insert = _insert_missing(conn, source, archive, key, [*names, "archived_at"], rows)
    inserted = conn.execute(insert).rowcount
    archived = inserted
    if inserted != pending:  # some were archived before: count them all in the archive
        archived = int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(source.join(archive, archive.c[key] == source.c[key]))
                .where(where)
            ).scalar_one()
        )
    if archived != pending:
        raise _mismatch(f"{source.name}: {pending} rows to move but {archived} archived")
    deleted = conn.execute(source.delete().where(where)).rowcount
    if deleted != pending:
        raise _mismatch(f"{source.name}: {pending} rows to move but {deleted} deleted")
    return pending


def _insert_missing(
    conn: sa.Connection, source: sa.Table, archive: sa.Table, key: str, names: list, rows
):
    """INSERT ... SELECT that skips rows whose key is archived already, through the key's
    index: ON CONFLICT DO NOTHING on PostgreSQL and SQLite (an anti-join there is planned
    on the archive's stale statistics, as a scan per row), NOT EXISTS on MySQL."""
    dialect = conn.dialect.name
    if dialect in ("postgresql", "sqlite"):
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(archive).from_select(names, rows).on_conflict_do_nothing(index_elements=[key])
    return archive.insert().from_select(
        names, rows.where(~sa.exists().where(archive.c[key] == source.c[key]))
    )


def _order_batch(conn: sa.Connection, cutoff: datetime, after: int, size: int) -> int | None:
    """The highest order id of the next batch of old orders after `after`, or None."""
    ids = (
        sa.select(orders.c.order_id)
        .where(orders.c.created_at < cutoff, orders.c.order_id > after)
        .order_by(orders.c.order_id)
        .limit(size)
        .subquery()
    )
    return conn.execute(sa.select(sa.func.max(ids.c.order_id))).scalar()


def _prediction_batch(conn: sa.Connection, cutoff: datetime, after: int, size: int) -> int | None:
    p = fraud_predictions
    ids = (
        sa.select(p.c.id)
        .where(_orphan_predictions(cutoff), p.c.id > after)
        .order_by(p.c.id)
        .limit(size)
        .subquery()
    )
    return conn.execute(sa.select(sa.func.max(ids.c.id))).scalar()


def _move_orders(
    conn: sa.Connection, cutoff: datetime, last: int, high: int, now: datetime
) -> dict[str, int]:
    """Archive the old orders with ids in (last, high], and their predictions first: they
    point at those orders."""
    batch = sa.and_(
        orders.c.order_id > last,
        orders.c.order_id <= high,
        orders.c.created_at < cutoff,
    )
    p = fraud_predictions
    # The id range lets the planners read predictions through their order index.
    batch_predictions = sa.and_(
        p.c.order_id > last,
        p.c.order_id <= high,
        p.c.order_id.in_(sa.select(orders.c.order_id).where(batch)),
    )
    predictions = _copy_then_delete(
        conn, p, fraud_predictions_archive, "id", batch_predictions, now
    )
    moved_orders = _copy_then_delete(conn, orders, orders_archive, "order_id", batch, now)
    return {"orders": moved_orders, "predictions": predictions}


def _move_orphan_predictions(
    conn: sa.Connection, cutoff: datetime, last: int, high: int, now: datetime
) -> dict[str, int]:
    """Archive the old predictions without a live order with ids in (last, high]."""
    p = fraud_predictions
    batch = sa.and_(p.c.id > last, p.c.id <= high, _orphan_predictions(cutoff))
    return {"predictions": _copy_then_delete(conn, p, fraud_predictions_archive, "id", batch, now)}


def run_retention(
    engine: Engine,
    *,
    older_than: str = "365d",
    batch_size: int = 10_000,
    dry_run: bool = False,
    now: datetime | None = None,
    on_batch: Callable[[int, dict[str, int]], None] | None = None,
) -> dict[str, Any]:
    """Move orders older than the cut-off (with their predictions) and orphaned old predictions into
    the archive, `batch_size` rows per transaction; `on_batch(batch_number, moved_so_far)` follows
    each commit."""
    if batch_size < 1:
        raise MlkitError(f"the batch size must be at least 1 (got {batch_size})")
    started = time.perf_counter()
    now = now or utcnow()
    cutoff = cutoff_of(older_than, now)
    _require_tables(engine)
    with engine.connect() as conn:
        before = _counts(conn)
        plan = _plan(conn, cutoff)
    document: dict[str, Any] = {
        "dry_run": dry_run,
        "cutoff": cutoff,
        "older_than": older_than,
        "batch_size": batch_size,
        "to_move": plan,
        "moved": {"orders": 0, "predictions": 0},
        "batches": 0,
        "before": before,
    }
    if dry_run:
        document["seconds"] = round(time.perf_counter() - started, 3)
        return document
    moved = document["moved"]
    with job_lock(engine, "retention"):
        for next_batch, move in (
            (_order_batch, _move_orders),
            (_prediction_batch, _move_orphan_predictions),
        ):
            last = 0
            while True:
                with engine.begin() as conn:
                    high = next_batch(conn, cutoff, last, batch_size)
                    if high is None:
                        break
                    counts = move(conn, cutoff, last, high, now)
                last = high
                for table, rows in counts.items():
                    moved[table] += rows
                document["batches"] += 1
                if on_batch is not None:
                    on_batch(document["batches"], dict(moved))
    with engine.connect() as conn:
        after = _counts(conn)
    document["after"] = after
    # Live + archive stays the same for both tables (unless other jobs wrote meanwhile).
    document["conserved"] = all(
        before[live] + before[archive] == after[live] + after[archive]
        for live, archive in (
            ("orders", "orders_archive"),
            ("fraud_predictions", "fraud_predictions_archive"),
        )
    )
    seconds = time.perf_counter() - started
    document["seconds"] = round(seconds, 3)
    total = moved["orders"] + moved["predictions"]
    document["rows_per_second"] = round(total / seconds) if seconds > 0 and total else None
    return document


def run_retention_configured(
    engine: Engine, config, *, older_than: str | None, batch_size: int | None, dry_run: bool
) -> dict[str, Any]:
    """`mlkit retention run`: `run_retention`, the cut-off and batch size defaulting to
    retention.older_than and retention.batch_size."""
    return run_retention(
        engine,
        older_than=older_than or str(config.get("retention.older_than")),
        batch_size=batch_size or int(config.get("retention.batch_size")),
        dry_run=dry_run,
    )
