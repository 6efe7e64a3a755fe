"""Data retention: old orders and their predictions move to their archive tables.

Each batch of consecutive order ids is one transaction that copies, checks and deletes, so a crash
leaves every row in exactly one place and a rerun carries on. Runs hold the `retention` job lock, so
two started at once run one after the other.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .clock import parse_moment, utcnow
from .errors import MlkitError
from .locks import job_lock
from .outputs import Outputs, outputs_of, platform_order_id, platform_table
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
    from .db import relation_names

    with engine.connect() as conn:
        existing = relation_names(conn)
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
    # mlkit's archives stamp the move; a platform's archive is a copy of its live table.
    stamped = "archived_at" in archive.c and "archived_at" not in source.c
    stamp = [sa.literal(now, sa.DateTime()).label("archived_at")] if stamped else []
    rows = sa.select(*[source.c[n] for n in names], *stamp).where(where)
    insert = _insert_missing(conn, source, archive, key, [*names, *(s.name for s in stamp)], rows)
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


# ---------------------------------------------------------------- the platform's own tables


@dataclass(frozen=True)
class _Platform:
    """The platform's live and archive tables `outputs:` maps, as the database has them."""

    orders: sa.Table | None
    orders_archive: sa.Table | None
    key: str | None  # the platform's order id column
    time: str | None
    predictions: sa.Table | None
    predictions_archive: sa.Table | None
    prediction_key: str | None
    prediction_time: str | None
    link: str | None  # the predictions' column holding the platform's order id
    # mlkit's orders (a view of the platform's) and its column of the platform's order ids
    mlkit_orders: sa.TableClause
    source_id: sa.ColumnElement

    def pairs(self) -> list[tuple[sa.Table, sa.Table]]:
        both = [(self.orders, self.orders_archive), (self.predictions, self.predictions_archive)]
        return [(live, archive) for live, archive in both if live is not None]


def _platform(conn: sa.Connection, outputs: Outputs) -> _Platform | None:
    o, p = outputs.orders_archive, outputs.fraud_predictions_archive
    if o is None and p is None:
        return None
    mlkit_orders, source_id = platform_order_id(conn)
    return _Platform(
        orders=platform_table(conn, o.source) if o else None,
        orders_archive=platform_table(conn, o.table) if o else None,
        key=o.key if o else None,
        time=o.time if o else None,
        predictions=platform_table(conn, p.source) if p else None,
        predictions_archive=platform_table(conn, p.table) if p else None,
        prediction_key=p.key if p else None,
        prediction_time=p.time if p else None,
        link=p.link if p else None,
        mlkit_orders=mlkit_orders,
        source_id=source_id,
    )


def _after(column: sa.ColumnElement, last) -> list:
    """`column > last` unless the pass just started (platform keys may be text: no 0)."""
    return [] if last is None else [column > last]


def _platform_orphans(pf: _Platform, cutoff: datetime) -> sa.ColumnElement:
    """The platform's predictions older than the cut-off whose order is no longer live."""
    fp = pf.predictions
    live = sa.select(pf.mlkit_orders.c.order_id).where(
        sa.cast(pf.source_id, fp.c[pf.link].type) == fp.c[pf.link]
    )
    return sa.and_(fp.c[pf.prediction_time] < cutoff, ~sa.exists(live))


def _next_key(conn: sa.Connection, table: sa.Table, key: str, where, last, size: int):
    ids = (
        sa.select(table.c[key])
        .where(where, *_after(table.c[key], last))
        .order_by(table.c[key])
        .limit(size)
        .subquery()
    )
    return conn.execute(sa.select(sa.func.max(ids.c[key]))).scalar()


def _move_platform_orders(
    pf: _Platform, conn: sa.Connection, cutoff: datetime, last, high, now: datetime
) -> dict[str, int]:
    """Archive the platform's old orders with keys in (last, high]: first the platform's
    predictions of them and mlkit's own, which point at them."""
    tx = pf.orders
    batch = sa.and_(tx.c[pf.key] <= high, tx.c[pf.time] < cutoff, *_after(tx.c[pf.key], last))
    ids = sa.select(tx.c[pf.key]).where(batch)
    counts = {"platform_predictions": 0}
    if pf.predictions is not None:
        fp = pf.predictions
        counts["platform_predictions"] = _copy_then_delete(
            conn, fp, pf.predictions_archive, pf.prediction_key, fp.c[pf.link].in_(ids), now
        )
    p = fraud_predictions
    mine = p.c.order_id.in_(sa.select(pf.mlkit_orders.c.order_id).where(pf.source_id.in_(ids)))
    counts["predictions"] = _copy_then_delete(conn, p, fraud_predictions_archive, "id", mine, now)
    counts["platform_orders"] = _copy_then_delete(conn, tx, pf.orders_archive, pf.key, batch, now)
    return counts


def _move_platform_orphans(
    pf: _Platform, conn: sa.Connection, cutoff: datetime, last, high, now: datetime
) -> dict[str, int]:
    fp = pf.predictions
    key = fp.c[pf.prediction_key]
    batch = sa.and_(key <= high, _platform_orphans(pf, cutoff), *_after(key, last))
    moved = _copy_then_delete(conn, fp, pf.predictions_archive, pf.prediction_key, batch, now)
    return {"platform_predictions": moved}


