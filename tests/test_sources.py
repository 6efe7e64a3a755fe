"""Your own database: a platform's tables (text ids, other column names) mapped through
`sources:` become views in mlkit's state schema, and the fraud pipeline runs on them;
`sources check` names each problem of a mapping; `db init` refuses a foreign table."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
import yaml
from conftest import DIALECTS, drop_database, make_database

from mlkit.toolkit.config import load_config
from mlkit.toolkit.db import config_engine
from mlkit.toolkit.monitor import DashboardSource
from mlkit.toolkit.sources.views import source_id

START = datetime(2026, 3, 1)
N_ORDERS = 400
N_WALLETS = 40
N_EVENTS = 6
FLAGGED = {"0xw3": START + timedelta(days=2), "0xw17": START + timedelta(days=5)}

platform = sa.MetaData()
transactions = sa.Table(
    "transactions",
    platform,
    sa.Column("transaction_id", sa.String(64), primary_key=True),
    sa.Column("wallet_address", sa.String(42), nullable=False),
    sa.Column("event_code", sa.String(64), nullable=False),
    sa.Column("price_paid", sa.Numeric(12, 2), nullable=False),
    sa.Column("pay", sa.String(20)),
    sa.Column("ts", sa.DateTime(), nullable=False),
    sa.Column("state", sa.String(16)),
)
flagged_wallets = sa.Table(
    "flagged_wallets",
    platform,
    sa.Column("wallet_address", sa.String(42), primary_key=True),
    sa.Column("listed_at", sa.DateTime()),
)
accounts = sa.Table(
    "accounts",
    platform,
    sa.Column("address", sa.String(42), primary_key=True),
    sa.Column("opened", sa.DateTime(), nullable=False),
)
shows = sa.Table(
    "shows",
    platform,
    sa.Column("code", sa.String(64), primary_key=True),
    sa.Column("title", sa.String(100)),
)

LABEL_SQL = (
    "SELECT t.transaction_id AS order_id, t.wallet_address AS wallet_id, "
    "f.listed_at AS label_available_at "
    "FROM flagged_wallets f JOIN transactions t ON t.wallet_address = f.wallet_address"
)
ORDERS = {
    "table": "transactions",
    "columns": {
        "order_id": "transaction_id",
        "buyer_wallet_id": "wallet_address",
        "event_id": "event_code",
        "price": "price_paid",
        "payment_method": "pay",
        "status": "state",
        "created_at": "ts",
    },
}


def order_rows() -> list[dict]:
    return [
        {
            "transaction_id": f"tx-{i:05d}",
            "wallet_address": f"0xw{i % N_WALLETS}",
            "event_code": f"ev-{i % N_EVENTS}",
            "price_paid": 20 + (i % 9) * 5,
            "pay": "card" if i % 3 else "crypto",
            "ts": START + timedelta(minutes=37 * i),
            "state": "COMPLETED",
        }
        for i in range(N_ORDERS)
    ]


@pytest.fixture(params=DIALECTS)
def world(request, tmp_path):
    """A platform database of one dialect with its own tables filled; on PostgreSQL and
    MySQL mlkit's state lives in a schema (database) of its own."""
    dialect = request.param
    url = make_database(dialect, tmp_path)
    engine = sa.create_engine(url)
    platform.create_all(engine)
    rows = order_rows()
    with engine.begin() as conn:
        conn.execute(transactions.insert(), rows)
        conn.execute(
            flagged_wallets.insert(),
            [{"wallet_address": w, "listed_at": t} for w, t in FLAGGED.items()],
        )
    engine.dispose()
    state = None if dialect == "sqlite" else ("mlkit" if dialect == "postgresql" else None)
    if dialect == "mysql":
        state = f"{sa.engine.make_url(url).database}_state"
    yield {"dialect": dialect, "url": url, "state": state, "rows": rows}
    if dialect == "mysql":
        drop_database(f"{url.rsplit('/', 1)[0]}/{state}")
    drop_database(url)


