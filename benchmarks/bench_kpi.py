"""`mlkit kpi refresh` on PostgreSQL never analysed (autovacuum off, no ANALYZE): the first
refresh (every hour of the 30-day window), one after 5 minutes of new orders were scored,
one after 1 % of all orders were re-scored, and one with nothing new, each
beside the plain SQL of the same figures (each order's latest prediction by DISTINCT ON, one
GROUP BY over the window); the figures are checked equal. Target: seconds on 10,000,000
orders.

Run: python benchmarks/bench_kpi.py [--orders 1000000] [--days 90]
"""

from __future__ import annotations

import statistics
import time

import sqlalchemy as sa
from _common import options
from _scratch import scratch_postgres
from bench_dashboard import seed

from mlkit.toolkit.db import init_schema, make_engine
from mlkit.toolkit.kpi import FIGURES, refresh_kpi_view

PLAIN_SQL = """
WITH latest AS (
    SELECT DISTINCT ON (order_id) order_id, decision, fraud_score
    FROM fraud_predictions ORDER BY order_id, id DESC
)
SELECT date_trunc('hour', o.created_at) AS hour, COUNT(*) AS total_orders,
    SUM(CASE WHEN o.status = 'COMPLETED' THEN 1 ELSE 0 END) AS completed_orders,
    COUNT(DISTINCT o.buyer_wallet_id) AS unique_wallets,
    SUM(CASE WHEN o.status = 'COMPLETED' THEN o.price ELSE 0 END) AS total_revenue,
    COUNT(l.decision) AS scored_orders, AVG(l.fraud_score) AS avg_fraud_score,
    COUNT(*) FILTER (WHERE l.decision = 'APPROVED') AS approved_count,
    COUNT(*) FILTER (WHERE l.decision = 'REQUIRE_2FA') AS require_2fa_count,
    COUNT(*) FILTER (WHERE l.decision = 'MANUAL_REVIEW') AS manual_review_count,
    COUNT(*) FILTER (WHERE l.decision = 'BLOCKED') AS blocked_count
FROM orders o LEFT JOIN latest l ON l.order_id = o.order_id
WHERE o.created_at > (SELECT MAX(created_at) FROM orders) - INTERVAL '30 days'
GROUP BY 1 ORDER BY 1"""

NEW_ORDERS = """
INSERT INTO orders (buyer_wallet_id, event_id, price, payment_method, is_resale, status,
                    created_at)
SELECT 1 + (i % 50000), 1 + (i % 400), 20 + (i % 180), 'card', false, 'COMPLETED',
       (SELECT MAX(created_at) FROM orders) + i * interval '300 milliseconds'
FROM generate_series(1, :n) AS i"""

PREDICTIONS = """
INSERT INTO fraud_predictions (order_id, fraud_score, decision, model_version, created_at)
SELECT order_id, 0.999, 'BLOCKED', 'fraud:3', now() FROM orders WHERE {which}"""


def plain_sql(engine) -> tuple[float, list[tuple]]:
    with engine.connect() as conn:
        conn.execute(sa.text("SET work_mem = '64MB'"))  # as generous as the refresh
        started = time.perf_counter()
        rows = conn.execute(sa.text(PLAIN_SQL)).all()
        return time.perf_counter() - started, [_rounded(r) for r in rows]


def kept(engine) -> list[tuple]:
    columns = ", ".join(FIGURES)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT {columns} FROM kpi_hourly ORDER BY hour")).all()
    return [_rounded(r) for r in rows]


def _rounded(row) -> tuple:
    return tuple(round(float(v), 6) if isinstance(v, float) else v for v in row)


def main() -> None:
    args = options(__doc__, orders=1_000_000, days=90)
    with scratch_postgres(prefix="mlkit_bench_kpi") as url:
        engine = make_engine(url)
        init_schema(engine)
        started = time.perf_counter()
        seed(engine, args.orders, args.days)
        print(
            f"setup: {args.orders:,} orders over {args.days} days, predictions for each and a "
            f"re-score of every tenth, never analysed, in {time.perf_counter() - started:.0f} s"
        )

        def measure(step: str) -> None:
            document = refresh_kpi_view(engine)
            reference, figures = plain_sql(engine)
            same = "equal" if kept(engine) == figures else "DIFFERENT"
            print(
                f"{step}: refresh {document['seconds']:.2f} s ({document['hours_recomputed']} "
                f"hours recomputed), plain SQL of the same figures {reference:.2f} s; "
                f"figures {same} ({len(figures)} hours)"
            )

        measure("first refresh (every hour)")
        with engine.begin() as conn:
            after = conn.execute(sa.text("SELECT MAX(order_id) FROM orders")).scalar()
            conn.execute(sa.text(NEW_ORDERS), {"n": 1000})
            conn.execute(sa.text(PREDICTIONS.format(which="order_id > :after")), {"after": after})
        print("then 1,000 new orders over 5 minutes, scored")
        measure("refresh after new scored orders")
        with engine.begin() as conn:
            rescored = conn.execute(sa.text(PREDICTIONS.format(which="order_id % 100 = 7")))
        print(f"then {rescored.rowcount:,} orders of every day re-scored (1 %)")
        measure("refresh after the re-score")
        runs = []
        for _ in range(5):
            runs.append(refresh_kpi_view(engine)["seconds"])
        print(f"refresh with nothing new: {statistics.median(runs) * 1000:.0f} ms (median of 5)")
        engine.dispose()


if __name__ == "__main__":
    main()
