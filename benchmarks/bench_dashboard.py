"""`mlkit dashboard` on 1,000,000 orders and their predictions in PostgreSQL that was never
analysed (autovacuum off on the tables, no ANALYZE): time to first paint and to first data of
the whole command in a fresh interpreter, and one full refresh (every panel's queries) with
the time of each panel, beside the plain SQL of the same figures. As in operation, `kpi
refresh` ran (cron: every 5 minutes) and orders came in and were scored since, and older ones
re-scored: the dashboard reads the hours nothing changed in from kpi_hours, the others live.
Targets: first paint < 0.5 s, first data < 1.5 s, refresh <= 100 ms.

Run: python benchmarks/bench_dashboard.py [--orders 1000000] [--days 90] [--server URL]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from _scratch import POSTGRES_SERVER, scratch_postgres

from mlkit.toolkit.clock import utcnow
from mlkit.toolkit.db import init_schema, make_engine
from mlkit.toolkit.kpi import refresh_kpi_view
from mlkit.toolkit.monitor import (
    WINDOWS,
    DashboardSource,
    kept_and_live_counts,
    snapshot_connection,
    summarize,
    window_counts,
)

TARGETS_MS = {"first paint": 500.0, "first data": 1500.0, "refresh": 100.0}
REFRESHES = 20
PLAIN_SQL_LIMIT_S = 60

# The whole `mlkit dashboard` command in a fresh interpreter (Typer, the config, the app),
# run headless at 160x48: its App.run is given an auto-pilot that notes the first paint (mounted,
# first frame composed) and the first data, then quits.
FIRST_PAINT = """
import time
started = time.perf_counter()
import sys
from textual.app import App

marks = {{}}

async def watch(pilot):
    marks["paint"] = time.perf_counter() - started
    app = pilot.app
    while app.refreshes < 1:
        await pilot.pause(0.01)
    marks["data"] = time.perf_counter() - started
    assert app.snapshot.fraud.error is None, app.snapshot.fraud.error
    await pilot.press("q")

run = App.run
App.run = lambda self, **_: run(self, headless=True, size=(160, 48), auto_pilot=watch)
sys.argv = ["mlkit", "--config", {config!r}, "dashboard", "--refresh", "60"]
from mlkit.commands.main import run as mlkit
try:
    mlkit()
except SystemExit as done:
    assert not done.code, done.code
print(marks["paint"], marks["data"])
"""


def seed(engine, orders: int, days: int) -> None:
    """Orders spread over `days` up to now, one prediction each and a second (a re-score) for
    every tenth, decisions in realistic shares; the tables never analysed."""
    now = utcnow()
    with engine.begin() as conn:
        for table in ("orders", "fraud_predictions"):
            conn.execute(sa.text(f"ALTER TABLE {table} SET (autovacuum_enabled = false)"))
        conn.execute(
            sa.text("""
            INSERT INTO orders (buyer_wallet_id, event_id, price, payment_method, is_resale,
                                status, created_at)
            SELECT 1 + (i % 50000), 1 + (i % 400), 20 + (i % 180), 'card', i % 7 = 0,
                   'COMPLETED',
                   CAST(:now AS timestamp) - (i * (:days * 86400.0 / :n)) * interval '1 second'
            FROM generate_series(1, :n) AS i"""),
            {"n": orders, "days": days, "now": now},
        )
        conn.execute(
            sa.text("""
            INSERT INTO fraud_predictions (order_id, fraud_score, decision, model_version,
                                           created_at)
            SELECT order_id, s, CASE WHEN s >= 0.995 THEN 'BLOCKED'
                                     WHEN s >= 0.99 THEN 'MANUAL_REVIEW'
                                     WHEN s >= 0.97 THEN 'REQUIRE_2FA' ELSE 'APPROVED' END,
                   'fraud:1', created_at
            FROM (SELECT order_id, created_at, random() AS s FROM orders) scored
            UNION ALL
            SELECT order_id, 0.999, 'BLOCKED', 'fraud:2', created_at + interval '1 minute'
            FROM orders WHERE order_id % 10 = 0""")
        )
        analysed = conn.execute(
            sa.text("""SELECT count(*) FROM pg_stat_user_tables
                       WHERE relname IN ('orders', 'fraud_predictions')
                         AND (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL)""")
        ).scalar()
    assert analysed == 0, "the tables were analysed"


def operate(engine, new_orders: int = 300, rescored: int = 100) -> str:
    """`kpi refresh` as cron runs it, then orders of the last minutes (two in three scored)
    and re-scores of older orders of the week: what a refresh of the dashboard meets."""
    now = utcnow()
    kept = refresh_kpi_view(engine)
    with engine.begin() as conn:
        after = conn.execute(sa.text("SELECT MAX(order_id) FROM orders")).scalar()
        conn.execute(
            sa.text("""
            INSERT INTO orders (buyer_wallet_id, event_id, price, payment_method, is_resale,
                                status, created_at)
            SELECT 1 + (i % 50000), 1 + (i % 400), 50, 'card', false, 'COMPLETED',
                   CAST(:now AS timestamp) - i * interval '1 second'
            FROM generate_series(1, :n) AS i"""),
            {"n": new_orders, "now": now},
        )
        conn.execute(
            sa.text("""
            INSERT INTO fraud_predictions (order_id, fraud_score, decision, model_version,
                                           created_at)
            SELECT order_id, 0.999, 'BLOCKED', 'fraud:3', CAST(:now AS timestamp) FROM orders
            WHERE (order_id > :after AND order_id % 3 <> 0) OR order_id IN (
                SELECT order_id FROM orders WHERE order_id <= :after
                  AND created_at > CAST(:now AS timestamp) - interval '7 days'
                ORDER BY order_id LIMIT :rescored)"""),
            {"after": after, "rescored": rescored, "now": now},
        )
    return (
        f"kpi refresh (cron, every 5 minutes): {kept['seconds']:.2f} s; then {new_orders} new "
        f"orders (two in three scored) and {rescored} older ones re-scored"
    )


WINDOW_READS = {
    "kept": lambda conn, anchor: kept_and_live_counts(conn, anchor)[0],
    "live": window_counts,
}


def windows_ms(source: DashboardSource, read) -> float:
    """Median milliseconds of the fraud windows and hourly series read by `read` in the
    dashboard's snapshot; checks they equal those of a read of every order live."""
    times = []
    with snapshot_connection(source.engine) as conn:
        anchor = utcnow()
        expected = summarize(window_counts(conn, anchor), anchor)
        for _ in range(REFRESHES):
            begun = time.perf_counter()
            figures = summarize(read(conn, anchor), anchor)
            times.append(time.perf_counter() - begun)
            assert figures == expected
    return statistics.median(times) * 1000