def write_config(world, sources: dict, outputs: dict | None = None) -> None:
    database = {"url": world["url"]}
    if world["state"]:
        database["state_schema"] = world["state"]
    document = {"database": database, "sources": sources}
    if outputs:
        document["outputs"] = outputs
    with open("config.yaml", "w") as fh:
        yaml.safe_dump(document, fh)


def state_engine(world):
    """An engine reading mlkit's state (the views and mlkit's own tables)."""
    url = sa.engine.make_url(world["url"])
    if world["dialect"] == "postgresql":
        return sa.create_engine(url, connect_args={"options": "-csearch_path=mlkit,public"})
    if world["dialect"] == "mysql":
        return sa.create_engine(url.set(database=world["state"]))
    from mlkit.toolkit.db import make_engine

    return make_engine(url)  # SQLite: the views need mlkit's id function


def platform_tables(world) -> set[str]:
    engine = sa.create_engine(world["url"])
    try:
        inspector = sa.inspect(engine)
        return set(inspector.get_table_names()) | set(inspector.get_view_names())
    finally:
        engine.dispose()


def test_mapped_platform_tables_feed_the_fraud_pipeline_through_views(world, cli):
    write_config(world, {"transactions": ORDERS, "fraud_labels": {"sql": LABEL_SQL}})
    before = platform_tables(world)

    check = cli("sources", "check", "--json")
    assert check.exit_code == 0, check.stdout + check.stderr
    document = json.loads(check.stdout)
    assert document["ok"] and document["problems"] == []
    assert document["inputs"]["orders"]["rows"] == N_ORDERS
    assert set(document["inputs"]["orders"]["columns"]) >= {"transaction_id", "ts"}
    flagged_orders = [r for r in world["rows"] if r["wallet_address"] in FLAGGED]
    assert document["inputs"]["security_alerts"]["labels"] == len(flagged_orders)
    assert document["inputs"]["security_alerts"]["unjoined"] == {"order_id": 0}
    assert set(document["derived"]) == {"wallets", "events"}

    init = cli("db", "init", "--json")
    assert init.exit_code == 0, init.stderr
    created = json.loads(init.stdout)
    assert set(created["views"]) == {"orders", "security_alerts", "wallets", "events"}
    assert (
        "orders" not in created["tables_created"] and "fraud_features" in created["tables_created"]
    )
    if world["dialect"] != "sqlite":
        assert platform_tables(world) == before  # nothing of mlkit's among the platform's

    etl = cli("etl", "run")
    assert etl.exit_code == 0, etl.stderr
    engine = state_engine(world)
    try:
        with engine.connect() as conn:
            views = set(sa.inspect(conn).get_view_names())
            assert {"orders", "wallets", "events", "security_alerts"} <= views
            orders = conn.execute(
                sa.text("SELECT order_id, source_order_id, buyer_wallet_id FROM orders")
            ).all()
            wallets = dict(conn.execute(sa.text("SELECT address, created_at FROM wallets")).all())
            wallet_ids = dict(conn.execute(sa.text("SELECT address, wallet_id FROM wallets")).all())
            alert_orders = {
                r[0] for r in conn.execute(sa.text("SELECT order_id FROM security_alerts"))
            }
            features = conn.execute(
                sa.text("SELECT order_id, wallet_id, label FROM fraud_features")
            ).all()
    finally:
        engine.dispose()
    # One text, one id, in every view.
    assert len(orders) == N_ORDERS
    assert all(o[0] == source_id(o[1]) for o in orders)
    assert wallet_ids == {f"0xw{i}": source_id(f"0xw{i}") for i in range(N_WALLETS)}
    assert alert_orders == {source_id(r["transaction_id"]) for r in flagged_orders}
    # A derived wallet was created by its first order.
    first = {}
    for r in world["rows"]:
        first.setdefault(r["wallet_address"], r["ts"])
    assert {a: _as_datetime(t) for a, t in wallets.items()} == first
    # The fraud features of every order, labelled through the mapped labels.
    assert len(features) == N_ORDERS
    assert {f[0] for f in features} == {o[0] for o in orders}
    assert {f[0] for f in features if f[2]} == alert_orders
    by_order = {o[0]: o[2] for o in orders}
    assert all(by_order[f[0]] == f[1] for f in features)

    status = json.loads(cli("db", "status", "--json").stdout)
    assert status["tables"]["orders"] == N_ORDERS
    assert "foreign_tables" not in status
    # The dashboard's own engine reads the views and mlkit's tables too.
    source = DashboardSource(config_engine(load_config("config.yaml")), None)
    try:
        with source.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT COUNT(*) FROM wallets")).scalar() == N_WALLETS
            assert conn.execute(sa.text("SELECT COUNT(*) FROM fraud_features")).scalar() == N_ORDERS
    finally:
        source.engine.dispose()


