"""The hourly KPIs, `kpi_hourly`: per hour of the 30 days before the newest order, the orders,
completed orders and revenue, and the decisions of each order's latest prediction.

On PostgreSQL the figures are kept in a table, `kpi_hours`, that `refresh` maintains
incrementally: it recomputes only the hours of orders and predictions added since the last
refresh (past the watermarks in `kpi_hours_state`) and of orders placed since its newest
one, through indexes, so a refresh costs what changed and its plan needs no statistics;
`kpi_hourly` is a view of it. Orders deleted inside the window (retention with a short
--older-than) are seen by `kpi refresh --full`. On MySQL and SQLite `kpi_hourly` is a
plain, always-current view.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .clock import utcnow
from .db import KPI_VIEW, KPI_WINDOW_DAYS, dialect_name
from .errors import MlkitError
from .fraud.columns import DECISIONS

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

# PostgreSQL's own: not in schema.metadata, so MySQL and SQLite get no unused tables.
kpi_metadata = sa.MetaData()
COUNTS = [f"{d.lower()}_count" for d in DECISIONS]
kpi_hours = sa.Table(
    "kpi_hours",
    kpi_metadata,
    sa.Column("hour", sa.DateTime(), primary_key=True),
    sa.Column("total_orders", sa.BigInteger(), nullable=False),
    sa.Column("completed_orders", sa.BigInteger(), nullable=False),
    sa.Column("unique_wallets", sa.BigInteger(), nullable=False),
    sa.Column("total_revenue", sa.Numeric()),
    sa.Column("scored_orders", sa.BigInteger(), nullable=False),
    sa.Column("avg_fraud_score", sa.Double()),
    *[sa.Column(name, sa.BigInteger(), nullable=False) for name in COUNTS],
)
# One row: what the figures have seen. The dashboard takes the hours of newer orders and
# predictions live, so the figures it shows are never older than its own read.
kpi_hours_state = sa.Table(
    "kpi_hours_state",
    kpi_metadata,
    sa.Column("id", sa.SmallInteger(), primary_key=True, autoincrement=False),
    sa.Column("prediction_watermark", sa.BigInteger(), nullable=False),  # max id seen
    sa.Column("order_watermark", sa.BigInteger(), nullable=False),  # max order_id seen
    sa.Column("newest_order_at", sa.DateTime()),  # the newest order then
    sa.Column("window_start", sa.DateTime()),  # hours hold orders after it
    sa.Column("refreshed_at", sa.DateTime(), nullable=False),
)
FIGURES = [c.name for c in kpi_hours.columns]


def _figures(hour: str, latest: str) -> str:
    """The select list of one hour's figures over orders `o` and a latest prediction
    `latest` (decision, fraud_score; NULL when unscored)."""
    counts = ",\n".join(
        f"    SUM(CASE WHEN {latest}.decision = '{d}' THEN 1 ELSE 0 END) AS {name}"
        for d, name in zip(DECISIONS, COUNTS, strict=True)
    )
    return f"""    {hour} AS hour,
    COUNT(*) AS total_orders,
    SUM(CASE WHEN o.status = 'COMPLETED' THEN 1 ELSE 0 END) AS completed_orders,
    COUNT(DISTINCT o.buyer_wallet_id) AS unique_wallets,
    SUM(CASE WHEN o.status = 'COMPLETED' THEN o.price ELSE 0 END) AS total_revenue,
    COUNT({latest}.decision) AS scored_orders,
    AVG({latest}.fraud_score) AS avg_fraud_score,
{counts}"""


def view_sql(dialect: str) -> list[str]:
    """Statements that create kpi_hourly: on PostgreSQL its table, state and view (a
    materialized view of an older mlkit replaced); elsewhere the plain view."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import psycopg2
        from sqlalchemy.schema import CreateTable

        dialect_pg = psycopg2.dialect()

        tables = [
            "\n".join(
                line.rstrip()
                for line in str(CreateTable(t, if_not_exists=True).compile(dialect=dialect_pg))
                .strip()
                .splitlines()
            )
            for t in kpi_metadata.sorted_tables
        ]
        columns = ", ".join(FIGURES)
        return [
            # An older mlkit's materialized view recomputed every order at each refresh.
            "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_matviews WHERE matviewname = "
            f"'{KPI_VIEW}' AND schemaname = current_schema()) THEN DROP MATERIALIZED VIEW "
            f"{KPI_VIEW}; END IF; END $$",
            *tables,
            f"CREATE OR REPLACE VIEW {KPI_VIEW} AS SELECT {columns} FROM {kpi_hours.name}",
        ]
    hour = {
        "mysql": "DATE_ADD(DATE(o.created_at), INTERVAL HOUR(o.created_at) HOUR)",
        "sqlite": "strftime('%Y-%m-%d %H:00:00', o.created_at)",
    }[dialect]
    since = {
        "mysql": f"(SELECT MAX(created_at) FROM orders) - INTERVAL {KPI_WINDOW_DAYS} DAY",
        "sqlite": f"datetime((SELECT MAX(created_at) FROM orders), '-{KPI_WINDOW_DAYS} days')",
    }[dialect]
    # Only an order's latest prediction counts, so re-scoring never double-counts; the
    # (order_id, id) index answers it per order.
    body = f"""SELECT
{_figures(hour, "p")}
FROM orders o
LEFT JOIN fraud_predictions p ON p.order_id = o.order_id
    AND p.id = (SELECT MAX(p2.id) FROM fraud_predictions p2 WHERE p2.order_id = o.order_id)
WHERE o.created_at > {since}
GROUP BY {hour}"""
    if dialect == "mysql":
        return [f"CREATE OR REPLACE VIEW {KPI_VIEW} AS\n{body}"]
    return [f"CREATE VIEW IF NOT EXISTS {KPI_VIEW} AS\n{body}"]


