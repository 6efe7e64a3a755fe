"""Schema creation, DDL files, row counts and bulk loads on every dialect."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from mlkit.toolkit import db, schema

SQL_DIR = Path(__file__).resolve().parents[1] / "sql"


@pytest.mark.parametrize("dialect", db.DIALECTS)
def test_sql_files_are_the_ddl_the_code_generates(dialect):
    shipped = (SQL_DIR / f"{dialect}.sql").read_text()
    assert shipped == db.ddl(dialect), (
        f"sql/{dialect}.sql drifted from the schema: run `mlkit db ddl --dialect {dialect} "
        f"> sql/{dialect}.sql`"
    )


def test_init_creates_every_table_and_the_kpi_view_idempotently(engine):
    assert db.init_schema(engine) == []  # the fixture already created everything
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        tables = set(inspector.get_table_names())
        assert set(schema.metadata.tables) <= tables
        assert conn.execute(sa.text("SELECT COUNT(*) FROM kpi_hourly")).scalar() == 0
        index_names = {ix["name"] for ix in inspector.get_indexes("orders")}
        assert {"ix_orders_created_at", "ix_orders_wallet_created"} <= index_names


def test_status_counts_rows_of_every_table(engine):
    counts = db.table_counts(engine)
    assert set(counts) == set(schema.metadata.tables)
    assert all(value == 0 for value in counts.values())


def test_bulk_insert_round_trips_types_and_continues_ids(engine):
    frame = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "event_type": ["failed_login", "password_reset", "failed_login"],
            "severity": ["high", None, "low"],
            "source_ip": ["10.0.0.1", "10.0.0.2", None],
            "user_id": ["emoji \U0001f600 user", "quote \"' comma, user", "line\nbreak"],
            "metadata": [json.dumps({"attempts": 6}), None, json.dumps({"ok": True})],
            "created_at": pd.to_datetime(
                ["2026-01-01 00:00:01", "2026-01-02 12:30:00", "2026-02-28 23:59:59"]
            ),
        }
    )
    with engine.begin() as conn:
        assert db.bulk_insert(conn, schema.security_events, frame) == 3
        db.sync_sequences(conn, [schema.security_events])
        # A row without an explicit id continues after the loaded ones.
        conn.execute(
            schema.security_events.insert().values(
                event_type="rate_limited", created_at=datetime(2026, 3, 1)
            )
        )
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(schema.security_events).order_by(schema.security_events.c.id)
        ).all()
    assert [r.id for r in rows] == [1, 2, 3, 4]
    assert rows[0].user_id == "emoji \U0001f600 user"
    assert rows[1].user_id == "quote \"' comma, user"
    assert rows[2].user_id == "line\nbreak"
    assert rows[1].severity is None and rows[2].source_ip is None
    assert rows[0].metadata == {"attempts": 6} and rows[1].metadata is None
    assert rows[2].created_at == datetime(2026, 2, 28, 23, 59, 59)


def test_bulk_insert_booleans_and_money(engine):
    frame = pd.DataFrame(
        {
            "order_id": [10, 11],
            "buyer_wallet_id": [1, 2],
            "event_id": [1, 1],
            "price": [19.99, 1250.5],
            "payment_method": ["paypal", "crypto_wallet"],
            "is_resale": [True, False],
            "status": ["COMPLETED", "FAILED"],
            "geo_lat": [52.52, float("nan")],
            "created_at": pd.to_datetime(["2026-01-01 10:00:00", "2026-01-01 11:00:00"]),
        }
    )
    with engine.begin() as conn:
        db.bulk_insert(conn, schema.orders, frame)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(schema.orders).order_by(schema.orders.c.order_id)).all()
    assert [bool(r.is_resale) for r in rows] == [True, False]
    assert [r.price for r in rows] == [19.99, 1250.5]
    assert rows[1].geo_lat is None


def test_kpi_view_aggregates_orders_with_their_latest_prediction(engine):
    orders = pd.DataFrame(
        {
            "order_id": [100, 101, 102],
            "buyer_wallet_id": [5, 5, 6],
            "event_id": [1, 1, 1],
            "price": [10.0, 20.0, 30.0],
            "payment_method": ["paypal"] * 3,
            "is_resale": [False] * 3,
            "status": ["COMPLETED", "COMPLETED", "FAILED"],
            "created_at": pd.to_datetime(
                ["2026-03-01 10:05:00", "2026-03-01 10:45:00", "2026-03-01 11:10:00"]
            ),
        }
    )
    predictions = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "order_id": [100, 100, 101],
            "fraud_score": [0.9, 0.1, 0.95],
            "decision": ["BLOCKED", "APPROVED", "BLOCKED"],
            "created_at": pd.to_datetime(["2026-03-01 10:06:00"] * 3),
        }
    )
    with engine.begin() as conn:
        conn.execute(schema.orders.delete())
        db.bulk_insert(conn, schema.orders, orders)
        db.bulk_insert(conn, schema.fraud_predictions, predictions)
    db.refresh_kpi(engine)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM kpi_hourly ORDER BY hour")).mappings().all()
    assert [r["total_orders"] for r in rows] == [2, 1]
    first = rows[0]
    # Order 100 was re-scored: only its latest prediction (APPROVED) counts.
    assert (first["approved_count"], first["blocked_count"], first["scored_orders"]) == (1, 1, 2)
    assert float(first["total_revenue"]) == 30.0
    assert rows[1]["completed_orders"] == 0


def test_read_frame_types_columns_alike_on_every_dialect(engine):
    frame = pd.DataFrame(
        {
            "id": [50, 51],
            "event_type": ["", "x"],  # an empty string is not NULL
            "severity": [None, "high"],
            "created_at": pd.to_datetime(["2026-05-01 00:00:00", "2026-05-02 03:04:05"]),
        }
    )
    with engine.begin() as conn:
        db.bulk_insert(conn, schema.security_events, frame)
    t = schema.security_events
    query = sa.select(t.c.id, t.c.event_type, t.c.severity, t.c.created_at).where(t.c.id >= 50)
    with engine.connect() as conn:
        got = db.read_frame(conn, query.order_by(t.c.id))
    assert got["event_type"].tolist() == ["", "x"]
    assert pd.isna(got["severity"].iloc[0]) and got["severity"].iloc[1] == "high"
    assert got["created_at"].tolist() == list(frame["created_at"])
    assert got["id"].tolist() == [50, 51]


def test_init_adds_indexes_missing_from_older_tables(engine):
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "DROP INDEX ix_orders_seller"
                + (" ON orders" if engine.dialect.name == "mysql" else "")
            )
        )
    added: list[str] = []
    db.init_schema(engine, indexes_added=added)
    with engine.connect() as conn:
        names = {ix["name"] for ix in sa.inspect(conn).get_indexes("orders")}
    assert "ix_orders_seller" in names
    assert added == ["ix_orders_seller"]  # what `db init` reports
    again: list[str] = []
    db.init_schema(engine, indexes_added=again)
    assert again == []


NUMPY_AFTER_THE_ENGINE = """
import sys
import sqlalchemy as sa
from mlkit.toolkit.db import make_engine