def _as_datetime(value) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def test_sources_apply_recreates_the_views_after_a_mapping_edit(world, cli):
    write_config(world, {"orders": ORDERS})
    assert cli("db", "init").exit_code == 0
    doubled = {**ORDERS, "columns": {**ORDERS["columns"], "price": "price_paid * 2"}}
    write_config(world, {"orders": doubled})
    result = cli("sources", "apply", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["views"] == ["orders", "wallets", "events"]
    engine = state_engine(world)
    try:
        with engine.connect() as conn:
            total = conn.execute(sa.text("SELECT SUM(price) FROM orders")).scalar_one()
    finally:
        engine.dispose()
    assert float(total) == 2 * sum(r["price_paid"] for r in world["rows"])


def test_ingest_never_writes_into_a_mapped_input(world, cli, tmp_path):
    write_config(world, {"orders": ORDERS})
    assert cli("db", "init").exit_code == 0
    csv = tmp_path / "orders.csv"
    csv.write_text("order_id,buyer_wallet_id,event_id,price,created_at\n5,1,1,10,2026-01-01\n")
    result = cli("ingest", "orders", "--csv", str(csv))
    assert result.exit_code == 1
    assert "orders is mapped to the platform's own data by sources:" in result.stderr
    assert "hint: load the file into the platform's table" in result.stderr
    engine = sa.create_engine(world["url"])
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(transactions)).scalar() == (
                N_ORDERS
            )
    finally:
        engine.dispose()


def test_sources_check_names_each_problem_with_a_hint(world, cli):
    engine = sa.create_engine(world["url"])
    with engine.begin() as conn:
        # Labels without the time they became known, and of orders the platform never had.
        conn.execute(
            flagged_wallets.insert(),
            [{"wallet_address": "0xnobody", "listed_at": None}],
        )
        conn.execute(accounts.insert(), [{"address": f"0xa{i}", "opened": START} for i in range(5)])
    engine.dispose()
    labels = (
        "SELECT CONCAT('gone-', f.wallet_address) AS order_id, f.listed_at AS label_available_at "
        "FROM flagged_wallets f"
        if world["dialect"] == "mysql"
        else "SELECT 'gone-' || f.wallet_address AS order_id, f.listed_at AS label_available_at "
        "FROM flagged_wallets f"
    )
    write_config(
        world,
        {
            "orders": ORDERS,
            "wallets": {
                "table": "accounts",
                "columns": {"wallet_id": "address", "created_at": "opened"},
            },
            "events": {
                "table": "shows",
                "columns": {
                    "event_id": "code",
                    "base_price": "face_value",
                    "sale_start": "title",
                    "event_date": "title",
                    "created_at": "title",
                },
            },
            "security_alerts": {"sql": labels},
        },
    )
    result = cli("sources", "check")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    problems = [line for line in lines if line.startswith("problem: ")]
    for i, line in enumerate(lines):
        if line.startswith("problem: "):
            assert lines[i + 1].startswith("hint: "), line
    assert len(problems) == 4, result.stderr
    assert any(p.startswith("problem: events: column 'face_value'") for p in problems)
    assert any(
        p.startswith("problem: security_alerts: label_available_at is NULL in 1 of 3")
        for p in problems
    )
    assert any(
        p.startswith("problem: security_alerts: 3 of 3 rows: order_id matches no row of orders")
        for p in problems
    )
    assert any(
        p.startswith(f"problem: orders: {N_ORDERS} of {N_ORDERS} rows: buyer_wallet_id matches")
        for p in problems
    )
    document = json.loads(cli("sources", "check", "--json").stdout)
    assert not document["ok"] and len(document["problems"]) == 4
    assert document["inputs"]["security_alerts"]["null_rates"]["label_available_at"] == 1 / 3


