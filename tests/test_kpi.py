"""kpi_hourly over time on every dialect: after each change (no orders yet, orders without
predictions, scores, a second run with nothing new, re-scores, new orders, orders leaving the
30-day window, deletions) its figures equal those computed in Python from the rows; on
PostgreSQL a refresh recomputes only what changed. The dashboard's windows, from the kept
hours plus the live ones, equal a read of every order live."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from mlkit.toolkit import schema
from mlkit.toolkit.db import KPI_WINDOW_DAYS, refresh_kpi
from mlkit.toolkit.fraud.columns import DECISIONS
from mlkit.toolkit.kpi import FIGURES, hour_ranges, refresh_kpi_view
from mlkit.toolkit.monitor import WINDOWS, kept_and_live_counts, summarize, window_counts

START = datetime(2026, 3, 1, 10, 0)


def add_orders(engine, minutes: list[int], status: str = "COMPLETED") -> list[int]:
    """Orders placed `minutes` after START; their ids."""
    o = schema.orders
    with engine.begin() as conn:
        first = conn.execute(sa.select(sa.func.coalesce(sa.func.max(o.c.order_id), 0))).scalar()
        rows = [
            {
                "order_id": first + 1 + i,
                "buyer_wallet_id": 1 + i % 3,
                "event_id": 1,
                "price": 10.0 + i,
                "payment_method": "card",
                "is_resale": False,
                "status": status,
                "created_at": START + timedelta(minutes=m),
            }
            for i, m in enumerate(minutes)
        ]
        conn.execute(o.insert(), rows)
    return [r["order_id"] for r in rows]


def score(engine, decisions: dict[int, str]) -> None:
    with engine.begin() as conn:
        conn.execute(
            schema.fraud_predictions.insert(),
            [
                {
                    "order_id": order_id,
                    "fraud_score": 0.1 + DECISIONS.index(decision) / 4,
                    "decision": decision,
                    "model_version": "fraud:1",
                    "created_at": START,
                }
                for order_id, decision in decisions.items()
            ],
        )


def _hour(value) -> datetime:
    value = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return value.replace(minute=0, second=0, microsecond=0)


def expected(engine) -> list[tuple]:
    """The figures of kpi_hourly computed here from every order and its latest prediction."""
    o, p = schema.orders, schema.fraud_predictions
    with engine.connect() as conn:
        orders = conn.execute(sa.select(o)).all()
        predictions = conn.execute(sa.select(p).order_by(p.c.id)).all()
    if not orders:
        return []
    latest = {row.order_id: row for row in predictions}  # the highest id last
    since = max(row.created_at for row in orders) - timedelta(days=KPI_WINDOW_DAYS)
    hours: dict[datetime, list] = {}
    for row in orders:
        if row.created_at > since:
            hours.setdefault(_hour(row.created_at), []).append(row)
    figures = []
    for hour, rows in sorted(hours.items()):
        scored = [latest[r.order_id] for r in rows if r.order_id in latest]
        completed = [r for r in rows if r.status == "COMPLETED"]
        figures.append(
            (
                hour,
                len(rows),
                len(completed),
                len({r.buyer_wallet_id for r in rows}),
                round(sum(r.price for r in completed), 2),
                len(scored),
                round(sum(s.fraud_score for s in scored) / len(scored), 6) if scored else None,
                *[sum(1 for s in scored if s.decision == d) for d in DECISIONS],
            )
        )
    return figures


def kept(engine) -> list[tuple]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(f"SELECT {', '.join(FIGURES)} FROM kpi_hourly ORDER BY hour")
        ).all()
    return [
        (
            _hour(hour),
            *[int(v) for v in (total, completed, wallets)],
            round(float(revenue or 0), 2),
            int(scored),
            round(float(average), 6) if average is not None else None,
            *[int(c) for c in counts],
        )
        for hour, total, completed, wallets, revenue, scored, average, *counts in rows
    ]


def refreshed(engine, **options) -> dict:
    document = refresh_kpi_view(engine, **options)
    assert kept(engine) == expected(engine)
    return document


@pytest.fixture(scope="module")
def dialect(engine):
    return engine.dialect.name


def test_kpi_hourly_follows_the_orders_and_their_latest_predictions(engine, dialect):
    postgres = dialect == "postgresql"
    empty = refreshed(engine)
    assert empty["refreshed"] is postgres and kept(engine) == []

    first = add_orders(engine, [5, 30, 65, 70, 130])  # hours 10, 11, 12: none scored yet
    assert len(refreshed(engine)) and kept(engine)[0][5] == 0

    score(engine, {first[0]: "APPROVED", first[1]: "BLOCKED", first[2]: "REQUIRE_2FA"})
    document = refreshed(engine)
    if postgres:
        # The scored hours 10 and 11, and 12: the newest order's hour is always taken again.
        assert document["hours_recomputed"] == 3 and not document["full"]
        again = refreshed(engine)  # a second run, nothing new
        assert again["hours_recomputed"] == 1

    score(engine, {first[1]: "APPROVED"})  # a re-score: only the latest counts
    refreshed(engine)
    assert kept(engine)[0][7:] == (2, 0, 0, 0)

    add_orders(engine, [185, 190], status="PENDING")  # a new hour, unscored, not completed
    refreshed(engine)

    add_orders(engine, [KPI_WINDOW_DAYS * 24 * 60 + 100])  # hours 10 and 11 leave the window
    refreshed(engine)
    assert kept(engine)[0][0] == START + timedelta(hours=2)

    o = schema.orders
    with engine.begin() as conn:  # the newest order goes: every hour again
        newest = conn.execute(sa.select(sa.func.max(o.c.order_id))).scalar()
        conn.execute(o.delete().where(o.c.order_id == newest))
    document = refreshed(engine)
    assert document["full"] if postgres else not document["refreshed"]

    with engine.begin() as conn:  # an order inside the window goes: seen by --full
        conn.execute(o.delete().where(o.c.order_id == first[3]))
    refreshed(engine, full=True)


def test_refresh_kpi_is_the_same_refresh(engine):
    add_orders(engine, [400])
    refresh_kpi(engine)
    assert kept(engine) == expected(engine)


@pytest.mark.parametrize(
    "now", [START + timedelta(hours=5, minutes=20), START + timedelta(days=2, minutes=1)]
)
def test_the_dashboards_windows_from_kept_and_live_hours_equal_a_live_read(engine, now):
    """Kept hours, then orders and scores since (a new order, a re-score of a kept hour's
    order, a late order in a kept hour), all read at once as a live read reads them."""
    ids = add_orders(engine, [m for m in range(0, 300, 7)])
    score(engine, {i: DECISIONS[i % 4] for i in ids[::2]})
    refresh_kpi(engine)
    add_orders(engine, [301, 302])
    score(engine, {ids[1]: "BLOCKED", ids[4]: "MANUAL_REVIEW"})
    add_orders(engine, [61])
    anchor = now
    with engine.connect() as conn:
        live = summarize(window_counts(conn, anchor), anchor)
        rows, source = kept_and_live_counts(conn, anchor)
    assert summarize(rows, anchor) == live
    if engine.dialect.name == "postgresql" and now - START < WINDOWS["24h"]:
        assert source["kept_hours"] > 0  # the test reads some hours from kpi_hours


def test_hour_ranges_merge_consecutive_hours():
    hours = {START, START + timedelta(hours=1), START + timedelta(hours=3)}
    assert hour_ranges(hours) == [
        (START, START + timedelta(hours=2)),
        (START + timedelta(hours=3), START + timedelta(hours=4)),
    ]
    many = {START + timedelta(hours=2 * i) for i in range(40)}
    assert hour_ranges(many) == [(START, START + timedelta(hours=79))]


def test_a_prediction_committed_after_a_refresh_below_its_watermark_is_counted(engine):
    """One transaction takes an id and commits late, another takes a higher one and commits
    first; the refresh between them keeps its prediction watermark below the first's id."""
    if engine.dialect.name != "postgresql":
        pytest.skip("kpi_hours is kept on PostgreSQL only")
    ids = add_orders(engine, [500, 510, 700])  # the newest hour is recomputed anyway
    refresh_kpi(engine)
    late = engine.connect()
    try:
        late.begin()
        late.execute(
            schema.fraud_predictions.insert(),
            {
                "order_id": ids[0],
                "fraud_score": 0.99,
                "decision": "BLOCKED",
                "model_version": "fraud:2",
                "created_at": START,
            },
        )
        score(engine, {ids[1]: "APPROVED"})  # a higher id, committed first
        refresh_kpi(engine)
        late.commit()
    finally:
        late.close()
    refreshed(engine)
    hour = START + timedelta(minutes=500)
    assert next(row for row in kept(engine) if row[0] == hour.replace(minute=0))[5] == 2


def test_an_older_materialized_view_is_named_and_db_init_replaces_it(engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("only PostgreSQL had a materialized kpi_hourly")
    from mlkit.toolkit.db import init_schema
    from mlkit.toolkit.errors import MlkitError

    with engine.begin() as conn:
        conn.execute(sa.text("DROP VIEW kpi_hourly"))
        conn.execute(sa.text("CREATE MATERIALIZED VIEW kpi_hourly AS SELECT 1 AS hour"))
    with pytest.raises(MlkitError, match="older mlkit's materialized view"):
        refresh_kpi_view(engine)
    init_schema(engine)
    assert "kpi_hourly" in sa.inspect(engine).get_view_names()
    refreshed(engine)
