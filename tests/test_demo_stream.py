"""`mlkit demo stream`: live orders of the demo world's shape, scored by the prod model and
rewarded into the bandit, on every dialect."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from mlkit.toolkit import schema
from mlkit.toolkit.config import load_config
from mlkit.toolkit.db import init_schema, make_engine
from mlkit.toolkit.demo.fence import Fence
from mlkit.toolkit.demo.seed import seed_demo
from mlkit.toolkit.demo.stream import DemoStream, StreamTotals
from mlkit.toolkit.fraud import etl
from mlkit.toolkit.fraud.columns import DECISIONS
from mlkit.toolkit.fraud.pipeline import train_fraud_model
from mlkit.toolkit.pricing.state import BanditStore
from mlkit.toolkit.validation import CandidateRejected

# The world ends at the start of the clock's day and its labels arrive relative to the clock, so
# the wall clock would change the world, its model and the stream's draws from run to run.
MOMENT = "2026-11-30T23:30:00"


@pytest.fixture(scope="module", autouse=True)
def fixed_clock():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLKIT_NOW", MOMENT)
        yield


@pytest.fixture(scope="module")
def world(engine, database_url):
    """A small seeded world with a prod fraud model, shared by the module's tests."""
    seed_demo(engine, orders=4000, days=30, seed=3, families=("fraud", "pricing"))
    etl.run_etl(engine, *etl.resolve_range(engine, None, None))
    config = load_config(database_url=database_url)
    try:
        train_fraud_model(engine, config, alias="prod", force=True)
    except CandidateRejected as rejected:  # XGBoost cannot beat logreg surely on 4,000 orders
        assert rejected.fallback is not None, rejected.message  # so the logreg baseline serves
    return config


def test_stream_places_the_rate_and_scores_every_order(engine, database_url, world, cli):
    before = {"orders": _max_id(engine), "pulls": _pulls(engine), "rows": _counts(engine)}

    out = cli(
        "demo",
        "stream",
        "--rate",
        "15",
        "--duration",
        "3",
        "--seed",
        "1",
        "--json",
        env={
            "MLKIT_DATABASE_URL": database_url,
            # the module's world was trained under the first test's home
            "MLKIT_ARTIFACTS_DIR": str(world.artifacts_dir),
        },
    )
    assert out.exit_code == 0, out.output
    totals = json.loads(out.stdout)
    assert 40 <= totals["orders"] <= 50 and totals["scored"] == totals["orders"]
    assert sum(totals["arms"].values()) == sum(totals["kinds"].values()) == totals["orders"]
    warm = totals["warm_start"]["orders"]
    assert warm > 0 and sum(totals["warm_start"]["kinds"].values()) == warm

    o, p = schema.orders, schema.fraud_predictions
    with engine.connect() as conn:
        live = conn.execute(sa.select(o).where(o.c.order_id > before["orders"])).all()
        predictions = conn.execute(
            sa.select(p.c.order_id, p.c.decision, p.c.fraud_score, p.c.features).where(
                p.c.order_id > before["orders"]
            )
        ).all()
    assert len(live) == totals["orders"] + warm
    assert sorted(r.order_id for r in predictions) == sorted(r.order_id for r in live)
    assert {r.decision for r in predictions} <= set(DECISIONS)
    assert {r.status for r in live} <= {"COMPLETED", "FAILED"}
    assert _pulls(engine) == before["pulls"] + totals["orders"] + warm
    # Existing rows are never touched: every table only grew.
    after = _counts(engine)
    assert all(after[name] >= count for name, count in before["rows"].items())
    # ... and the streamed rows belong to the demo world, so seeding can continue it.
    with engine.connect() as conn:
        assert Fence(conn).foreign_rows(conn) == {}


@pytest.mark.slow
def test_stream_makes_fraud_bursts_from_new_wallets_in_plain_values(engine, world):
    """A tick's worth of orders at a time, on a clock moved by hand: bot sessions start,
    their wallets are new, and a burst places several orders within minutes."""
    from datetime import timedelta

    first_order, first_wallet = _max_id(engine), _max_wallet(engine)
    stream = DemoStream(engine, world, seed=5)
    start = _quiet_start(engine, stream)
    warm = stream.warm_start(2, start)  # the ticks' rate: 20 orders every 10 s
    totals = StreamTotals()
    for second in range(0, 600, 10):  # ten minutes, a tick every ten seconds
        stream.tick(20, totals, start + timedelta(seconds=second))
    assert totals.orders == 1200 and totals.new_wallets > 0
    assert totals.kinds["scalper_bot"] > 0 and totals.kinds["stolen_payment"] > 0
    # The world's shares: 3.5 % bots and 1.2 % stolen payments, give or take the draw (bots
    # come in bursts of several orders, so ten minutes hold only a few sessions).
    assert 0.015 < totals.kinds["scalper_bot"] / totals.orders < 0.08

    o, w, tw = schema.orders, schema.wallets, schema.demo_truth_wallets
    with engine.connect() as conn:
        bursts = conn.execute(
            sa.select(
                o.c.buyer_wallet_id,
                sa.func.count(),
                sa.func.min(o.c.created_at),
                sa.func.max(o.c.created_at),
            )
            .join(tw, tw.c.wallet_id == o.c.buyer_wallet_id)
            .where(
                o.c.order_id > first_order,
                tw.c.kind == "scalper_bot",
                o.c.buyer_wallet_id > first_wallet,
            )
            .group_by(o.c.buyer_wallet_id)
        ).all()
        new_wallets = conn.execute(sa.select(w).where(w.c.wallet_id > first_wallet)).all()
        raw = conn.execute(
            sa.text(
                "SELECT CAST(price AS CHAR(40)), CAST(geo_lat AS CHAR(40)), "
                "CAST(buyer_wallet_id AS CHAR(40)) FROM orders WHERE order_id > :first"
            ).bindparams(first=first_order)
        ).all()
        truth = conn.execute(
            sa.select(sa.func.count())
            .select_from(schema.demo_truth_orders)
            .where(schema.demo_truth_orders.c.order_id > first_order)
        ).scalar_one()
    assert any(n >= 3 and last - first <= timedelta(minutes=10) for _, n, first, last in bursts)
    assert len(new_wallets) == totals.new_wallets + warm.new_wallets
    assert all(wallet.created_at < start for wallet in new_wallets)
    assert truth == totals.orders + warm.orders
    text = " ".join(str(value) for row in raw for value in row)
    assert "np." not in text and "float64" not in text and "int64" not in text
    float(raw[0][0]), float(raw[0][1]), int(raw[0][2])  # plain numbers in the database


