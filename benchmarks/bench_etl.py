"""`mlkit etl run` over 1,000,000 demo orders on PostgreSQL, beside reading them once; then
one new day appended and the nightly `etl run --since last`, beside the full rebuild.

Targets: <= 60 s, and <= 5 x the time of `COPY (SELECT <the order columns>) TO STDOUT`
on the same database in the same run. The night reads only the history of the day's wallets,
events and resold tickets: its time follows the day's orders, not the history's (a world of
N orders spans 90 x N / 1,000,000 days, so a day holds the same orders at every size). With
--spark the same night runs again on the Spark engine (local mode), from the same state.

Run: python benchmarks/bench_etl.py [--orders 1000000] [--spark]
         [--database URL (reuse a seeded one)]
"""

from __future__ import annotations

import io
import json
import os
import time
from contextlib import nullcontext

import sqlalchemy as sa
from _common import options, run_mlkit
from _scratch import scratch_postgres

TARGET_S = 60.0
TARGET_RATIO = 5.0
SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"


def copy_out_seconds(url: str) -> float:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor()
        started = time.perf_counter()
        cursor.copy_expert(
            "COPY (SELECT order_id, buyer_wallet_id, seller_wallet_id, event_id, ticket_id, price,"
            " payment_method, is_resale, status, geo_lat, geo_lon, created_at FROM orders)"
            " TO STDOUT WITH (FORMAT csv)",
            io.StringIO(),
        )
        elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed


def server_side_write_seconds(url: str, rows: int) -> float:
    """The floor for the load step: PostgreSQL writing as many feature-shaped rows by itself
    (no client, no parsing) into an equally indexed table."""
    from mlkit.toolkit.fraud.columns import NUMERIC_FEATURES

    engine = sa.create_engine(url)
    numbers = ", ".join(f"(g % 97) * 0.37 AS {name}" for name in NUMERIC_FEATURES)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TEMP TABLE ref_features (LIKE fraud_features INCLUDING ALL)"))
        started = time.perf_counter()
        conn.execute(
            sa.text(
                f"INSERT INTO ref_features (order_id, wallet_id, event_id, feature_ts,"
                f" {', '.join(NUMERIC_FEATURES)}, payment_method, is_resale, label, computed_at)"
                f" SELECT g, g % 160000, g % 2500,"
                f" timestamp '2026-01-01' + g * interval '7 seconds',"
                f" {numbers.replace(' AS ', ' AS _')}, 'credit_card', g % 25 = 0, false, now()"
                f" FROM generate_series(1, :n) AS g"
            ),
            {"n": rows},
        )
        elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed


def one_night(url: str, engines: list[str]) -> list[tuple[str, dict, float]]:
    """Append one day to the world and time `etl run --since last` on it on each engine,
    with the clock at the end of that day; between engines the day's feature rows and the
    watermark are put back as they were, so each engine meets the same night."""
    from mlkit.toolkit.fraud import etl

    engine = sa.create_engine(url)
    watermark = etl.read_watermark(engine)
    with engine.connect() as conn:
        newest_order = conn.execute(sa.text("SELECT MAX(order_id) FROM orders")).scalar()
    seeded = json.loads(run_mlkit(url, "demo", "seed", "--append", "--days", "1", "--json"))
    os.environ["MLKIT_NOW"] = seeded["end"]
    nights = []
    try:
        for name in engines:
            if nights:
                with engine.begin() as conn:
                    conn.execute(
                        sa.text("DELETE FROM fraud_features WHERE order_id > :newest"),
                        {"newest": newest_order},
                    )
                    conn.execute(
                        sa.text(
                            "UPDATE etl_watermarks SET watermark = :watermark"
                            " WHERE job = 'fraud_features'"
                        ),
                        {"watermark": watermark},
                    )
            started = time.perf_counter()
            night = run_mlkit(url, "etl", "run", "--since", "last", "--engine", name, "--json")
            nights.append((name, json.loads(night), time.perf_counter() - started))
    finally:
        del os.environ["MLKIT_NOW"]
        engine.dispose()
    return nights


def main() -> None:
    args = options(
        __doc__, database_help="an already seeded database to reuse", orders=1_000_000, spark=False
    )
    given = args.database
    days = max(90, round(90 * args.orders / 1_000_000))
    with nullcontext(given) if given else scratch_postgres(SERVER) as url:
        if not given:
            seed = ("--orders", str(args.orders), "--days", str(days), "--families", "fraud")
            run_mlkit(url, "demo", "seed", *seed)
        copy_s = min(copy_out_seconds(url) for _ in range(3))
        floor_s = server_side_write_seconds(url, args.orders)
        started = time.perf_counter()
        result = json.loads(run_mlkit(url, "etl", "run", "--json"))
        etl_s = time.perf_counter() - started
        nights = one_night(url, ["local", "spark"] if args.spark else ["local"])
    ratio = etl_s / copy_s
    ok = etl_s <= TARGET_S and ratio <= TARGET_RATIO
    print(
        f"mlkit etl run: {result['rows']:,} orders in {etl_s:.1f} s wall "
        f"({result['rows'] / etl_s:,.0f} orders/s; target <= {TARGET_S:.0f} s)"
    )
    print(f"reference, COPY (SELECT the same order columns) TO STDOUT: {copy_s:.2f} s")
    print(f"ratio: {ratio:.1f} x (target <= {TARGET_RATIO:.0f} x) {'ok' if ok else 'SLOW'}")
    print(
        f"floor, PostgreSQL inserting {args.orders:,} feature-shaped rows by itself: "
        f"{floor_s:.1f} s ({floor_s / copy_s:.1f} x the COPY out)"
    )
    for name, night, night_s in nights:
        print(
            f"one new day, `etl run --since last --engine {name}`: {night['new_orders']:,} new"
            f" orders, {night['history_rows_read']:,} history rows read of "
            f"{result['rows'] + night['new_orders']:,}, {night_s:.1f} s wall"
            f" ({night_s / etl_s:.2f} x the local full rebuild of {etl_s:.1f} s above)"
        )


if __name__ == "__main__":
    main()
