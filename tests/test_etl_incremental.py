"""`mlkit etl run --since last`: keyed on orders without features, never on the wall clock;
every empty-frame path a quiet night can meet."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa
from fraud_rows import add_label, stored_features

from mlkit.toolkit import schema
from mlkit.toolkit.errors import MlkitError
from mlkit.toolkit.fraud import etl

T0 = datetime(2026, 3, 1)
TABLES = (
    "orders",
    "wallets",
    "events",
    "security_alerts",
    "bot_detection",
    "ticket_transfers",
    "fraud_features",
    "etl_watermarks",
)


@pytest.fixture
def db(engine):
    """The module's database emptied, with three wallets and two events."""
    with engine.begin() as conn:
        for name in TABLES:
            conn.execute(schema.metadata.tables[name].delete())
        conn.execute(
            schema.wallets.insert(),
            [
                {"wallet_id": w, "address": f"0x{w:040x}", "created_at": T0 - timedelta(days=30)}
                for w in (1, 2, 3)
            ],
        )
        conn.execute(
            schema.events.insert(),
            [
                {
                    "event_id": e,
                    "name": f"event {e}",
                    "event_type": "concert",
                    "base_price": 50,
                    "capacity": 100,
                    "sale_start": T0 - timedelta(days=60),
                    "event_date": T0 + timedelta(days=90),
                    "created_at": T0 - timedelta(days=60),
                }
                for e in (1, 2)
            ],
        )
    return engine


def add_orders(engine, *orders: tuple[int, int, int, datetime]) -> None:
    """Orders (order_id, wallet, event, created_at), completed card payments of 60."""
    with engine.begin() as conn:
        conn.execute(
            schema.orders.insert(),
            [
                {
                    "order_id": o,
                    "buyer_wallet_id": w,
                    "event_id": e,
                    "price": 60,
                    "payment_method": "card",
                    "is_resale": False,
                    "status": "COMPLETED",
                    "created_at": t,
                }
                for o, w, e, t in orders
            ],
        )


def features(engine) -> pd.DataFrame:
    return stored_features(engine).set_index("order_id")


