"""One full dashboard refresh (every panel's queries) on 1,000,000 orders and 1,000,000
predictions in PostgreSQL, with the time of each panel; target <= 100 ms.

Reference in the same run: the unbounded aggregate a naive dashboard would send
(decision counts over the whole predictions table).

Run: python benchmarks/bench_dashboard.py [--orders 1000000] [--server URL] [--redis URL]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import sqlalchemy as sa
from _scratch import POSTGRES_SERVER, scratch_postgres

from mlkit.toolkit.config import load_config
from mlkit.toolkit.db import make_engine, refresh_kpi
from mlkit.toolkit.demo.seed import seed_demo
from mlkit.toolkit.monitor import DashboardSource
from mlkit.toolkit.pricing.train import train_bandit

TARGET_MS = 100.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--server", default=POSTGRES_SERVER)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12")
    args = parser.parse_args()
    with scratch_postgres(args.server, "mlkit_bench_dash") as url:
        engine = make_engine(url)
        started = time.perf_counter()
        seed_demo(engine, orders=args.orders, seed=5, families=("fraud", "pricing"))
        with engine.begin() as conn:
            # One prediction per order, stamped at its order, decisions in realistic shares.
            conn.execute(
                sa.text("""
                INSERT INTO fraud_predictions (order_id, fraud_score, decision, model_version,
                                               created_at)
                SELECT order_id, s, CASE WHEN s >= 0.995 THEN 'BLOCKED'
                                         WHEN s >= 0.99 THEN 'MANUAL_REVIEW'
                                         WHEN s >= 0.97 THEN 'REQUIRE_2FA' ELSE 'APPROVED' END,
                       'fraud:1', created_at
                FROM (SELECT order_id, created_at, random() AS s FROM orders) scored""")
            )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
        refresh_kpi(engine)
        with engine.connect() as conn:
            counts = {
                t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()
                for t in ("orders", "fraud_predictions")
            }
        config = load_config(database_url=url, env={"MLKIT_HOME": tempfile.mkdtemp()})
        import redis

        client = redis.Redis.from_url(args.redis)
        client.flushdb()
        train_bandit(engine, config, client, since="90d")
        print(
            f"setup: {counts['orders']:,} orders, {counts['fraud_predictions']:,} predictions "
            f"in {time.perf_counter() - started:.0f} s"
        )

        source = DashboardSource(url, args.redis)
        for _ in range(3):
            source.snapshot()  # connections and imports warm
        runs = [source.snapshot() for _ in range(20)]
        for run in runs:
            for panel in (run.fraud, run.bandit, run.training):
                assert panel.error is None, panel.error
        total = statistics.median(r.seconds for r in runs) * 1000
        per_panel = {
            name: statistics.median(r.timings[name] for r in runs) * 1000
            for name in ("fraud", "bandit", "training")
        }
        with engine.connect() as conn:
            begun = time.perf_counter()
            conn.execute(sa.text("SELECT decision, count(*) FROM fraud_predictions GROUP BY 1"))
            naive = (time.perf_counter() - begun) * 1000
        print(
            f"full refresh (median of {len(runs)}): {total:.1f} ms (target <= {TARGET_MS:.0f} ms) "
            f"{'ok' if total <= TARGET_MS else 'SLOW'}; fraud {per_panel['fraud']:.1f} ms, "
            f"bandit {per_panel['bandit']:.1f} ms, training {per_panel['training']:.1f} ms"
        )
        print(f"reference: decision counts over the whole predictions table {naive:.1f} ms")
        source.close()
        client.flushdb()


if __name__ == "__main__":
    main()
