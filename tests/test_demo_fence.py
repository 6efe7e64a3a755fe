"""Demo worlds are fenced: seeding never mixes with, replaces or deletes a platform's own rows."""

from __future__ import annotations

from datetime import datetime

import pytest
import sqlalchemy as sa
from conftest import DIALECTS, drop_database, make_database

from mlkit.toolkit import db, schema
from mlkit.toolkit.demo import fence
from mlkit.toolkit.demo.seed import seed_demo
from mlkit.toolkit.errors import MlkitError

REAL = 300
FAMILIES = ("fraud", "recommender")
START = datetime(2026, 5, 1)


@pytest.fixture(params=DIALECTS)
def url(request, tmp_path):
    """A fresh empty database per test on each dialect."""
    made = make_database(request.param, tmp_path)
    yield made
    drop_database(made)


def insert_real_rows(engine, first_id: int = 1) -> None:
    """A platform's own orders, wallets, events and products, straight into the tables."""
    ids = range(first_id, first_id + REAL)
    at = datetime(2026, 4, 1)
    with engine.begin() as conn:
        conn.execute(
            schema.wallets.insert(),
            [{"wallet_id": i, "address": f"0x{i:040x}", "created_at": at} for i in ids],
        )
        conn.execute(
            schema.events.insert(),
            [
                {
                    "event_id": i,
                    "name": f"gig {i}",
                    "event_type": "concert",
                    "base_price": 50,
                    "capacity": 100,
                    "sale_start": at,
                    "event_date": at,
                    "created_at": at,
                }
                for i in ids
            ],
        )
        conn.execute(
            schema.orders.insert(),
            [
                {
                    "order_id": i,
                    "buyer_wallet_id": i,
                    "event_id": i,
                    "price": 50,
                    "payment_method": "card",
                    "status": "COMPLETED",
                    "created_at": at,
                }
                for i in ids
            ],
        )
        conn.execute(
            schema.products.insert(),
            [
                {
                    "product_id": i,
                    "name": f"shirt {i}",
                    "category": "tops",
                    "gender": "U",
                    "price": 20,
                    "created_at": at,
                }
                for i in ids
            ],
        )
        # The platform's own blacklist, which the fence finds through the demo's wallets.
        conn.execute(
            schema.blacklisted_wallets.insert(),
            [{"wallet_address": f"0x{first_id:040x}", "reason": "chargeback", "created_at": at}],
        )
        db.sync_sequences(conn, [schema.wallets, schema.events, schema.orders, schema.products])


def count(engine, table: sa.Table, where=None) -> int:
    query = sa.select(sa.func.count()).select_from(table)
    with engine.connect() as conn:
        return conn.execute(query if where is None else query.where(where)).scalar()


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_a_database_with_real_rows_is_refused_untouched(url, cli):
    engine = db.make_engine(url)
    db.init_schema(engine)
    insert_real_rows(engine)
    for args in (("demo", "seed", "--orders", "500"), ("quickstart", "--orders", "500", "--yes")):
        refused = cli("--database", url, *args)
        assert refused.exit_code == 1, refused.output
        assert len(error_lines(refused)) == 1 and "unexpected" not in refused.stderr
        assert "rows no demo world wrote" in refused.stderr and "300 orders" in refused.stderr
    for table in (schema.orders, schema.wallets, schema.events, schema.products):
        assert count(engine, table) == REAL
    assert count(engine, schema.demo_worlds) == 0
    engine.dispose()


def test_replace_deletes_only_the_demo_worlds_rows(url, cli):
    engine = db.make_engine(url)
    seeded = seed_demo(engine, orders=500, days=5, seed=3, families=FAMILIES, start=START)
    demo_orders = seeded.rows["orders"]
    # The platform writes its own rows after the demo's, and mlkit derives from both.
    insert_real_rows(engine, first_id=1_000_000)
    with engine.begin() as conn:
        conn.execute(
            schema.fraud_predictions.insert(),
            [
                {"order_id": o, "fraud_score": 0.1, "decision": "APPROVED", "created_at": START}
                for o in (1, 1_000_000)
            ],
        )
    appended = cli("--database", url, "demo", "seed", "--append", "--days", "1")
    assert appended.exit_code == 1 and "rows no demo world wrote" in appended.stderr
    assert count(engine, schema.orders) == demo_orders + REAL

    unconfirmed = cli("--database", url, "demo", "seed", "--replace", "--orders", "500")
    assert unconfirmed.exit_code == 1 and "--yes" in unconfirmed.stderr
    assert count(engine, schema.orders) == demo_orders + REAL

    replaced = cli("--database", url, "demo", "seed", "--replace", "--yes", "--orders", "500")
    assert replaced.exit_code == 1, replaced.output
    assert len(error_lines(replaced)) == 1 and "deleted the demo world" in replaced.stderr
    for table, key in (
        (schema.orders, "order_id"),
        (schema.wallets, "wallet_id"),
        (schema.events, "event_id"),
        (schema.products, "product_id"),
    ):
        assert count(engine, table) == REAL, table.name
        assert count(engine, table, table.c[key] < 1_000_000) == 0, table.name
    with engine.connect() as conn:
        kept = conn.execute(sa.select(schema.fraud_predictions.c.order_id)).scalars().all()
        blacklist = conn.execute(sa.select(schema.blacklisted_wallets.c.wallet_address))
        assert blacklist.scalars().all() == [f"0x{1_000_000:040x}"]  # the demo's are gone
    assert kept == [1_000_000]
    for table in (
        schema.demo_worlds,
        schema.demo_world_rows,
        schema.demo_truth_orders,
        schema.tickets,
        schema.product_interactions,
    ):
        assert count(engine, table) == 0, table.name
    engine.dispose()