def test_sources_check_names_output_tables_that_cannot_take_the_writes(world, cli):
    """An output table that is not there, or lacks a column mlkit would write, is a problem
    before `score fraud` or `retention run` meets it."""
    predictions = {
        "table": "transactions",  # exists, but has none of the prediction columns
        "columns": {"transaction_id": "order_id", "risk": "fraud_score", "at": "created_at"},
    }
    write_config(
        world,
        {"orders": ORDERS},
        {"fraud_predictions": predictions, "orders_archive": {"table": "transactions_old"}},
    )
    result = cli("sources", "check")
    assert result.exit_code == 1
    problems = [line for line in result.stderr.splitlines() if line.startswith("problem: ")]
    assert len(problems) == 2, result.stderr
    assert any(
        p.startswith("problem: outputs.fraud_predictions: table") and "at, risk" in p
        for p in problems
    ), problems
    assert any(
        p.startswith("problem: outputs.orders_archive: table") and "does not exist" in p
        for p in problems
    ), problems
    document = json.loads(cli("sources", "check", "--json").stdout)
    assert document["outputs"]["orders_archive"]["reachable"] is False
    assert "transaction_id" in document["outputs"]["fraud_predictions"]["columns"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_db_init_refuses_a_platform_table_of_mlkits_name(dialect, tmp_path, cli):
    url = make_database(dialect, tmp_path)
    try:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE orders (transaction_id VARCHAR(64), amount INT)"))
            conn.execute(sa.text("INSERT INTO orders VALUES ('tx-1', 5)"))
        engine.dispose()
        env = {"MLKIT_DATABASE_URL": url}
        result = cli("db", "init", env=env)
        assert result.exit_code == 1
        lines = result.stderr.splitlines()
        assert lines[0].startswith("error: table orders exists with other columns (no order_id")
        assert lines[1].startswith("hint: ") and "sources:" in lines[1]
        assert "database.state_schema" in lines[1]
        status = cli("db", "status", "--json", env=env)
        document = json.loads(status.stdout)
        assert document["tables"]["orders"] is None
        assert "created_at" in document["foreign_tables"]["orders"]
    finally:
        drop_database(url)


@pytest.mark.parametrize(
    ("sources", "database", "expected", "hint"),
    [
        ({"purchases": {"table": "t"}}, {}, "sources.purchases: unknown input", "transactions"),
        (
            {"orders": {"table": "t", "columns": {"order_id": "id", "colour": "c"}}},
            {},
            "sources.orders.columns.colour: orders has no column 'colour'",
            "buyer_wallet_id",
        ),
        (
            {"orders": {"table": "t", "columns": {"order_id": "id"}}},
            {},
            "sources.orders.columns: no mapping for required column(s) buyer_wallet_id",
            "sources.orders.columns",
        ),
        ({"orders": {"table": "t", "sql": "SELECT 1"}}, {}, "sources.orders: give exactly", "sql"),
        ({}, {"state_schema": "mlkit"}, "database.state_schema: SQLite", "state_schema"),
        ({}, {"state_schema": "My-Schema"}, "database.state_schema: 'My-Schema'", "letters"),
    ],
)
def test_a_bad_mapping_is_one_error_naming_its_key(sources, database, expected, hint, cli):
    url = "postgresql://u@h/db" if database.get("state_schema") == "My-Schema" else ""
    config = {"database": {**database, **({"url": url} if url else {})}, "sources": sources}
    with open("config.yaml", "w") as fh:
        yaml.safe_dump(config, fh)
    result = cli("sources", "check")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("error: config.yaml: " + expected), lines[0]
    assert lines[1].startswith("hint: ") and hint in lines[1]


def test_without_a_mapping_check_has_nothing_to_report(cli, tmp_path):
    result = cli("sources", "check", "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["inputs"] == {} and document["ok"]
    assert not (tmp_path / "home" / "mlkit.db").exists()  # nothing was created to check it


def test_state_schema_keeps_mlkits_tables_apart_from_the_platforms_of_the_same_name(tmp_path, cli):
    """PostgreSQL: the platform's own blacklisted_wallets (other columns) stays its own; the
    labels' SELECT reads it, not mlkit's table of that name in the state schema."""
    url = make_database("postgresql", tmp_path)
    try:
        engine = sa.create_engine(url)
        platform.create_all(engine, tables=[transactions])
        with engine.begin() as conn:
            conn.execute(transactions.insert(), order_rows())
            conn.execute(
                sa.text(
                    "CREATE TABLE blacklisted_wallets (wallet_address VARCHAR(42) PRIMARY KEY, "
                    'reason TEXT, "timestamp" TIMESTAMP NOT NULL)'
                )
            )
            conn.execute(
                sa.text("INSERT INTO blacklisted_wallets VALUES ('0xw3', 'bot', :t)"),
                {"t": START + timedelta(days=1)},
            )
        engine.dispose()
        labels = (
            'SELECT t.transaction_id AS order_id, b."timestamp" AS label_available_at '
            "FROM blacklisted_wallets b JOIN transactions t ON t.wallet_address = b.wallet_address"
        )
        world = {"url": url, "state": None, "dialect": "postgresql"}
        write_config(world, {"orders": ORDERS, "security_alerts": {"sql": labels}})
        refused = cli("db", "init")
        assert refused.exit_code == 1
        assert "table blacklisted_wallets exists with other columns" in refused.stderr

        world["state"] = "mlkit"
        write_config(world, {"orders": ORDERS, "security_alerts": {"sql": labels}})
        assert cli("db", "init").exit_code == 0
        engine = state_engine(world)
        try:
            with engine.connect() as conn:
                inspector = sa.inspect(conn)
                assert "blacklisted_wallets" in inspector.get_table_names(schema="mlkit")
                assert "created_at" not in {
                    c["name"] for c in inspector.get_columns("blacklisted_wallets", "public")
                }
                alerts = conn.execute(sa.text("SELECT COUNT(*) FROM security_alerts")).scalar()
        finally:
            engine.dispose()
        assert alerts == N_ORDERS // N_WALLETS  # every order of 0xw3
    finally:
        drop_database(url)


def test_uuid_ids_are_hashed_and_integer_ids_kept_on_postgresql(tmp_path, cli):
    url = make_database("postgresql", tmp_path)
    try:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "CREATE TABLE purchases (id UUID PRIMARY KEY, buyer UUID NOT NULL, "
                    "show_id INT NOT NULL, amount NUMERIC, at TIMESTAMPTZ NOT NULL)"
                )
            )
            conn.execute(
                sa.text(
                    "INSERT INTO purchases SELECT md5(i::text)::uuid, md5((i % 7)::text)::uuid, "
                    "i % 3, 5 + i, TIMESTAMPTZ '2026-01-01 00:00+02' + i * INTERVAL '1 hour' "
                    "FROM generate_series(1, 50) i"
                )
            )
        engine.dispose()
        columns = {
            "order_id": "id",
            "buyer_wallet_id": "buyer",
            "event_id": "show_id",
            "price": "amount",
            "created_at": "at",
        }
        world = {"url": url, "state": "mlkit", "dialect": "postgresql"}
        write_config(world, {"orders": {"table": "purchases", "columns": columns}})
        assert cli("db", "init").exit_code == 0
        assert cli("etl", "run").exit_code == 0
        engine = state_engine(world)
        try:
            with engine.connect() as conn:
                first = conn.execute(
                    sa.text(
                        "SELECT order_id, source_order_id, event_id, created_at FROM orders "
                        "ORDER BY created_at LIMIT 1"
                    )
                ).one()
                wallets = conn.execute(sa.text("SELECT wallet_id, address FROM wallets")).all()
        finally:
            engine.dispose()
        assert first.order_id == source_id(str(first.source_order_id))
        assert first.event_id == 1  # an integer id stays itself
        assert first.created_at == datetime(2025, 12, 31, 23)  # UTC, naive
        assert len(wallets) == 7 and all(w.wallet_id == source_id(w.address) for w in wallets)
    finally:
        drop_database(url)