def plain_sql_ms(engine) -> float | None:
    """The same figures (per window, orders by latest decision) in plain SQL, one statement
    per window, as a person would write them; None when it needs more than
    PLAIN_SQL_LIMIT_S."""
    now = utcnow()
    query = sa.text("""
        SELECT p.decision, COUNT(*) FROM orders o
        LEFT JOIN fraud_predictions p ON p.order_id = o.order_id
            AND NOT EXISTS (SELECT 1 FROM fraud_predictions q
                            WHERE q.order_id = p.order_id AND q.id > p.id)
        WHERE o.created_at > :start AND o.created_at <= :end GROUP BY p.decision""")
    times = []
    with engine.connect() as conn:
        conn.execute(sa.text(f"SET statement_timeout = {PLAIN_SQL_LIMIT_S * 1000}"))
        for _ in range(3):
            begun = time.perf_counter()
            try:
                for span in WINDOWS.values():
                    conn.execute(query, {"start": now - span, "end": now}).all()
            except sa.exc.OperationalError:  # its statement timeout
                conn.rollback()
                return None
            times.append(time.perf_counter() - begun)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--server", default=POSTGRES_SERVER)
    args = parser.parse_args()
    with scratch_postgres(args.server, "mlkit_bench_dash") as url:
        engine = make_engine(url)
        init_schema(engine)
        started = time.perf_counter()
        seed(engine, args.orders, args.days)
        with engine.connect() as conn:
            counts = {
                t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()
                for t in ("orders", "fraud_predictions")
            }
        print(
            f"setup: {counts['orders']:,} orders, {counts['fraud_predictions']:,} predictions "
            f"over {args.days} days, never analysed, in {time.perf_counter() - started:.0f} s"
        )
        print(operate(engine))
        with tempfile.TemporaryDirectory() as home:
            config = Path(home) / "mlkit.yaml"
            config.write_text(
                f"database:\n  url: {url}\nredis:\n  enabled: false\npaths:\n  home: {home}\n"
            )
            shown = subprocess.run(
                [sys.executable, "-c", FIRST_PAINT.format(config=str(config))],
                capture_output=True,
                text=True,
            )
        if shown.returncode:
            sys.exit(f"the dashboard failed: {shown.stderr[-2000:]}")
        shown = shown.stdout.split()
        paint, data = (float(x) * 1000 for x in shown[-2:])

        source = DashboardSource(url, None)
        runs = [source.snapshot() for _ in range(REFRESHES + 3)][3:]  # connections warm
        for run in runs:
            for panel in (run.fraud, run.bandit, run.training):
                assert panel.error is None, panel.error
        refresh = statistics.median(r.seconds for r in runs) * 1000
        per_panel = {
            name: statistics.median(r.timings[name] for r in runs) * 1000
            for name in ("fraud", "bandit", "training")
        }
        kept = runs[-1].fraud.data["source"]["kept_hours"]
        windows = {name: windows_ms(source, read) for name, read in WINDOW_READS.items()}
        print(
            f"fraud windows: {kept} whole hours read from kpi_hours, the others live: "
            f"{windows['kept']:.1f} ms; every order live (the previous read) "
            f"{windows['live']:.1f} ms (medians of {REFRESHES}, figures equal)"
        )
        source.close()
        figures = {"first paint": paint, "first data": data, "refresh": refresh}
        for name, ms in figures.items():
            verdict = "ok" if ms <= TARGETS_MS[name] else "SLOW"
            print(f"{name}: {ms:.0f} ms (target {TARGETS_MS[name]:.0f} ms) {verdict}")
        print(
            f"refresh per panel (median of {REFRESHES}): "
            + ", ".join(f"{k} {v:.1f} ms" for k, v in per_panel.items())
        )
        plain = plain_sql_ms(engine)
        print(
            "plain SQL of the three windows: "
            + (f"{plain:.1f} ms" if plain is not None else f"over {PLAIN_SQL_LIMIT_S} s")
        )
        engine.dispose()


if __name__ == "__main__":
    main()
