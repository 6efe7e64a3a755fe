"""The `outputs:` section: parsing, and fraud predictions written in the platform's shape."""

from __future__ import annotations

from datetime import datetime

import pytest
import sqlalchemy as sa
from conftest import drop_database, make_database
from ticketing004 import create_platform_schema

from mlkit.toolkit import schema
from mlkit.toolkit.errors import MlkitError
from mlkit.toolkit.outputs import parse_outputs, write_fraud_predictions

SOURCES = {
    "orders": {
        "table": "transactions",
        "columns": {"order_id": "transaction_id", "created_at": '"timestamp"'},
    }
}
PREDICTIONS = {
    "table": "public.fraud_predictions",
    "columns": {
        "transaction_id": "order_id",
        "fraud_score": "fraud_score",
        "decision": "decision",
        "features": "features",
        "model_version": "model_version",
        "timestamp": "created_at",
    },
}


def test_the_ticketing_outputs_parse_with_what_sources_say_of_orders():
    outputs = parse_outputs(
        {
            "fraud_predictions": PREDICTIONS,
            "orders_archive": {"table": "public.transactions_archive"},
            "fraud_predictions_archive": {"table": "public.fraud_predictions_archive"},
        },
        SOURCES,
    )
    assert outputs.fraud_predictions.column_of("order_id") == "transaction_id"
    orders = outputs.orders_archive
    assert (orders.source, orders.key, orders.time) == (
        "transactions",
        "transaction_id",
        "timestamp",
    )
    archive = outputs.fraud_predictions_archive
    assert (archive.source, archive.key, archive.time, archive.link) == (
        "public.fraud_predictions",
        "id",
        "timestamp",
        "transaction_id",
    )
    assert outputs.orders_mapped and not parse_outputs(None).orders_mapped
    # With mlkit's tables kept apart, a bare name is the platform's, never mlkit's own.
    apart = parse_outputs(
        {"fraud_predictions": {**PREDICTIONS, "table": "fraud_predictions"}}, {}, "public"
    )
    assert apart.fraud_predictions.table == "public.fraud_predictions"


@pytest.mark.parametrize(
    ("raw", "sources", "message"),
    [
        ({"predictions": {}}, None, "outputs.predictions: unknown output"),
        (["fraud_predictions"], None, "outputs: expected a section"),
        (
            {"fraud_predictions": {"table": "x", "columns": {"transaction_id": "order"}}},
            None,
            "'order' is not one of",
        ),
        (
            {"fraud_predictions": {"table": "x", "columns": {"score": "fraud_score"}}},
            None,
            "no platform column takes order_id",
        ),
        (
            {"fraud_predictions": {"table": "x; drop", "columns": {"t": "order_id"}}},
            None,
            "not a plain table name",
        ),
        ({"orders_archive": {"table": "archive"}}, None, "orders_archive.source"),
        (
            {"orders_archive": {"table": "archive"}},
            {"orders": {"sql": "SELECT 1"}},
            "cannot tell the platform's order source",
        ),
        ({"fraud_predictions_archive": {"table": "a"}}, None, "needs outputs.fraud_predictions"),
    ],
)
def test_a_bad_outputs_section_is_one_error_with_a_hint(raw, sources, message):
    with pytest.raises(MlkitError, match=message) as caught:
        parse_outputs(raw, sources)
    assert caught.value.hint


@pytest.fixture
def platform(tmp_path):
    """The 004 database with mlkit's state schema beside it, made by hand: mlkit's own
    fraud_predictions and an orders relation exposing the platform's id as source_order_id."""
    url = make_database("postgresql", tmp_path)
    admin = sa.create_engine(url)
    create_platform_schema(admin)
    with admin.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA mlkit")
        conn.exec_driver_sql(
            "CREATE TABLE mlkit.orders (order_id BIGINT PRIMARY KEY, source_order_id VARCHAR(64))"
        )
    admin.dispose()
    engine = sa.create_engine(url, connect_args={"options": "-csearch_path=mlkit,public"})
    schema.fraud_predictions.create(engine)
    schema.fraud_features.create(engine)
    yield engine
    engine.dispose()
    drop_database(url)


