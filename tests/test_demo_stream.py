"""`mlkit demo stream`: live orders of the demo world's shape, scored by the prod model and
rewarded into the bandit, on every dialect."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from mlkit.toolkit import schema
from mlkit.toolkit.config import load_config
from mlkit.toolkit.db import init_schema, make_engine
from mlkit.toolkit.demo.seed import seed_demo
from mlkit.toolkit.demo.stream import DemoStream, StreamTotals
from mlkit.toolkit.fraud import etl
from mlkit.toolkit.fraud.columns import DECISIONS
from mlkit.toolkit.fraud.pipeline import train_fraud_model
from mlkit.toolkit.pricing.state import BanditStore


@pytest.fixture(scope="module")
def world(engine, database_url):
    """A small seeded world with a prod fraud model, shared by the module's tests."""
    seed_demo(engine, orders=4000, days=30, seed=3, families=("fraud", "pricing"))
    etl.run_etl(engine, *etl.resolve_range(engine, None, None))
    config = load_config(database_url=database_url)
    train_fraud_model(engine, config, alias="prod", force=True)
    return config


def test_stream_places_the_rate_and_scores_every_order(engine, database_url, world, cli):
    before = {"orders": _max_id(engine), "pulls": _pulls(engine), "rows": _counts(engine)}

    out = cli("demo", "stream", "--rate", "15", "--duration", "3", "--seed", "1", "--json",
              env={"MLKIT_DATABASE_URL": database_url})  # fmt: skip
    assert out.exit_code == 0, out.output
    totals = json.loads(out.stdout)
    assert 40 <= totals["orders"] <= 50 and totals["scored"] == totals["orders"]
    assert sum(totals["arms"].values()) == sum(totals["kinds"].values()) == totals["orders"]

    o, p = schema.orders, schema.fraud_predictions
    with engine.connect() as conn:
        live = conn.execute(sa.select(o).where(o.c.order_id > before["orders"])).all()
        predictions = conn.execute(
            sa.select(p.c.order_id, p.c.decision, p.c.fraud_score, p.c.features).where(
                p.c.order_id > before["orders"]
            )
        ).all()
    assert len(live) == totals["orders"]
    assert sorted(r.order_id for r in predictions) == sorted(r.order_id for r in live)
    assert {r.decision for r in predictions} <= set(DECISIONS)
    assert {r.status for r in live} <= {"COMPLETED", "FAILED"}
    assert _pulls(engine) == before["pulls"] + totals["orders"]
    # Existing rows are never touched: every table only grew.
    after = _counts(engine)
    assert all(after[name] >= count for name, count in before["rows"].items())


def test_stream_makes_fraud_bursts_from_new_wallets_in_plain_values(engine, world):
    """A tick's worth of orders at a time, on a clock moved by hand: bot sessions start,
    their wallets are new, and a burst places several orders within minutes."""
    from datetime import timedelta

    first_order, first_wallet = _max_id(engine), _max_wallet(engine)
    stream = DemoStream(engine, world, seed=5)
    totals = StreamTotals()
    for second in range(0, 600, 10):  # ten minutes, a tick every ten seconds
        stream.tick(20, totals, stream.origin + timedelta(seconds=second))
    assert totals.orders == 1200 and totals.new_wallets > 0
    assert totals.kinds["scalper_bot"] > 0 and totals.kinds["stolen_payment"] > 0
    # The world's shares: 3.5 % bots and 1.2 % stolen payments, give or take the draw.
    assert 0.015 < totals.kinds["scalper_bot"] / totals.orders < 0.07

    o, w, tw = schema.orders, schema.wallets, schema.demo_truth_wallets
    with engine.connect() as conn:
        bursts = conn.execute(
            sa.select(o.c.buyer_wallet_id, sa.func.count(), sa.func.min(o.c.created_at),
                      sa.func.max(o.c.created_at))
            .join(tw, tw.c.wallet_id == o.c.buyer_wallet_id)
            .where(o.c.order_id > first_order, tw.c.kind == "scalper_bot",
                   o.c.buyer_wallet_id > first_wallet)
            .group_by(o.c.buyer_wallet_id)
        ).all()  # fmt: skip
        new_wallets = conn.execute(sa.select(w).where(w.c.wallet_id > first_wallet)).all()
        raw = conn.execute(
            sa.text(
                "SELECT CAST(price AS CHAR(40)), CAST(geo_lat AS CHAR(40)), "
                "CAST(buyer_wallet_id AS CHAR(40)) FROM orders WHERE order_id > :first"
            ).bindparams(first=first_order)
        ).all()
        truth = conn.execute(
            sa.select(sa.func.count()).select_from(schema.demo_truth_orders)
            .where(schema.demo_truth_orders.c.order_id > first_order)
        ).scalar_one()  # fmt: skip
    assert any(n >= 3 and last - first <= timedelta(minutes=10) for _, n, first, last in bursts)
    assert len(new_wallets) == totals.new_wallets
    assert all(wallet.created_at < stream.origin for wallet in new_wallets)
    assert truth == totals.orders
    text = " ".join(str(value) for row in raw for value in row)
    assert "np." not in text and "float64" not in text and "int64" not in text
    float(raw[0][0]), float(raw[0][1]), int(raw[0][2])  # plain numbers in the database


def test_stream_refuses_an_empty_database(tmp_path, cli):
    url = f"sqlite:///{tmp_path}/empty.db"
    init_schema(make_engine(url))
    out = cli("demo", "stream", "--duration", "1", env={"MLKIT_DATABASE_URL": url})
    assert out.exit_code == 1 and "no events or wallets" in out.stderr


def _max_id(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.max(schema.orders.c.order_id))).scalar_one() or 0


def _max_wallet(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.max(schema.wallets.c.wallet_id))).scalar_one() or 0


def _counts(engine) -> dict:
    names = ("orders", "wallets", "fraud_predictions", "demo_truth_orders", "security_alerts",
             "bot_detection", "events")  # fmt: skip
    with engine.connect() as conn:
        return {
            name: conn.execute(
                sa.select(sa.func.count()).select_from(schema.metadata.tables[name])
            ).scalar_one()
            for name in names
        }


def _pulls(engine) -> int:
    return sum(s.pulls for s in BanditStore(engine).read_database().values())
