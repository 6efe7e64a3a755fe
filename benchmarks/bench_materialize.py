"""`mlkit features materialize` on PostgreSQL + Redis: wallets/s, beside a plain SQL reference.

Seeds `demo seed --orders N` into a scratch PostgreSQL database and materializes every wallet
into a scratch Redis database (full), again with nothing new (incremental: TTLs renewed),
and after a few new orders (incremental: their wallets rewritten). Target >= 50,000
wallets/s. The reference is plain SQL doing the core of the same work in the database: one
statement aggregating every wallet's orders (as buyer or seller) into JSON with json_agg,
fetched whole, and its rows SET into Redis in a pipeline.

Run: python benchmarks/bench_materialize.py [--orders 300000] [--seed 7] [--redis-db 14]
"""

from __future__ import annotations

import logging
import os
import time
from datetime import timedelta

import redis
import sqlalchemy as sa
from _common import fresh_home, options
from _scratch import scratch_postgres

from mlkit.toolkit import schema
from mlkit.toolkit.demo.seed import seed_demo
from mlkit.toolkit.fraud.materialize import materialize_wallets

REFERENCE = """
SELECT w, json_agg(json_build_array(order_id, buyer_wallet_id, seller_wallet_id, event_id,
       ticket_id, price, payment_method, is_resale, status, geo_lat, geo_lon,
       extract(epoch FROM created_at)::bigint))::text
FROM (SELECT buyer_wallet_id AS w, * FROM orders
      UNION ALL
      SELECT seller_wallet_id, * FROM orders
      WHERE seller_wallet_id IS NOT NULL AND seller_wallet_id <> buyer_wallet_id) AS rows
GROUP BY w
"""


def reference(engine, client, ttl: int) -> tuple[float, int]:
    started = time.perf_counter()
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(REFERENCE).all()
    pipe = client.pipeline(transaction=False)
    for wallet, text in rows:
        pipe.set(f"reference:wallet:{wallet}", text, ex=ttl)
    pipe.execute()
    return time.perf_counter() - started, len(rows)


def add_orders(engine, count: int) -> None:
    o = schema.orders
    with engine.begin() as conn:
        recent = conn.execute(sa.select(o).order_by(o.c.order_id.desc()).limit(count)).all()
        top = conn.execute(sa.select(sa.func.max(o.c.order_id))).scalar()
        conn.execute(
            o.insert(),
            [
                {**r._mapping, "order_id": top + i + 1, "created_at": r.created_at + timedelta(1)}
                for i, r in enumerate(recent)
            ],
        )


def line(label: str, done) -> None:
    rate = done.wallets / done.seconds
    print(
        f"features materialize ({label}): {done.written:,} wallets written, {done.kept:,} kept, "
        f"of {done.wallets:,} in {done.seconds:.2f} s = {rate:,.0f} wallets/s "
        f"(target >= 50,000) {'ok' if rate >= 50_000 else 'SLOW'}"
    )


def main() -> None:
    args = options(__doc__, orders=300_000, seed=7, redis_db=14)
    logging.basicConfig(level=logging.WARNING)
    client = redis.Redis(host="127.0.0.1", port=6379, db=args.redis_db)
    client.flushdb()
    try:
        with scratch_postgres() as url:
            _, engine = fresh_home(url)
            seed_demo(engine, orders=args.orders, seed=args.seed, families=("fraud",))
            print(f"load average before: {os.getloadavg()[0]:.1f} (2 cores)")
            line("full, first run", materialize_wallets(engine, client, 300, full=True))
            line("incremental, nothing new", materialize_wallets(engine, client, 300))
            add_orders(engine, 200)
            line("incremental, 200 new orders", materialize_wallets(engine, client, 300))
            seconds, wallets = reference(engine, client, 300)
            print(
                f"reference: plain SQL json_agg of every wallet's orders + Redis SET pipeline: "
                f"{wallets:,} wallets in {seconds:.2f} s = {wallets / seconds:,.0f} wallets/s"
            )
            print(f"load average after: {os.getloadavg()[0]:.1f}")
            engine.dispose()
    finally:
        client.flushdb()


if __name__ == "__main__":
    main()
