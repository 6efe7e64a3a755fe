"""`mlkit demo seed` on every dialect: loads, reproducibility, append, shifts, safety."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from mlkit.toolkit import db, schema
from mlkit.toolkit.demo.seed import parse_families, parse_shifts, seed_demo
from mlkit.toolkit.errors import MlkitError

ORDERS = 4000
DAYS = 20


def read_frame(engine, table: sa.Table, order_by: str) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(sa.select(table).order_by(table.c[order_by]), conn)


@pytest.fixture(scope="module")
def seeded(engine):
    return seed_demo(engine, orders=ORDERS, days=DAYS, seed=7)


def test_seed_fills_every_family(engine, seeded):
    counts = db.table_counts(engine)
    assert counts["orders"] == ORDERS == seeded.rows["orders"]
    for name in (
        "wallets",
        "events",
        "tickets",
        "ticket_transfers",
        "security_alerts",
        "bot_detection",
        "security_events",
        "market_data",
        "products",
        "product_interactions",
        "order_items",
        "product_reviews",
        "demo_truth_orders",
        "demo_truth_pricing",
        "demo_truth_users",
        "demo_truth_wallets",
        "demo_truth_regimes",
    ):
        assert counts[name] > 0, name
    assert counts["demo_truth_orders"] == ORDERS
    assert counts["market_data"] == 3 * 24 * DAYS
    assert counts["demo_worlds"] == 1


def test_orders_lie_in_the_world_window_and_reference_real_rows(engine, seeded):
    with engine.connect() as conn:
        bounds = conn.execute(
            sa.select(
                sa.func.min(schema.orders.c.created_at), sa.func.max(schema.orders.c.created_at)
            )
        ).one()
        orphans = conn.execute(
            sa.select(sa.func.count())
            .select_from(
                schema.orders.outerjoin(
                    schema.wallets, schema.orders.c.buyer_wallet_id == schema.wallets.c.wallet_id
                )
            )
            .where(schema.wallets.c.wallet_id.is_(None))
        ).scalar()
    assert seeded.start <= bounds[0] and bounds[1] < seeded.end
    assert orphans == 0


def test_truth_has_a_realistic_fraud_rate(engine, seeded):
    with engine.connect() as conn:
        rate = conn.execute(
            sa.select(sa.func.avg(sa.case((schema.demo_truth_orders.c.is_fraud, 1.0), else_=0.0)))
        ).scalar()
    assert 0.01 <= float(rate) <= 0.03


def test_seeding_twice_refuses_without_replace(engine, seeded):
    with pytest.raises(MlkitError, match="already holds a demo world"):
        seed_demo(engine, orders=ORDERS, days=DAYS, seed=7)


def test_same_seed_gives_the_same_rows_on_any_dialect(engine, seeded, tmp_path):
    other = db.make_engine(f"sqlite:///{tmp_path}/again.db")
    seed_demo(other, orders=ORDERS, days=DAYS, seed=7)
    compared = (
        (schema.orders, "order_id"),
        (schema.wallets, "wallet_id"),
        (schema.market_data, "ts"),
        (schema.product_interactions, "id"),
    )
    for table, key in compared:
        mine = read_frame(engine, table, key)
        theirs = read_frame(other, table, key)
        if table is schema.market_data:
            mine = mine.sort_values(["symbol", "ts"], ignore_index=True)
            theirs = theirs.sort_values(["symbol", "ts"], ignore_index=True)
        for frame in (mine, theirs):
            for column in frame.columns:
                if frame[column].dtype == bool or column.startswith("is_"):
                    frame[column] = frame[column].astype(bool)
        pd.testing.assert_frame_equal(mine, theirs, check_dtype=False, check_exact=False, rtol=1e-9)
    other.dispose()


def test_a_new_world_ends_at_the_start_of_the_clocks_day(tmp_path, monkeypatch):
    def orders_of(name: str, **kw) -> tuple:
        engine = db.make_engine(f"sqlite:///{tmp_path}/{name}.db")
        result = seed_demo(engine, orders=300, days=5, seed=1, families=("fraud",), **kw)
        return result, read_frame(engine, schema.orders, "order_id")

    monkeypatch.setenv("MLKIT_NOW", "2026-05-10T01:30:00")
    morning, morning_orders = orders_of("morning")
    assert (morning.start, morning.end) == (datetime(2026, 5, 5), datetime(2026, 5, 10))
    assert morning_orders.created_at.max() < datetime(2026, 5, 10)
    monkeypatch.setenv("MLKIT_NOW", "2026-05-10T23:59:00")
    evening, evening_orders = orders_of("evening")
    assert evening.start == morning.start
    pd.testing.assert_frame_equal(morning_orders, evening_orders)
    # --start pins the world whatever the clock says.
    monkeypatch.setenv("MLKIT_NOW", "2026-08-01T12:00:00")
    pinned, pinned_orders = orders_of("pinned", start=datetime(2026, 5, 5))
    assert pinned.end == datetime(2026, 5, 10)
    pd.testing.assert_frame_equal(morning_orders, pinned_orders)


def test_an_append_that_ends_after_the_clock_is_loaded_with_a_warning(tmp_path, cli):
    url = f"sqlite:///{tmp_path}/append.db"
    seed_demo(
        db.make_engine(url),
        orders=300,
        days=5,
        seed=1,
        families=("fraud",),
        start=datetime(2026, 5, 5),
    )
    # The simulated fortnight's way: the clock at the end of the appended day.
    append_a_day = ["--database", url, "--as-of", "2026-05-11T00:00:00", "demo", "seed"]
    append_a_day += ["--append", "--days", "1"]
    on_time = cli(*append_a_day, "--json")
    assert on_time.exit_code == 0, on_time.output
    assert json.loads(on_time.stdout)["warnings"] == [] and "warning" not in on_time.stderr
    early = cli(*append_a_day)
    assert early.exit_code == 0, early.output
    assert "warning: the appended period ends 2026-05-12 00:00 UTC, after now" in early.stderr
    with db.make_engine(url).connect() as conn:
        ends = conn.execute(sa.select(schema.demo_worlds.c.end_ts)).scalars().all()
    assert sorted(ends)[-1] == datetime(2026, 5, 12)


def test_a_different_seed_gives_different_rows(tmp_path):
    one = db.make_engine(f"sqlite:///{tmp_path}/one.db")
    two = db.make_engine(f"sqlite:///{tmp_path}/two.db")
    seed_demo(one, orders=500, days=5, seed=1, families=("fraud",))
    seed_demo(two, orders=500, days=5, seed=2, families=("fraud",))
    prices = [read_frame(e, schema.orders, "order_id")["price"].tolist() for e in (one, two)]
    assert prices[0] != prices[1]


def test_append_continues_the_same_world(engine, seeded):
    before = read_frame(engine, schema.orders, "order_id")
    result = seed_demo(engine, days=5, append=True, shift={"price": 2.0})
    after = read_frame(engine, schema.orders, "order_id")
    new = after[after.order_id > before.order_id.max()]
    assert result.period == 1 and result.seed == 7
    assert result.start == seeded.end and result.end == seeded.end + timedelta(days=5)
    # The world ended today; five more days end after now, which is said, not refused.
    assert len(result.warnings) == 1 and "after now" in result.warnings[0]
    # The world's own pace: about a quarter of the 20 days' orders in 5 more days.
    assert len(new) == result.rows["orders"] == round(ORDERS * 5 / DAYS)
    assert new.created_at.min() > before.created_at.max()
    assert new.buyer_wallet_id.isin(before.buyer_wallet_id).any(), "no existing wallet came back"
    old_price, new_price = before.price.median(), new.price.median()
    assert 1.5 < new_price / old_price < 2.7, (old_price, new_price)
    with engine.connect() as conn:
        periods = conn.execute(sa.select(schema.demo_worlds.c.run_id)).scalars().all()
        bars = conn.execute(sa.select(sa.func.count(), sa.func.max(schema.market_data.c.ts))).one()
    assert sorted(periods) == [0, 1]
    assert bars[0] == 3 * 24 * (DAYS + 5)


def test_loaded_ids_leave_room_for_the_platforms_own_inserts(engine, seeded):
    with engine.begin() as conn:
        new_id = conn.execute(
            schema.wallets.insert().values(
                address="0x" + "ab" * 20, created_at=datetime(2026, 6, 1)
            )
        ).inserted_primary_key[0]
        highest = conn.execute(sa.select(sa.func.max(schema.wallets.c.wallet_id))).scalar()
        # The platform's row would keep the demo from being replaced below.
        conn.execute(schema.wallets.delete().where(schema.wallets.c.wallet_id == new_id))
    assert new_id == highest


def test_replace_starts_over(engine, seeded):
    seed_demo(engine, orders=600, days=3, seed=9, replace=True)
    counts = db.table_counts(engine)
    assert counts["orders"] == 600
    assert counts["demo_worlds"] == 1


def test_append_without_a_world_is_refused(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path}/empty.db")
    with pytest.raises(MlkitError, match="no demo world to append to"):
        seed_demo(engine, days=3, append=True)


def test_a_failed_load_leaves_the_database_as_it_was(tmp_path, monkeypatch):
    engine = db.make_engine(f"sqlite:///{tmp_path}/atomic.db")
    seed_demo(engine, orders=500, days=5, seed=3, families=("fraud",))
    before = db.table_counts(engine)
    from mlkit.toolkit.demo import seed as seed_module

    real_insert = seed_module.bulk_insert

    def failing_insert(conn, table, frame, **kw):
        if table.name == "orders":
            raise RuntimeError("disk full")
        return real_insert(conn, table, frame, **kw)

    monkeypatch.setattr(seed_module, "bulk_insert", failing_insert)
    with pytest.raises(RuntimeError, match="disk full"):
        seed_demo(engine, orders=500, days=5, seed=4, families=("fraud",), replace=True)
    assert db.table_counts(engine) == before


def test_families_and_shift_arguments_are_checked():
    assert parse_families("fraud, signal") == ("fraud", "signal")
    assert parse_shifts(["price=1.5", "fraud=2"]) == {"price": 1.5, "fraud": 2.0}
    for bad in (["colour=2"], ["price"], ["price=abc"], ["price=-1"]):
        with pytest.raises(MlkitError, match="bad --shift"):
            parse_shifts(bad)
    with pytest.raises(MlkitError, match="unknown family 'crypto'"):
        parse_families("fraud,crypto")


@pytest.mark.slow
def test_quickstart_leaves_every_table_with_demo_data(cli, tmp_path, redis_url, monkeypatch):
    monkeypatch.setenv("MLKIT_REDIS_URL", redis_url)
    # The world ends at the clock's midnight: a fixed clock keeps its models' verdicts fixed.
    monkeypatch.setenv("MLKIT_NOW", "2026-11-30T23:30:00")
    result = cli("quickstart", "--orders", "12000", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["dialect"] == "sqlite"
    tables = document["tables"]
    assert set(tables) == set(schema.metadata.tables)
    assert tables["orders"] == 12000
    assert tables["products"] > 0 and tables["market_data"] > 0
    assert document["etl"]["rows"] == tables["fraud_features"] == 12000
    assert document["dataset"]["rows"] > 0
    assert document["model"]["prod"] == document["model"]["version"]
    assert document["scoring"]["rows"] == 12000
    recommended = document["recommender"]
    assert recommended["metrics"]["hit_rate_at_10"] > 0 and len(recommended["items"]) == 3
    # 12,000 orders are too few for the bandit to show it prices better than at random: it
    # stays candidate, nothing serves, and the live arms stay empty (a cold start).
    assert "not above the uniform_random baseline" in document["bandit"]["rejected"]
    assert "pricing@prod is still unset" in document["bandit"]["rejected"]
    stats = json.loads(cli("mab", "stats", "--json").stdout)
    assert stats["total_pulls"] == 0 and stats["best_arm"] is None
    inspected = cli("inspect", "dataset", "--pointer", "current", "--json", "--strict")
    assert inspected.exit_code == 0, inspected.output
    assert json.loads(inspected.stdout)["rows"] == document["dataset"]["rows"]
    # Run again: off a terminal it needs --yes to replace the world, then starts over.
    unconfirmed = cli("quickstart", "--orders", "12000", "--seed", "5")
    assert unconfirmed.exit_code == 1 and "--yes" in unconfirmed.stderr
    again = cli("quickstart", "--orders", "12000", "--seed", "5", "--yes", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["tables"]["orders"] == 12000
    assert json.loads(again.stdout)["tables"]["demo_worlds"] == 1