def test_replace_without_other_rows_starts_a_new_world(url, cli):
    engine = db.make_engine(url)
    seed_demo(engine, orders=500, days=5, seed=3, families=FAMILIES, start=START)
    again = cli(
        "--database",
        url,
        "demo",
        "seed",
        "--replace",
        "--yes",
        "--orders",
        "400",
        "--days",
        "3",
        "--families",
        "fraud,recommender",
        "--json",
    )
    assert again.exit_code == 0, again.output
    assert count(engine, schema.orders) == 400
    assert count(engine, schema.demo_worlds) == 1
    with engine.connect() as conn:
        ranges = conn.execute(
            sa.select(schema.demo_world_rows.c.first_id, schema.demo_world_rows.c.last_id).where(
                schema.demo_world_rows.c.table_name == "orders"
            )
        ).all()
    assert [tuple(r) for r in ranges] == [(1, 400)]
    engine.dispose()


def test_colliding_ids_are_one_error_line(url, cli, monkeypatch):
    engine = db.make_engine(url)
    db.init_schema(engine)
    insert_real_rows(engine)
    # Past the fence (as if a writer slipped in between): the load itself must say it.
    monkeypatch.setattr(fence.Fence, "foreign_rows", lambda self, conn: {})
    collided = cli(
        "--database", url, "demo", "seed", "--orders", "500", "--days", "5", "--families", "fraud"
    )
    assert collided.exit_code == 1, collided.output
    assert len(error_lines(collided)) == 1 and "unexpected" not in collided.stderr
    assert "collide with rows already in" in collided.stderr
    assert len(collided.stderr.strip().splitlines()) == 2  # error + hint
    assert count(engine, schema.orders) == REAL and count(engine, schema.demo_worlds) == 0
    engine.dispose()


def test_rows_recorded_by_a_demo_process_stay_demo_rows(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path}/stream.db")
    seed_demo(engine, orders=300, days=5, seed=3, families=("fraud",), start=START)
    with engine.begin() as conn:
        highest = conn.execute(sa.select(sa.func.max(schema.orders.c.order_id))).scalar()
        streamed = list(range(highest + 1, highest + 4))
        conn.execute(
            schema.orders.insert(),
            [
                {
                    "order_id": o,
                    "buyer_wallet_id": 1,
                    "event_id": 1,
                    "price": 50,
                    "payment_method": "card",
                    "status": "COMPLETED",
                    "created_at": START,
                }
                for o in streamed
            ],
        )
        fence.record_demo_rows(conn, "orders", streamed)
        assert fence.Fence(conn).foreign_rows(conn) == {}
        rows = conn.execute(
            sa.select(schema.demo_world_rows.c.first_id, schema.demo_world_rows.c.last_id).where(
                schema.demo_world_rows.c.table_name == "orders"
            )
        ).all()
    assert [tuple(r) for r in rows] == [(1, highest + 3)]  # one range, extended
    with pytest.raises(ValueError), engine.begin() as conn:
        fence.record_demo_rows(conn, "fraud_predictions", [1])
    engine.dispose()


def test_id_runs():
    assert fence.id_runs([5, 1, 2, 3, 7, 8]) == [(1, 3), (5, 5), (7, 8)]
    assert fence.id_runs([]) == []


def test_a_database_with_only_real_rows_refuses_append(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path}/real.db")
    db.init_schema(engine)
    insert_real_rows(engine)
    with pytest.raises(MlkitError, match="no demo world to append to"):
        seed_demo(engine, days=1, append=True)
    engine.dispose()


def test_on_a_terminal_replace_asks_and_no_keeps_the_world(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mlkit.commands import _common
    from mlkit.commands.main import app

    url = f"sqlite:///{tmp_path}/asked.db"
    engine = db.make_engine(url)
    seed_demo(engine, orders=300, days=5, seed=3, families=("fraud",), start=START)
    monkeypatch.setattr(_common, "stdin_is_terminal", lambda: True)
    args = [
        "--database",
        url,
        "demo",
        "seed",
        "--replace",
        "--orders",
        "200",
        "--days",
        "2",
        "--families",
        "fraud",
    ]
    declined = CliRunner().invoke(app, args, input="n\n")
    assert declined.exit_code == 1 and "aborted: nothing was changed" in declined.stderr
    assert "Go ahead?" in declined.stderr and count(engine, schema.orders) == 300
    accepted = CliRunner().invoke(app, args, input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert count(engine, schema.orders) == 200
    engine.dispose()
