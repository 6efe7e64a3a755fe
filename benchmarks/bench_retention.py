"""`mlkit retention run` rows/s on PostgreSQL, beside one INSERT ... SELECT + DELETE.

The demo world (--orders, 90 days) gets a prediction per order; everything before the
world's midpoint is archived. The reference moves the same rows of an identical copy of
the database (CREATE DATABASE ... TEMPLATE) in one transaction with two INSERT ... SELECT
and two DELETE statements: the floor, with no batching, checks or crash safety.

Run: python benchmarks/bench_retention.py [--orders 1000000] [--batch-size 10000]
"""

from __future__ import annotations

import json
import sys
import time
import uuid

import sqlalchemy as sa
from _common import options, run_mlkit

SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"


def reference_seconds(url: str, cutoff: str) -> tuple[float, int]:
    from mlkit.toolkit.schema import fraud_predictions, orders

    order_columns = ", ".join(c.name for c in orders.columns)
    prediction_columns = ", ".join(c.name for c in fraud_predictions.columns)
    old = "SELECT order_id FROM orders WHERE created_at < :cutoff"
    engine = sa.create_engine(url)
    started = time.perf_counter()
    with engine.begin() as conn:
        moved = conn.execute(
            sa.text(
                f"INSERT INTO orders_archive ({order_columns}, archived_at) "
                f"SELECT {order_columns}, now() FROM orders WHERE created_at < :cutoff"
            ),
            {"cutoff": cutoff},
        ).rowcount
        moved += conn.execute(
            sa.text(
                f"INSERT INTO fraud_predictions_archive ({prediction_columns}, archived_at) "
                f"SELECT {prediction_columns}, now() FROM fraud_predictions "
                f"WHERE order_id IN ({old})"
            ),
            {"cutoff": cutoff},
        ).rowcount
        conn.execute(
            sa.text(f"DELETE FROM fraud_predictions WHERE order_id IN ({old})"), {"cutoff": cutoff}
        )
        conn.execute(sa.text("DELETE FROM orders WHERE created_at < :cutoff"), {"cutoff": cutoff})
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed, moved


def main() -> None:
    args = options(__doc__, orders=1_000_000, batch_size=10_000)
    admin = sa.create_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
    name = f"mlkit_bench_{uuid.uuid4().hex[:8]}"
    twin = f"{name}_ref"
    url, twin_url = f"{SERVER}/{name}", f"{SERVER}/{twin}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        print(f"seeding {args.orders:,} orders with a prediction each ...", file=sys.stderr)
        run_mlkit(
            url,
            "demo",
            "seed",
            "--orders",
            str(args.orders),
            "--days",
            "90",
            "--start",
            "2024-01-01",
            "--families",
            "fraud",
        )
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO fraud_predictions (order_id, fraud_score, decision, model_version,"
                    " created_at) SELECT order_id, random(), 'APPROVED', 'fraud:1',"
                    " created_at + interval '5 minutes' FROM orders"
                )
            )
            low, high = conn.execute(
                sa.text("SELECT MIN(created_at), MAX(created_at) FROM orders")
            ).one()
        engine.dispose()
        cutoff = (low + (high - low) / 2).replace(microsecond=0).isoformat()
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{twin}" TEMPLATE "{name}"'))
        started = time.perf_counter()
        document = json.loads(
            run_mlkit(
                url,
                "retention",
                "run",
                "--older-than",
                cutoff,
                "--batch-size",
                str(args.batch_size),
                "--json",
            )
        )
        wall_s = time.perf_counter() - started
        ref_s, ref_rows = reference_seconds(twin_url, cutoff)
    finally:
        with admin.connect() as conn:
            for db in (name, twin):
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    moved = document["moved"]
    rows = moved["orders"] + moved["predictions"]
    assert rows == ref_rows, (rows, ref_rows)
    print(
        f"mlkit retention run: {moved['orders']:,} orders + {moved['predictions']:,} "
        f"predictions in {document['batches']} batches of {args.batch_size:,} in "
        f"{document['seconds']:.1f} s ({rows / document['seconds']:,.0f} rows/s; "
        f"{wall_s:.1f} s wall with start-up); live + archive conserved: "
        f"{document['conserved']}"
    )
    print(
        f"reference, one INSERT ... SELECT + DELETE per table in one transaction: "
        f"{ref_s:.1f} s ({ref_rows / ref_s:,.0f} rows/s); mlkit takes "
        f"{document['seconds'] / ref_s:.2f} x"
    )


if __name__ == "__main__":
    main()