@pytest.mark.slow
def test_warm_start_streams_fraud_at_its_steady_rate_from_the_first_minute(engine, world):
    """Sessions under way are created with their earlier orders backdated, so the first
    minute already holds bursts at full velocity and the world's share of bot orders (a
    cold start holds only the first orders of bursts, about a fifth of that share)."""
    from datetime import timedelta

    first_order = _max_id(engine)
    before = _checksum(engine, first_order)
    stream = DemoStream(engine, world, seed=11)
    start = _quiet_start(engine, stream)
    warm = stream.warm_start(20, start)
    assert warm.orders > 0 and warm.kinds["scalper_bot"] > 0 and warm.kinds["normal"] > 0
    backdated_to = _max_id(engine)
    live = StreamTotals()
    for second in range(60):
        stream.tick(20, live, start + timedelta(seconds=second))
    assert 0.02 < live.kinds["scalper_bot"] / live.orders < 0.07

    o, p, tw = schema.orders, schema.fraud_predictions, schema.demo_truth_wallets
    with engine.connect() as conn:
        stamps = conn.execute(
            sa.select(
                sa.func.min(o.c.created_at), sa.func.max(o.c.created_at), sa.func.count()
            ).where(o.c.order_id > first_order, o.c.order_id <= backdated_to)
        ).one()
        bot_features = (
            conn.execute(
                sa.select(p.c.features)
                .join(o, o.c.order_id == p.c.order_id)
                .join(tw, tw.c.wallet_id == o.c.buyer_wallet_id)
                .where(o.c.order_id > backdated_to, tw.c.kind == "scalper_bot")
            )
            .scalars()
            .all()
        )
    assert stamps[2] == warm.orders
    assert start - timedelta(minutes=30) <= stamps[0] <= stamps[1] < start
    # Bursts under way: bots in the first minute that already placed several orders.
    velocity = [
        (f if isinstance(f, dict) else json.loads(f))["txn_velocity_1h"] for f in bot_features
    ]
    assert max(velocity) >= 3
    assert _checksum(engine, first_order) == before  # existing rows untouched


@pytest.mark.slow
def test_warm_start_never_backdates_before_the_world_ends(engine, world):
    """A stream started a minute after the world's last order backdates at most five
    minutes before that order."""
    from datetime import timedelta

    first_order = _max_id(engine)
    with engine.connect() as conn:
        last = conn.execute(sa.select(sa.func.max(schema.orders.c.created_at))).scalar_one()
    stream = DemoStream(engine, world, seed=12)
    warm = stream.warm_start(40, last + timedelta(minutes=1))
    o = schema.orders
    with engine.connect() as conn:
        earliest, count = conn.execute(
            sa.select(sa.func.min(o.c.created_at), sa.func.count()).where(
                o.c.order_id > first_order
            )
        ).one()
    assert count == warm.orders > 0
    assert last - timedelta(minutes=5) <= earliest <= last + timedelta(minutes=1)


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
    names = (
        "orders",
        "wallets",
        "fraud_predictions",
        "demo_truth_orders",
        "security_alerts",
        "bot_detection",
        "events",
    )
    with engine.connect() as conn:
        return {
            name: conn.execute(
                sa.select(sa.func.count()).select_from(schema.metadata.tables[name])
            ).scalar_one()
            for name in names
        }


def _quiet_start(engine, stream):
    """A moment for a stream to start, the stream's origin or later, when the orders that
    earlier tests streamed are over half an hour old (so a warm start may use its span)."""
    from datetime import timedelta

    with engine.connect() as conn:
        last = conn.execute(sa.select(sa.func.max(schema.orders.c.created_at))).scalar_one()
    return max(stream.origin, last + timedelta(minutes=36))


def _checksum(engine, up_to: int) -> tuple:
    """Count and sums of the orders up to an id: any update or delete changes them."""
    o = schema.orders
    with engine.connect() as conn:
        return tuple(
            conn.execute(
                sa.select(
                    sa.func.count(), sa.func.sum(o.c.price), sa.func.sum(o.c.buyer_wallet_id)
                ).where(o.c.order_id <= up_to)
            ).one()
        )


def _pulls(engine) -> int:
    return sum(s.pulls for s in BanditStore(engine).read_database().values())