# The figures of the hours in some ranges of time, each order with its latest prediction
# walked backwards on (order_id, id): no planner, with statistics or without, prefers the
# primary key for that (what one without statistics did for MAX(id): 38 ms an order).
_RECOMPUTE = f"""INSERT INTO {kpi_hours.name} ({", ".join(FIGURES)})
SELECT
{_figures("date_trunc('hour', o.created_at)", "l")}
FROM orders o
LEFT JOIN LATERAL (
    SELECT p.decision, p.fraud_score FROM fraud_predictions p
    WHERE p.order_id = o.order_id ORDER BY p.order_id DESC, p.id DESC LIMIT 1
) l ON true
WHERE o.created_at > :window_start AND ({{ranges}})
GROUP BY 1"""

# Hours of the orders added since the last refresh (ids past its watermark) and of the
# orders that got predictions since (prediction ids past its watermark). Both id ranges are
# closed, so a planner without statistics reads them through the primary keys too, and each
# prediction's order is found by its key.
_NEW_ORDER_HOURS = """SELECT DISTINCT date_trunc('hour', created_at) FROM orders
WHERE order_id > :orders AND order_id <= :orders_now AND created_at > :window_start"""
_SCORED_HOURS = """SELECT DISTINCT date_trunc('hour', placed) FROM (
    SELECT (SELECT o.created_at FROM orders o WHERE o.order_id = p.order_id) AS placed
    FROM fraud_predictions p WHERE p.id > :predictions AND p.id <= :predictions_now
) scored WHERE placed > :window_start"""
HOUR = timedelta(hours=1)
MAX_RANGES = 16


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def hour_ranges(hours: set[datetime]) -> list[tuple[datetime, datetime]]:
    """Consecutive hours merged into [start, end) ranges, oldest first; past MAX_RANGES the
    one range around them all (a long OR of ranges is planned as a scan of every order)."""
    ranges: list[list[datetime]] = []
    for hour in sorted(hours):
        if ranges and ranges[-1][1] == hour:
            ranges[-1][1] = hour + HOUR
        else:
            ranges.append([hour, hour + HOUR])
    if len(ranges) > MAX_RANGES:
        ranges = [[ranges[0][0], ranges[-1][1]]]
    return [(start, end) for start, end in ranges]


def in_ranges(column: str, ranges: list[tuple[datetime, datetime]]) -> tuple[str, dict]:
    """SQL saying `column` lies in one of the ranges, with its parameters."""
    terms = [f"({column} >= :start_{i} AND {column} < :end_{i})" for i in range(len(ranges))]
    values = {}
    for i, (start, end) in enumerate(ranges):
        values |= {f"start_{i}": start, f"end_{i}": end}
    return " OR ".join(terms) or "false", values


def _being_written(conn: sa.Connection) -> set[str]:
    """Which of orders and fraud_predictions another transaction is writing now (it holds
    the table's ROW EXCLUSIVE lock from its first write to its commit)."""
    return set(
        conn.execute(
            sa.text("""SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                WHERE l.mode = 'RowExclusiveLock' AND l.granted AND l.pid <> pg_backend_pid()
                AND c.oid IN (to_regclass('orders'), to_regclass('fraud_predictions'))""")
        ).scalars()
    )