engine = make_engine(sys.argv[1])
assert "numpy" not in sys.modules, "opening an engine imported numpy"
import numpy as np

with engine.begin() as conn:
    conn.execute(sa.text("CREATE TABLE numpy_late (x FLOAT, n BIGINT, b BOOLEAN)"))
    rows = [
        {"x": np.float32(1.5), "n": np.int64(2**40), "b": np.bool_(True)},
        {"x": np.float64("nan"), "n": np.uint8(7), "b": np.bool_(False)},
    ]
    conn.execute(sa.text("INSERT INTO numpy_late VALUES (:x, :n, :b)"), rows)
    # A raw driver cursor, as the bulk paths use: no SQLAlchemy event stands in the way.
    raw = conn.connection.driver_connection.cursor()
    marker = "?" if engine.dialect.name == "sqlite" else "%s"
    raw.execute(f"INSERT INTO numpy_late VALUES ({marker}, {marker}, {marker})",
                (np.float64(-2.25), np.int32(-3), np.bool_(True)))
    got = conn.execute(sa.text("SELECT x, n, b FROM numpy_late ORDER BY n")).all()
print([(x, int(n), bool(b)) for x, n, b in got])
"""


def test_numpy_scalars_are_taught_to_the_driver_when_numpy_arrives_after_the_engine(
    database_url,
):
    """An engine does not import numpy (0.1 s of a command's start), yet numpy's scalars,
    once something imports numpy, are written as the plain values they hold (NaN as NULL),
    through SQLAlchemy and through the raw driver cursor alike."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", NUMPY_AFTER_THE_ENGINE, database_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.strip() == "[(-2.25, -3, True), (None, 7, False), (1.5, 1099511627776, True)]"
    )
