"""fraud_predictions keeps only the indexes its readers need: `db init` drops those an older
mlkit made, on every dialect; on PostgreSQL never analysed, an order's latest prediction and
the latest blocked orders are read through the new ones."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from mlkit.toolkit import schema
from mlkit.toolkit.db import init_schema
from mlkit.toolkit.monitor import latest, latest_blocked

NOW = datetime(2026, 3, 1, 12, 0)


def index_names(engine) -> set[str]:
    return {i["name"] for i in sa.inspect(engine).get_indexes("fraud_predictions")}


def test_db_init_drops_the_retired_indexes_and_keeps_the_others(engine):
    retired = schema.RETIRED_INDEXES["fraud_predictions"]
    with engine.begin() as conn:  # as an older mlkit made them
        for name, column in zip(retired, ("order_id", "created_at", "decision"), strict=True):
            conn.execute(sa.text(f"CREATE INDEX {name} ON fraud_predictions ({column})"))
    assert set(retired) <= index_names(engine)
    init_schema(engine)
    assert index_names(engine) == {i.name for i in schema.fraud_predictions.indexes}
    init_schema(engine)  # a second run: nothing to drop
    assert index_names(engine) == {i.name for i in schema.fraud_predictions.indexes}


def test_latest_reads_go_through_the_new_indexes_without_statistics(engine):
    o, p = schema.orders, schema.fraud_predictions
    with engine.begin() as conn:
        conn.execute(p.delete())
        conn.execute(o.delete())
        conn.execute(
            o.insert(),
            [
                {
                    "order_id": i,
                    "buyer_wallet_id": i % 50,
                    "event_id": 1,
                    "price": 10.0,
                    "payment_method": "card",
                    "is_resale": False,
                    "status": "COMPLETED",
                    "created_at": NOW - timedelta(minutes=i),
                }
                for i in range(1, 2001)
            ],
        )
        conn.execute(
            p.insert(),
            [
                {
                    "order_id": i,
                    "fraud_score": 0.5,
                    "decision": "BLOCKED" if i % 7 == 0 else "APPROVED",
                    "model_version": "fraud:1",
                    "created_at": NOW,
                }
                for i in [*range(1, 2001), *range(1, 2001, 3)]  # every third re-scored
            ],
        )
        blocked = latest_blocked(conn, limit=5)
        if conn.dialect.name != "postgresql":
            assert len(blocked) == 5
            return
        query = sa.select(o.c.order_id, latest(p, o.c.order_id, "decision")).where(
            o.c.created_at > NOW - timedelta(hours=3)
        )
        plan = "\n".join(
            conn.execute(
                sa.text(
                    "EXPLAIN " + str(query.compile(conn, compile_kwargs={"literal_binds": True}))
                )
            ).scalars()
        )
        assert "ix_predictions_order_id" in plan and "fraud_predictions_pkey" not in plan, plan
        assert len(blocked) == 5
