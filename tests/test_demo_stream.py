"""`mlkit demo stream`: live orders scored by the prod model and rewarded into the bandit."""

from __future__ import annotations

import json

import sqlalchemy as sa

from mlkit.toolkit import schema
from mlkit.toolkit.clock import utcnow
from mlkit.toolkit.config import load_config
from mlkit.toolkit.db import init_schema, make_engine
from mlkit.toolkit.demo.seed import seed_demo
from mlkit.toolkit.fraud import etl
from mlkit.toolkit.fraud.pipeline import train_fraud_model
from mlkit.toolkit.pricing.state import BanditStore


def test_stream_places_scores_and_rewards_orders(tmp_path, cli, redis_url):
    url = f"sqlite:///{tmp_path}/mlkit.db"
    engine = make_engine(url)
    init_schema(engine)
    seed_demo(engine, orders=4000, days=30, seed=3, families=("fraud", "pricing"))
    etl.run_etl(engine, *etl.resolve_range(engine, None, None))
    config = load_config(database_url=url)
    train_fraud_model(engine, config, alias="prod", force=True)
    before = {"orders": _count(engine, schema.orders), "pulls": _pulls(engine)}
    started = utcnow()

    out = cli("demo", "stream", "--rate", "4", "--duration", "2", "--seed", "1", "--json",
              env={"MLKIT_DATABASE_URL": url, "MLKIT_REDIS_URL": redis_url})  # fmt: skip
    assert out.exit_code == 0, out.output
    totals = json.loads(out.stdout)
    assert totals["orders"] == 8 and totals["scored"] == 8
    assert sum(totals["decisions"].values()) == 8 and sum(totals["arms"].values()) == 8

    o, p = schema.orders, schema.fraud_predictions
    with engine.connect() as conn:
        live = conn.execute(sa.select(o.c.order_id, o.c.created_at, o.c.status)
                            .where(o.c.created_at >= started)).all()  # fmt: skip
        scored = conn.execute(
            sa.select(sa.func.count()).select_from(p).where(p.c.order_id.in_([r[0] for r in live]))
        ).scalar_one()
    assert _count(engine, schema.orders) == before["orders"] + 8 == before["orders"] + len(live)
    assert scored == 8 and {r.status for r in live} <= {"COMPLETED", "FAILED"}
    assert _pulls(engine) == before["pulls"] + 8


def test_stream_refuses_an_empty_database(tmp_path, cli):
    url = f"sqlite:///{tmp_path}/empty.db"
    init_schema(make_engine(url))
    out = cli("demo", "stream", "--duration", "1", env={"MLKIT_DATABASE_URL": url})
    assert out.exit_code == 1 and "no events or wallets" in out.stderr


def _count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def _pulls(engine) -> int:
    return sum(s.pulls for s in BanditStore(engine).read_database().values())
