"""The card-fraud mapping (seed 001): a ledger of card transactions and late chargeback labels,
filled from a demo world (the wallet as the card, the event as the merchant), read by mlkit
through examples/sources/card-fraud-001.yaml as far as a trained model."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
import sqlalchemy as sa
from conftest import drop_database, make_database
from ticketing004 import ROOT, train

from mlkit.toolkit import schema
from mlkit.toolkit.config import load_config
from mlkit.toolkit.db import bulk_insert, make_engine, read_frame
from mlkit.toolkit.demo.seed import seed_demo
from mlkit.toolkit.fraud.labels import label_query
from mlkit.toolkit.registry import resolve
from mlkit.toolkit.sources.mapping import sources_from_config

pytestmark = pytest.mark.slow

EXAMPLE = ROOT / "examples" / "sources" / "card-fraud-001.yaml"
NOW = "2026-01-31T00:00:00"

LEDGER_DDL = """
CREATE TABLE transactions (
    tx_id VARCHAR(40) PRIMARY KEY,
    card_id VARCHAR(42) NOT NULL,
    merchant_id VARCHAR(40) NOT NULL,
    amount NUMERIC(12, 2) NOT NULL,
    event_ts TIMESTAMP NOT NULL
);
CREATE TABLE labels (
    tx_id VARCHAR(40) PRIMARY KEY,
    label_is_fraud INTEGER NOT NULL,
    label_available_ts TIMESTAMP NOT NULL
);
"""


def translate_to_001(world, ledger) -> dict[str, int]:
    """The demo world as a card ledger: every order a transaction, every order a label row
    (fraud or not) dated when its first confirmed label became known, else at its own time."""
    o, w = schema.orders, schema.wallets
    transactions = (
        sa.select(
            (sa.literal("tx-") + sa.cast(o.c.order_id, sa.String)).label("tx_id"),
            w.c.address.label("card_id"),
            (sa.literal("m-") + sa.cast(o.c.event_id, sa.String)).label("merchant_id"),
            o.c.price.label("amount"),
            o.c.created_at.label("event_ts"),
        )
        .join(w, w.c.wallet_id == o.c.buyer_wallet_id)
        .order_by(o.c.order_id)
    )
    first = label_query().subquery()
    known = (
        sa.select(first.c.order_id, sa.func.min(first.c.label_available_at).label("at"))
        .group_by(first.c.order_id)
        .subquery()
    )
    labels = sa.select(
        (sa.literal("tx-") + sa.cast(o.c.order_id, sa.String)).label("tx_id"),
        sa.case((known.c.at.is_not(None), 1), else_=0).label("label_is_fraud"),
        sa.func.coalesce(known.c.at, o.c.created_at).label("label_available_ts"),
    ).select_from(o.outerjoin(known, known.c.order_id == o.c.order_id))
    with world.connect() as conn:
        frames = {
            "transactions": read_frame(conn, transactions),
            "labels": read_frame(conn, labels),
        }
    with ledger.begin() as conn:
        conn.exec_driver_sql(LEDGER_DDL)
        tables = {n: sa.Table(n, sa.MetaData(), autoload_with=conn) for n in frames}
        rows = {n: bulk_insert(conn, tables[n], frame) for n, frame in frames.items()}
    with ledger.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE transactions; ANALYZE labels")
    return rows


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sources001")
    world_url, ledger_url = make_database("postgresql", tmp), make_database("postgresql", tmp)
    world, ledger = make_engine(world_url), make_engine(ledger_url)
    seed_demo(world, orders=6_000, days=30, seed=3, families=("fraud",), start=datetime(2026, 1, 1))
    rows = translate_to_001(world, ledger)
    yield ledger, rows
    world.dispose(), ledger.dispose()
    drop_database(world_url), drop_database(ledger_url)


def test_the_card_mapping_parses_with_its_inputs():
    sources = sources_from_config(load_config(EXAMPLE, env={}))
    assert set(sources.inputs) == {"orders", "security_alerts"}
    assert sources.inputs["orders"].columns["buyer_wallet_id"] == "card_id"
    assert sources.state_schema == "mlkit" and sources.derived == ["wallets", "events"]


def test_the_card_ledger_trains_a_fraud_model_through_the_mapping(ledger, cli, monkeypatch):
    engine, rows = ledger
    monkeypatch.setenv("MLKIT_NOW", NOW)
    url = engine.url.render_as_string(hide_password=False)
    env = {"MLKIT_CONFIG": str(EXAMPLE), "MLKIT_DATABASE_URL": url}
    for command in (("db", "init"), ("sources", "check"), ("etl", "run")):
        result = cli(*command, env=env)
        assert result.exit_code == 0, result.output
    state = make_engine(url, state_schema="mlkit")
    train(cli, env, state)
    with state.connect() as conn:
        views = set(sa.inspect(conn).get_view_names())
        featured = conn.execute(
            sa.select(sa.func.count()).select_from(schema.fraud_features)
        ).scalar()
        wallets = conn.execute(sa.select(sa.func.count()).select_from(schema.wallets)).scalar()
        cards = conn.exec_driver_sql(
            "SELECT count(DISTINCT card_id) FROM public.transactions"
        ).scalar()
    assert {"orders", "security_alerts", "wallets", "events"} <= views
    assert featured == rows["transactions"] and wallets == cards
    assert resolve(state, "fraud@prod").metrics["auc_pr"] > 0
    # mlkit's tables are in its own schema; the ledger's schema holds the ledger alone.
    assert set(sa.inspect(engine).get_table_names(schema="public")) == {"labels", "transactions"}
    # No archive mapped: retention never deletes the ledger's rows through mlkit's view.
    assert cli("score", "fraud", env=env).exit_code == 0
    result = cli("retention", "run", "--older-than", "10d", "--yes", "--json", env=env)
    assert result.exit_code == 0, result.output
    with engine.connect() as conn:
        left = conn.exec_driver_sql("SELECT count(*) FROM public.transactions").scalar()
    assert left == rows["transactions"] and json.loads(result.stdout)["moved"]["orders"] == 0
    state.dispose()


def test_the_readmes_minimal_mapping_reads_any_orders_table(tmp_path, cli):
    """The README's mapping for any orders table, verbatim, over tables of those columns."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Your own data") :]
    block = section[
        section.index("```yaml\n") + 8 : section.index("```\n", section.index("```yaml"))
    ]
    url = make_database("postgresql", tmp_path)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE purchases (purchase_id UUID PRIMARY KEY, customer_id TEXT, "
                "product_id TEXT, amount NUMERIC, purchased_at TIMESTAMP);"
                "CREATE TABLE chargebacks (purchase_id UUID, flagged_at TIMESTAMP);"
                "INSERT INTO purchases VALUES ('8a4f0d64-9a2b-4c8e-9a51-1d1b6a1f3c01', 'c1', "
                "'p1', 10, '2026-01-01 10:00'), ('8a4f0d64-9a2b-4c8e-9a51-1d1b6a1f3c02', 'c2', "
                "'p1', 12, '2026-01-02 10:00');"
                "INSERT INTO chargebacks VALUES ('8a4f0d64-9a2b-4c8e-9a51-1d1b6a1f3c02', "
                "'2026-01-09 10:00')"
            )
        config = tmp_path / "config.yaml"
        config.write_text(block)
        env = {"MLKIT_CONFIG": str(config), "MLKIT_DATABASE_URL": url}
        for command in (("db", "init"), ("sources", "check")):
            result = cli(*command, env=env)
            assert result.exit_code == 0, result.output
        state = make_engine(url, state_schema="mlkit")
        with state.connect() as conn:
            joined = conn.execute(
                sa.select(sa.func.count())
                .select_from(schema.security_alerts)
                .join(schema.orders, schema.orders.c.order_id == schema.security_alerts.c.order_id)
                .where(schema.security_alerts.c.wallet_id == schema.orders.c.buyer_wallet_id)
            ).scalar()
        state.dispose()
        assert joined == 1
    finally:
        engine.dispose()
        drop_database(url)