def etl_run(cli, engine, now: datetime, *args: str) -> dict:
    url = engine.url.render_as_string(hide_password=False)
    clock = {"MLKIT_NOW": now.isoformat()}
    result = cli(
        "--database", url, "etl", "run", *(args or ("--since", "last")), "--json", env=clock
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_new_orders_without_labels_transfers_or_history(cli, db):
    """No labels at all, no transfers, a wallet's very first order: features, not a crash."""
    add_orders(db, (1, 1, 1, T0), (2, 1, 1, T0 + timedelta(minutes=30)), (3, 2, 2, T0))
    first = etl_run(cli, db, T0 + timedelta(days=1))
    assert first["rows"] == first["new_orders"] == 3 and first["labelled_rows"] == 0
    stored = features(db)
    assert stored.loc[1, "txn_velocity_1h"] == 0 and stored.loc[2, "txn_velocity_1h"] == 1
    assert stored.loc[3, "cross_event_attendance"] == 0
    assert stored.loc[3, "social_graph_centrality"] == 0
    assert pd.isna(stored.loc[3, "avg_ticket_hold_time"])
    assert not stored["label"].astype(bool).any()

    # Labels exist now, but none is available within the new orders' range.
    add_label(db, 1, 1, T0 + timedelta(days=20))
    add_orders(db, (4, 3, 1, T0 + timedelta(days=2)), (5, 1, 2, T0 + timedelta(days=2)))
    second = etl_run(cli, db, T0 + timedelta(days=3))
    assert second["new_orders"] == 2 and second["labelled_rows"] == 0
    stored = features(db)
    assert stored.loc[4, "wallet_labels_30d"] == 0 and stored.loc[5, "wallet_labels_30d"] == 0
    assert stored.loc[5, "cross_event_attendance"] == 1
    assert set(stored.index) == {1, 2, 3, 4, 5}


def test_nothing_new_is_a_quiet_noop_that_writes_nothing(cli, db):
    empty = etl_run(cli, db, T0)
    assert empty["rows"] == 0 and empty["watermark"] is None
    add_orders(db, (1, 1, 1, T0), (2, 2, 1, T0 + timedelta(hours=2)))
    etl_run(cli, db, T0 + timedelta(days=1))
    before = features(db)
    again = etl_run(cli, db, T0 + timedelta(days=2))
    assert again["rows"] == 0 and again["new_orders"] == 0
    assert again["watermark"] == (T0 + timedelta(hours=2)).isoformat()
    pd.testing.assert_frame_equal(before, features(db))  # computed_at included: not rewritten
    url = db.url.render_as_string(hide_password=False)
    clock = {"MLKIT_NOW": (T0 + timedelta(days=3)).isoformat()}
    quiet = cli("--database", url, "etl", "run", "--since", "last", env=clock)
    assert quiet.exit_code == 0 and "no new orders" in quiet.stdout


def test_rows_stamped_before_the_previous_run_and_the_watermark_are_processed(cli, db):
    add_orders(db, (1, 1, 1, T0), (2, 1, 1, T0 + timedelta(days=5)))
    night_one = etl_run(cli, db, T0 + timedelta(days=10))
    # The watermark is data progress (the newest order processed), not the run's clock.
    assert night_one["watermark"] == (T0 + timedelta(days=5)).isoformat()
    assert features(db).loc[2, "txn_velocity_1h"] == 0

    # Late rows, stamped before the watermark and long before the previous run: one 30 min
    # before order 2 (inside the lookback, so order 2's history changes), one 4 days back.
    add_orders(
        db, (3, 1, 1, T0 + timedelta(days=5, minutes=-30)), (4, 2, 2, T0 + timedelta(days=1))
    )
    night_two = etl_run(cli, db, T0 + timedelta(days=11))
    assert night_two["new_orders"] == 2
    stored = features(db)
    assert set(stored.index) == {1, 2, 3, 4}
    assert stored.loc[2, "txn_velocity_1h"] == 1, "order 2 was not recomputed"
    assert stored.loc[3, "txn_velocity_1h"] == 0
    assert night_two["watermark"] == night_one["watermark"]

    # The nightly rhythm: a day of new orders moves the watermark to the newest of them.
    add_orders(db, (5, 3, 2, T0 + timedelta(days=11, hours=3)))
    night_three = etl_run(cli, db, T0 + timedelta(days=12))
    assert night_three["new_orders"] == 1
    assert night_three["watermark"] == (T0 + timedelta(days=11, hours=3)).isoformat()


def test_the_lookback_bounds_what_is_recomputed(db):
    add_orders(db, (1, 1, 1, T0), (2, 1, 1, T0 + timedelta(days=5)))
    etl.catch_up(db, lookback=timedelta(days=2), until=T0 + timedelta(days=6))
    computed = features(db)["computed_at"]
    # A late order 4 days before the watermark: it gets features, order 1 (before it) is
    # left alone, order 2 (after it, within the lookback) is recomputed.
    add_orders(db, (3, 2, 2, T0 + timedelta(days=1)))
    result = etl.catch_up(db, lookback=timedelta(days=2), until=T0 + timedelta(days=6))
    assert result.new_orders == 1 and result.rows == 2
    assert result.since == T0 + timedelta(days=3)
    assert features(db).loc[1, "computed_at"] == computed.loc[1]
    with pytest.raises(MlkitError, match=r"etl\.lookback"):
        etl.parse_lookback("two days")
    assert etl.parse_lookback("12h") == timedelta(hours=12) and etl.parse_lookback(0) == timedelta()


def test_windows_count_back_from_the_clock(cli, db):
    add_orders(db, (1, 1, 1, T0), (2, 2, 1, T0 + timedelta(days=5)))
    document = etl_run(cli, db, T0 + timedelta(days=5, hours=12), "--since", "1d")
    assert document["mode"] == "range" and document["rows"] == 1
    assert document["since"] == (T0 + timedelta(days=4, hours=12)).isoformat()
    assert list(features(db).index) == [2]
    quiet = etl_run(cli, db, T0 + timedelta(days=9), "--since", "1d")
    assert quiet["rows"] == 0


def demo_world(engine, **size):
    """A fraud demo world from 2026-01-01 in the emptied database (the earlier tests'
    hand-written rows are no demo world's)."""
    from mlkit.toolkit.demo.seed import seed_demo

    with engine.begin() as conn:
        for table in reversed(schema.metadata.sorted_tables):
            conn.execute(table.delete())
    return seed_demo(engine, **size, families=("fraud",), start=datetime(2026, 1, 1), replace=True)


def test_incremental_rows_equal_a_full_rebuild(engine):
    """Nightly catch-ups read only the history of the new orders' wallets, events and resold
    tickets; their rows, labels that became available after a row was computed included,
    must be the ones a whole-table rebuild computes at the same moment."""
    from mlkit.toolkit.demo.seed import seed_demo
    from mlkit.toolkit.fraud.columns import NUMERIC_FEATURES

    first = demo_world(engine, orders=3000, days=20, seed=3)
    etl.catch_up(engine, lookback=timedelta(days=2), until=first.end)
    second = seed_demo(engine, days=3, append=True)
    nights = (
        # new orders; labels of the first period's orders arrive meanwhile
        (second.end, lambda r: r.new_orders > 100 and r.history_rows < 3000),
        # no new orders, only labels arriving
        (second.end + timedelta(days=10), lambda r: r.new_orders == 0),
    )
    columns = [*NUMERIC_FEATURES, "feature_ts", "label", "label_available_at"]
    for until, expected in nights:
        result = etl.catch_up(engine, lookback=timedelta(days=2), until=until)
        assert expected(result), result.as_dict()
        assert result.written["relabelled"] > 0, result.as_dict()
        incremental = features(engine)
        assert incremental[[f"{s}_labels_30d" for s in ("wallet", "event")]].gt(0).any().all()
        etl.run_etl(engine, None, until)  # the rebuild's rows become the next night's start
        full = features(engine)
        pd.testing.assert_frame_equal(incremental[columns], full[columns])


def test_a_scope_read_in_many_chunks_gives_the_features_of_a_whole_read(engine, monkeypatch):
    """The night's history comes in chunks of ids whose reads overlap (an order bought by
    one scoped wallet and sold by another, a transfer between two): read in chunks of 7
    ids, its rows are each source row once and its features equal those computed from
    every order."""
    from mlkit.toolkit.fraud.features import compute_features

    world = demo_world(engine, orders=1500, days=15, seed=5)
    wallet = add_a_resale_of_a_ticket_bought_meanwhile_by_another(engine, world.end)
    with engine.connect() as conn:
        targets = etl._ids_in_range(conn, world.end - timedelta(days=2), world.end)
        whole = etl.extract(conn, world.end)
        monkeypatch.setattr(etl, "ID_CHUNK", 7)
        scoped = etl.extract(conn, world.end, targets)
    assert 0 < len(scoped.orders) < len(whole.orders)
    assert scoped.orders["order_id"].is_unique
    assert scoped.transfers["transfer_id"].is_unique
    assert scoped.orders["is_resale"].astype(bool).any()
    expected = compute_features(whole, targets).set_index("order_id").sort_index()
    got = compute_features(scoped, targets).set_index("order_id").sort_index()
    assert len(got) == len(targets)
    pd.testing.assert_frame_equal(got, expected)
    # The resale's ticket was last sold to another wallet: no hold time for the wallet.
    assert got.loc[got["wallet_id"] == wallet, "avg_ticket_hold_time"].isna().all()


def add_a_resale_of_a_ticket_bought_meanwhile_by_another(engine, end: datetime) -> int:
    """A wallet buys a ticket of an event no recent order touches; another wallet buys the
    ticket later; then the first resells it and, within the last day, buys again. Only
    the ticket's own sales tell that the resale's previous sale was not to its seller.
    Returns the wallet."""
    with engine.connect() as conn:
        order_id = conn.execute(sa.select(sa.func.max(schema.orders.c.order_id))).scalar()
        wallet_id = conn.execute(sa.select(sa.func.max(schema.wallets.c.wallet_id))).scalar()
        event_id = conn.execute(sa.select(sa.func.max(schema.events.c.event_id))).scalar()
    seller, other, dealer, buyer = (wallet_id + n for n in (1, 2, 3, 4))
    old_event, ticket = event_id + 1, 10**9
    with engine.begin() as conn:
        conn.execute(
            schema.wallets.insert(),
            [
                {"wallet_id": w, "address": f"0x{w:040x}", "created_at": end - timedelta(days=60)}
                for w in (seller, other, dealer, buyer)
            ],
        )
        conn.execute(
            schema.events.insert().values(
                event_id=old_event,
                name="an older event",
                event_type="concert",
                base_price=50,
                capacity=100,
                sale_start=end - timedelta(days=90),
                event_date=end - timedelta(days=5),
                created_at=end - timedelta(days=90),
            )
        )
        recent_event = conn.execute(sa.select(sa.func.min(schema.events.c.event_id))).scalar()
        sales = (  # buyer, seller, event, ticket, resale, days before the end
            (seller, None, old_event, ticket, False, 20),
            (other, dealer, old_event, ticket, True, 15),
            (buyer, seller, old_event, ticket, True, 10),
            (seller, None, recent_event, None, False, 0.5),
        )
        conn.execute(
            schema.orders.insert(),
            [
                {
                    "order_id": order_id + n,
                    "buyer_wallet_id": b,
                    "seller_wallet_id": s,
                    "event_id": e,
                    "ticket_id": t,
                    "price": 60,
                    "payment_method": "card",
                    "is_resale": resale,
                    "status": "COMPLETED",
                    "created_at": end - timedelta(days=days),
                }
                for n, (b, s, e, t, resale, days) in enumerate(sales, start=1)
            ],
        )
    return seller
