"""The ticketing deployment's schema as it ships (seed 004), and a demo world translated into it."""

from __future__ import annotations

from datetime import datetime

import pytest
import sqlalchemy as sa
from conftest import drop_database, make_database
from ticketing004 import PLATFORM_TABLES, SCHEMA_SQL, create_platform_schema, seed_schema_block

from mlkit.toolkit import schema
from mlkit.toolkit.db import make_engine
from mlkit.toolkit.demo.seed import seed_demo
from mlkit.toolkit.demo.translate import translate_to_004
from mlkit.toolkit.errors import MlkitError
from mlkit.toolkit.fraud.labels import label_query


def test_the_shipped_ddl_is_the_seeds_block_verbatim():
    block = seed_schema_block()
    if block is None:
        pytest.skip("../shared/seeds is not here (CI clones only the repository)")
    assert SCHEMA_SQL.read_text(encoding="utf-8") == block


@pytest.fixture(scope="module")
def databases(tmp_path_factory):
    """A seeded demo world (mlkit's schema) and an empty 004 platform database."""
    tmp = tmp_path_factory.mktemp("translate")
    world_url, platform_url = make_database("postgresql", tmp), make_database("postgresql", tmp)
    world, platform = make_engine(world_url), make_engine(platform_url)
    create_platform_schema(platform)
    seed_demo(world, orders=3_000, days=20, seed=5, families=("fraud",), start=datetime(2026, 1, 1))
    yield world, platform
    world.dispose(), platform.dispose()
    drop_database(world_url), drop_database(platform_url)


def test_the_ddl_creates_every_platform_table(databases):
    _, platform = databases
    names = set(sa.inspect(platform).get_table_names())
    assert set(PLATFORM_TABLES) <= names
    assert "kpi_hourly" in sa.inspect(platform).get_materialized_view_names()


def test_a_world_translates_into_the_platforms_tables(databases):
    world, platform = databases
    rows = translate_to_004(world, platform)
    with world.connect() as conn:
        orders = conn.execute(sa.select(sa.func.count()).select_from(schema.orders)).scalar()
        labels = label_query().subquery()
        o, w = schema.orders, schema.wallets
        first_label = dict(
            conn.execute(
                sa.select(w.c.address, sa.func.min(labels.c.label_available_at))
                .select_from(
                    labels.join(o, o.c.order_id == labels.c.order_id).join(
                        w, w.c.wallet_id == o.c.buyer_wallet_id
                    )
                )
                .group_by(w.c.address)
            ).all()
        )
        sample = conn.execute(
            sa.select(o.c.order_id, o.c.price, o.c.created_at, w.c.address)
            .join(w, w.c.wallet_id == o.c.buyer_wallet_id)
            .order_by(o.c.order_id)
            .limit(1)
        ).one()
    assert rows["transactions"] == orders and rows["blacklisted_wallets"] == len(first_label) > 0
    assert rows["security_events"] > 0
    with platform.connect() as conn:
        listed = dict(
            conn.exec_driver_sql(
                'SELECT wallet_address, "timestamp" FROM blacklisted_wallets'
            ).all()
        )
        first = conn.exec_driver_sql(
            'SELECT wallet_address, price_paid, "timestamp" FROM transactions '
            "WHERE transaction_id = %(id)s",
            {"id": f"tx-{sample.order_id}"},
        ).one()
        ids = conn.exec_driver_sql(
            "SELECT count(*) FILTER (WHERE event_id LIKE 'ev-%%'), "
            "count(*) FILTER (WHERE wallet_address LIKE '0x%%' AND length(wallet_address) = 42) "
            "FROM transactions"
        ).one()
        user_ids = conn.exec_driver_sql(
            "SELECT count(*) FROM security_events WHERE user_id LIKE '0x%%'"
        ).scalar()
    assert listed == first_label
    assert first.wallet_address == sample.address and first.timestamp == sample.created_at
    assert float(first.price_paid) == pytest.approx(sample.price)
    assert ids == (orders, orders) and user_ids == rows["security_events"]


def test_a_target_without_the_platforms_schema_is_refused(databases, tmp_path):
    world, _ = databases
    url = make_database("postgresql", tmp_path)
    empty = make_engine(url)
    try:
        with pytest.raises(MlkitError, match="no table 'transactions'") as caught:
            translate_to_004(world, empty)
        assert "ticketing-004-schema.sql" in caught.value.hint
    finally:
        empty.dispose()
        drop_database(url)