def refresh_hours(engine: Engine, *, full: bool = False) -> dict[str, Any]:
    """PostgreSQL: bring kpi_hours up to date in one transaction, one refresh at a time (a
    second waits for the first, then finds little to do): the hours of orders and of
    predictions added since the last refresh, and of orders placed since its newest one;
    every hour the first time, with `full`, or when the newest order went away. Returns
    what it recomputed."""
    from .locks import job_lock

    h, s = kpi_hours, kpi_hours_state
    with job_lock(engine, "kpi"), engine.begin() as conn:
        state = conn.execute(sa.select(s).where(s.c.id == 1)).first()
        writing = _being_written(conn)
        newest, order_max = conn.execute(
            sa.text("SELECT MAX(created_at), MAX(order_id) FROM orders")
        ).one()
        prediction_max = conn.execute(sa.text("SELECT MAX(id) FROM fraud_predictions")).scalar()
        writing |= _being_written(conn)
        window_start = newest - timedelta(days=KPI_WINDOW_DAYS) if newest else None
        full = full or state is None or state.newest_order_at is None
        full = full or (newest is not None and newest < state.newest_order_at)
        hours: set[datetime] = set()
        recomputed = 0
        if window_start is None:
            dropped = conn.execute(h.delete()).rowcount
        else:
            gone = h.c.hour < hour_of(window_start)
            if full:  # hours after the newest order too, when it went away
                gone = sa.or_(gone, h.c.hour > hour_of(newest))
            dropped = conn.execute(h.delete().where(gone)).rowcount
            bounds = {"window_start": window_start}
            first, last = hour_of(window_start), hour_of(newest)
            if not full:
                first = max(first, hour_of(state.newest_order_at))
                marks = {
                    "orders": state.order_watermark,
                    "orders_now": order_max or 0,
                    "predictions": state.prediction_watermark,
                    "predictions_now": prediction_max or 0,
                }
                for query in (_NEW_ORDER_HOURS, _SCORED_HOURS):
                    hours |= set(conn.execute(sa.text(query), marks | bounds).scalars())
                hours.add(hour_of(window_start))  # orders before the window's start leave it
            while first <= last:
                hours.add(first)
                first += HOUR
            ranges = hour_ranges(hours)
            where, values = in_ranges("hour", ranges)
            conn.execute(h.delete().where(sa.text(where).bindparams(**values)))
            where, values = in_ranges("o.created_at", ranges)
            conn.execute(sa.text("SET LOCAL work_mem = '64MB'"))  # the hours' sort in memory
            recompute = sa.text(_RECOMPUTE.format(ranges=where))
            recomputed = conn.execute(recompute, values | bounds).rowcount
        values = {
            "prediction_watermark": prediction_max or 0,
            "order_watermark": order_max or 0,
            "newest_order_at": newest,
            "window_start": window_start,
            "refreshed_at": utcnow(),
        }
        # A transaction still writing may commit ids below the newest ones seen: the
        # watermarks stay where they were, so the next refresh looks from there again.
        if state is not None and "fraud_predictions" in writing:
            values["prediction_watermark"] = state.prediction_watermark
        if state is not None and "orders" in writing:
            values["order_watermark"] = state.order_watermark
            values["newest_order_at"] = min(state.newest_order_at, newest or state.newest_order_at)
        if state is None:
            conn.execute(s.insert().values(id=1, **values))
        else:
            conn.execute(s.update().where(s.c.id == 1).values(**values))
    return {"hours_recomputed": recomputed, "hours_dropped": dropped, "full": full}


def refresh_kpi(engine: Engine, *, full: bool = False) -> dict[str, Any] | None:
    """Bring kpi_hourly up to date where it is kept (PostgreSQL); elsewhere it is a plain
    view and nothing is done (None)."""
    if dialect_name(engine) != "postgresql":
        return None
    return refresh_hours(engine, full=full)


def refresh_kpi_view(engine: Engine, *, full: bool = False) -> dict[str, Any]:
    """`mlkit kpi refresh`: kpi_hourly brought up to date (PostgreSQL: the hours that changed,
    readers never blocked); elsewhere it is a plain, always-current view and nothing is done.
    An error when it is missing."""
    dialect = dialect_name(engine)
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        views = set(inspector.get_view_names())
        older = dialect == "postgresql" and KPI_VIEW in inspector.get_materialized_view_names()
    if older:
        raise MlkitError(
            f"{KPI_VIEW} is an older mlkit's materialized view",
            hint="`mlkit db init` replaces it with the kept table and its view",
        )
    if KPI_VIEW not in views:
        raise MlkitError(f"the {KPI_VIEW} view is missing", hint="create it with `mlkit db init`")
    started = time.perf_counter()
    done = refresh_kpi(engine, full=full)
    document = {
        "view": KPI_VIEW,
        "dialect": dialect,
        "refreshed": done is not None,
        "seconds": round(time.perf_counter() - started, 3),
    }
    if done is None:
        document["note"] = (
            f"{KPI_VIEW} is a plain view on {dialect}: always current, nothing to refresh"
        )
        return document
    document |= done
    every = " (every hour)" if done["full"] else ""
    document["note"] = f"refreshed {KPI_VIEW}: {done['hours_recomputed']:,} hour(s){every}"
    return document
