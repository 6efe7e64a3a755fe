"""Online fraud scoring in-process: `FraudScorer.score` (what `mlkit serve` and `predict fraud`
run: features, score, decision, top contributions) p50/p99 with the wallet's history read from
the database and from Redis, on the autocommit engine `mlkit serve` reads with (and the
database path on a command's engine, which pings and opens a transaction per checkout), and
SQL statements per order, beside references measured in the same run, interleaved order by
order: one `SELECT 1` through the same engine, one Redis GET.

Targets: p99 under 10 ms on the database path and under 5 ms from Redis; at most 2 statements
per order.
World: a demo world on a scratch PostgreSQL database (or --database URL holding fraud@prod)
with an XGBoost fraud model at prod, and a Redis of its own on a free port, materialized.
Run: python benchmarks/bench_online.py [--orders 20000] [--calls 500] [--database URL]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from _scratch import scratch_postgres
from bench_serve import own_redis

TARGET_DATABASE_P99_MS = 10.0
TARGET_REDIS_P99_MS = 5.0
TARGET_STATEMENTS = 2
REQUEST_FIELDS = (
    "buyer_wallet_id",
    "event_id",
    "price",
    "payment_method",
    "geo_lat",
    "geo_lon",
    "created_at",
)


def build_world(url: str, orders: int) -> None:
    from mlkit.toolkit.config import load_config
    from mlkit.toolkit.db import make_engine
    from mlkit.toolkit.demo.seed import seed_demo
    from mlkit.toolkit.fraud import etl
    from mlkit.toolkit.fraud.pipeline import train_fraud_model
    from mlkit.toolkit.registry import promote, resolve

    engine = make_engine(url)
    seed_demo(engine, orders=orders, days=30, seed=3, families=("fraud",))
    etl.run_etl(engine, *etl.resolve_range(engine, None, None))
    config = load_config(database_url=url)
    train_fraud_model(engine, config, kind="xgboost", alias="candidate", force=True)
    promote(engine, "fraud", resolve(engine, "fraud@candidate").version, "prod", reason="bench")
    engine.dispose()


def requests_of(engine, calls: int) -> list[dict]:
    """`calls` stored orders, as `predict fraud` takes them (JSON values), in random order."""
    from mlkit.toolkit import schema

    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(*[schema.orders.c[k] for k in REQUEST_FIELDS])
            .order_by(sa.func.random())
            .limit(calls)
        ).all()
    return [
        {**row._asdict(), "price": float(row.price), "created_at": row.created_at.isoformat()}
        for row in rows
    ]


def measure(url: str, redis_url: str, calls: int) -> tuple[dict, dict]:
    """Milliseconds per call of each path and reference, interleaved order by order so the
    machine's load weighs on all alike; and the statements each database-path order ran,
    its own apart from the serving version's alias check."""
    import redis

    from mlkit.toolkit.config import load_config
    from mlkit.toolkit.db import make_engine
    from mlkit.toolkit.fraud.online import materialize
    from mlkit.toolkit.serving import FraudScorer, RedisLink

    engine = make_engine(url, autocommit=True)  # as `mlkit serve` reads
    pinging = make_engine(url)  # as a command's: a transaction and a ping per checkout
    client = redis.Redis.from_url(redis_url)
    materialize(engine, client, ttl_seconds=3600, full=True)
    config = load_config(database_url=url, redis_url=redis_url)
    database = FraudScorer(engine, config, redis=RedisLink(None))
    cached = FraudScorer(engine, config)
    command = FraudScorer(pinging, config, redis=RedisLink(None))
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))

    def select_one(_):
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1")).scalar()

    paths = {
        "database path": database.score,
        "redis path": cached.score,
        "database, command's": command.score,
        "reference SELECT 1": select_one,
        "reference redis GET": lambda _: client.get("features:wallet:1"),
    }
    requests = requests_of(engine, calls)
    for request in requests[:50]:  # warm: models loaded, pools filled, caches hot
        for call in paths.values():
            call(request)
    times: dict[str, list[float]] = {name: [] for name in paths}
    counts: dict[str, list[int]] = {"order": [], "alias": []}
    for request in requests:
        for name, call in paths.items():
            statements.clear()
            started = time.perf_counter()
            result = call(request)
            times[name].append((time.perf_counter() - started) * 1000)
            if name == "database path":
                alias = sum(1 for s in statements if "model_" in s)  # the registry's tables
                counts["order"].append(len(statements) - alias)
                counts["alias"].append(alias)
            if name in ("database path", "redis path"):
                assert result["feature_source"] == name.split()[0], result["feature_source"]
    engine.dispose()
    pinging.dispose()
    return times, counts


def report(times: dict[str, list[float]], counts: dict[str, list[int]]) -> None:
    print(f"in-process, {len(counts['order'])} orders, {os.cpu_count()} cores; ms")
    for name, values in times.items():
        p50, p99 = np.percentile(values, [50, 99])
        print(f"{name:<22} p50 {p50:6.2f}  p99 {p99:6.2f}")
    for label, name, target in (
        ("database path p99", "database path", TARGET_DATABASE_P99_MS),
        ("redis path p99", "redis path", TARGET_REDIS_P99_MS),
    ):
        value = np.percentile(times[name], 99)
        verdict = "ok" if value <= target else "MISSED"
        print(f"{label} {value:.2f} ms (target <= {target:g}) {verdict}")
    most = max(counts["order"])
    checks = sum(1 for n in counts["alias"] if n)
    verdict = "ok" if most <= TARGET_STATEMENTS else "MISSED"
    print(
        f"SQL statements per order, database path: at most {most} (target <= "
        f"{TARGET_STATEMENTS}) {verdict}; the alias check (at most once a second) ran "
        f"with {checks} of them"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--database", help="a world with fraud@prod (default: a scratch one)")
    args = parser.parse_args()
    if not shutil.which("redis-server"):
        sys.exit("needs redis-server (apt install redis-server)")
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # as `mlkit serve` runs the model
    with contextlib.ExitStack() as stack:
        redis_url, _ = stack.enter_context(own_redis())
        if args.database:
            url = args.database
        else:
            url = stack.enter_context(scratch_postgres())
            home = stack.enter_context(tempfile.TemporaryDirectory())
            os.environ["MLKIT_HOME"] = str(Path(home) / "home")
            build_world(url, args.orders)
        report(*measure(url, redis_url, args.calls))


if __name__ == "__main__":
    main()
