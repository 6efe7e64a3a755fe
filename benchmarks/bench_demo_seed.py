"""`mlkit demo seed --orders 1000000` into PostgreSQL, beside two references from the same run.

Target: <= 60 s on a 2-core machine. References: the server generating the same number
of order rows itself (`INSERT ... SELECT generate_series`, the floor: no client, no
network) and a row-by-row `executemany` INSERT, the common approach, timed on a sample.

Run: python benchmarks/bench_demo_seed.py [--orders 1000000] [--server postgresql+psycopg2://postgres@127.0.0.1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import sqlalchemy as sa
from _scratch import scratch_postgres

TARGET_S = 60.0


def server_side_floor(url: str, rows: int) -> float:
    """Seconds for PostgreSQL to fill an orders-shaped, equally indexed table by itself."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE ref_orders (LIKE orders INCLUDING ALL)"))
        started = time.perf_counter()
        conn.execute(
            sa.text(
                """INSERT INTO ref_orders (order_id, buyer_wallet_id, event_id, ticket_id, price,
                       payment_method, is_resale, status, ip_address, geo_lat, geo_lon, country,
                       created_at, completed_at)
                   SELECT g, g % 160000, g % 2500, g, 10 + (g % 500), 'credit_card', g % 25 = 0,
                          'COMPLETED', '10.0.0.1', 52.5, 13.4, 'DE',
                          timestamp '2026-01-01' + g * interval '7 seconds',
                          timestamp '2026-01-01' + g * interval '7 seconds'
                   FROM generate_series(1, :n) AS g"""
            ),
            {"n": rows},
        )
        elapsed = time.perf_counter() - started
        conn.execute(sa.text("DROP TABLE ref_orders"))
    engine.dispose()
    return elapsed


def row_by_row_rate(url: str, sample: int = 20_000) -> float:
    """Rows per second of a plain executemany INSERT of order rows (the common approach)."""
    engine = sa.create_engine(url)
    rows = [
        (i, i % 1000, 1, None, 42.0, "paypal", False, "COMPLETED", "2026-01-01 00:00:00")
        for i in range(10_000_000, 10_000_000 + sample)
    ]
    with engine.begin() as conn:
        cursor = conn.connection.driver_connection.cursor()
        started = time.perf_counter()
        cursor.executemany(
            "INSERT INTO orders (order_id, buyer_wallet_id, event_id, ticket_id, price,"
            " payment_method, is_resale, status, created_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            rows,
        )
        elapsed = time.perf_counter() - started
        conn.rollback()
    engine.dispose()
    return sample / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--server", default="postgresql+psycopg2://postgres@127.0.0.1:5432")
    args = parser.parse_args()

    with scratch_postgres(args.server) as url:
        subprocess.run(
            [sys.executable, "-m", "mlkit.commands.main", "--database", url, "db", "init"],
            check=True,
            capture_output=True,
        )
        started = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "mlkit.commands.main",
                "--database",
                url,
                "demo",
                "seed",
                "--orders",
                str(args.orders),
                "--json",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - started
        result = json.loads(done.stdout)
        total_rows = sum(result["rows"].values())
        floor = server_side_floor(url, args.orders)
        naive = row_by_row_rate(url)

    verdict = "ok" if wall <= TARGET_S else "SLOW"
    print(
        f"mlkit demo seed --orders {args.orders:,} into PostgreSQL: {wall:.1f} s wall "
        f"(target <= {TARGET_S:.0f} s) {verdict}"
    )
    print(
        f"  generate {result['generate_seconds']} s, load {result['load_seconds']} s; "
        f"{total_rows:,} rows in {len(result['rows'])} tables"
    )
    print(f"  {args.orders / wall:,.0f} orders/s, {total_rows / wall:,.0f} rows/s overall")
    print(
        f"reference, server-side INSERT ... SELECT of {args.orders:,} order rows: {floor:.1f} s "
        f"({args.orders / floor:,.0f} rows/s)"
    )
    print(
        f"reference, row-by-row executemany INSERT: {naive:,.0f} rows/s "
        f"(-> {args.orders / naive:.0f} s for the orders alone)"
    )


if __name__ == "__main__":
    main()