def _predictions(conn, version: str, orders: list[int], score: float) -> None:
    conn.execute(
        schema.fraud_predictions.insert(),
        [
            {
                "order_id": o,
                "fraud_score": score,
                "decision": "BLOCKED",
                "features": {"txn_velocity_1h": 3, "geo_velocity_flag": None},
                "model_version": version,
                "created_at": datetime(2026, 3, 1, 12),
            }
            for o in orders
        ],
    )


def _platform_rows(engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.exec_driver_sql(
            "SELECT transaction_id, fraud_score::float, decision, features, model_version, "
            '"timestamp" FROM public.fraud_predictions ORDER BY transaction_id, model_version'
        ).all()


def test_predictions_land_in_the_platforms_table_with_its_own_ids(platform):
    output = parse_outputs({"fraud_predictions": PREDICTIONS}).fraud_predictions
    p = schema.fraud_predictions
    with platform.begin() as conn:
        conn.exec_driver_sql("INSERT INTO orders VALUES (11, 'tx-a'), (12, 'tx-b'), (13, 'tx-c')")
        _predictions(conn, "fraud:1", [11, 12], 0.9123)
        _predictions(conn, "fraud:2", [13], 0.1)
        written = write_fraud_predictions(conn, output, p.c.model_version == "fraud:1")
    assert written == 2
    rows = _platform_rows(platform)
    assert [(r[0], r[1], r[2], r[4]) for r in rows] == [
        ("tx-a", 0.912, "BLOCKED", "fraud:1"),
        ("tx-b", 0.912, "BLOCKED", "fraud:1"),
    ]
    assert rows[0][3] == {"txn_velocity_1h": 3, "geo_velocity_flag": None}
    assert rows[0][5] == datetime(2026, 3, 1, 12)
    # A re-run of the same version replaces its rows; another version adds its own.
    with platform.begin() as conn:
        write_fraud_predictions(conn, output, p.c.model_version == "fraud:1")
        write_fraud_predictions(conn, output, p.c.model_version == "fraud:2")
    assert [(r[0], r[4]) for r in _platform_rows(platform)] == [
        ("tx-a", "fraud:1"),
        ("tx-b", "fraud:1"),
        ("tx-c", "fraud:2"),
    ]


def test_a_mapped_column_the_platform_lacks_writes_nothing(platform):
    columns = {**PREDICTIONS["columns"], "score_v2": "fraud_score"}
    output = parse_outputs({"fraud_predictions": {**PREDICTIONS, "columns": columns}})
    with platform.begin() as conn, pytest.raises(MlkitError, match="has no column 'score_v2'"):
        write_fraud_predictions(
            conn, output.fraud_predictions, schema.fraud_predictions.c.model_version == "x"
        )
    assert _platform_rows(platform) == []


def test_the_config_file_is_checked_as_it_loads(tmp_path):
    from mlkit.toolkit.config import load_config
    from mlkit.toolkit.outputs import outputs_of

    path = tmp_path / "config.yaml"
    path.write_text(
        "outputs:\n  fraud_predictions:\n    table: fraud_predictions\n"
        "    columns:\n      transaction_id: order_id\n      fraud_score: ${SCORE:-fraud_score}\n"
    )
    output = outputs_of(load_config(path, env={})).fraud_predictions
    assert output.columns == {"transaction_id": "order_id", "fraud_score": "fraud_score"}
    path.write_text("outputs:\n  fraud_predictions:\n    table: fraud_predictions\n")
    with pytest.raises(MlkitError, match=r"config\.yaml: outputs\.fraud_predictions\.columns"):
        load_config(path, env={})