def _platform_passes(pf: _Platform | None) -> list:
    """(next batch, move, first key) of each pass over the platform's tables."""
    if pf is None:
        return []
    passes = []
    if pf.orders is not None:

        def next_orders(conn, cutoff, last, size):
            old = pf.orders.c[pf.time] < cutoff
            return _next_key(conn, pf.orders, pf.key, old, last, size)

        passes.append((next_orders, partial(_move_platform_orders, pf), None))
    if pf.predictions is not None:

        def next_orphans(conn, cutoff, last, size):
            orphan = _platform_orphans(pf, cutoff)
            return _next_key(conn, pf.predictions, pf.prediction_key, orphan, last, size)

        passes.append((next_orphans, partial(_move_platform_orphans, pf), None))
    return passes


def _table_key(table: sa.Table) -> str:
    return f"{table.schema}.{table.name}" if table.schema else table.name


def _all_counts(conn: sa.Connection, pf: _Platform | None) -> dict[str, int]:
    counts = _counts(conn)
    for pair in pf.pairs() if pf else []:
        for t in pair:
            counts[_table_key(t)] = int(
                conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            )
    return counts


def _platform_plan(conn: sa.Connection, pf: _Platform | None, cutoff: datetime) -> dict[str, int]:
    if pf is None:
        return {}

    def count(table: sa.Table, where) -> int:
        query = sa.select(sa.func.count()).select_from(table).where(where)
        return int(conn.execute(query).scalar_one())

    plan = {"platform_orders": 0, "platform_predictions": 0}
    if pf.orders is not None:
        old = pf.orders.c[pf.time] < cutoff
        plan["platform_orders"] = count(pf.orders, old)
        if pf.predictions is not None:
            ids = sa.select(pf.orders.c[pf.key]).where(old)
            plan["platform_predictions"] = count(pf.predictions, pf.predictions.c[pf.link].in_(ids))
    if pf.predictions is not None:
        plan["platform_predictions"] += count(pf.predictions, _platform_orphans(pf, cutoff))
    return plan


def _conserved(before: dict, after: dict, pf: _Platform | None, own_orders: bool) -> bool:
    """Live + archive stays the same for every table moved (unless other jobs wrote meanwhile)."""
    pairs = [("fraud_predictions", "fraud_predictions_archive")]
    if own_orders:
        pairs.append(("orders", "orders_archive"))
    pairs += [(_table_key(live), _table_key(archive)) for live, archive in pf.pairs()] if pf else []
    return all(
        before[live] + before[archive] == after[live] + after[archive] for live, archive in pairs
    )


def run_retention(
    engine: Engine,
    *,
    older_than: str = "365d",
    batch_size: int = 10_000,
    dry_run: bool = False,
    now: datetime | None = None,
    on_batch: Callable[[int, dict[str, int]], None] | None = None,
    outputs: Outputs | None = None,
) -> dict[str, Any]:
    """Move orders older than the cut-off (with their predictions) and orphaned old predictions into
    the archive, `batch_size` rows per transaction; `on_batch(batch_number, moved_so_far)` follows
    each commit. With `outputs` mapping the platform's archives, the platform's old orders and
    predictions move into them first, by the platform's keys; mlkit's orders are never deleted
    through a view of the platform's (`sources:` maps orders)."""
    if batch_size < 1:
        raise MlkitError(f"the batch size must be at least 1 (got {batch_size})")
    started = time.perf_counter()
    now = now or utcnow()
    cutoff = cutoff_of(older_than, now)
    outputs = outputs or Outputs()
    own_orders = not outputs.orders_mapped
    _require_tables(engine)
    with engine.connect() as conn:
        pf = _platform(conn, outputs)
        before = _all_counts(conn, pf)
        plan = {**_plan(conn, cutoff), **_platform_plan(conn, pf, cutoff)}
    if not own_orders:
        plan["orders"] = 0
    document: dict[str, Any] = {
        "dry_run": dry_run,
        "cutoff": cutoff,
        "older_than": older_than,
        "batch_size": batch_size,
        "to_move": plan,
        "moved": {name: 0 for name in plan},
        "batches": 0,
        "before": before,
    }
    if dry_run:
        document["seconds"] = round(time.perf_counter() - started, 3)
        return document
    moved = document["moved"]
    passes = [
        *_platform_passes(pf),
        *([(_order_batch, _move_orders, 0)] if own_orders else []),
        (_prediction_batch, _move_orphan_predictions, 0),
    ]
    with job_lock(engine, "retention"):
        for next_batch, move, last in passes:
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
        after = _all_counts(conn, pf)
    document["after"] = after
    document["conserved"] = _conserved(before, after, pf, own_orders)
    seconds = time.perf_counter() - started
    document["seconds"] = round(seconds, 3)
    total = sum(moved.values())
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
        outputs=outputs_of(config),
    )
