"""Input schemas at the boundaries: `predict fraud` refuses nonsense with one error line,
offsets become UTC, durations are bounded, and JSON output is always standard JSON."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa

from mlkit.toolkit import schema
from mlkit.toolkit.errors import MlkitError
from mlkit.toolkit.inputs import (
    PAYMENT_METHODS,
    parse_duration,
    validate_order,
)

NOW = datetime(2026, 2, 1)


def strict_json(text: str):
    """json.loads that refuses NaN, Infinity and -Infinity, as a standard parser does."""

    def refuse(constant: str):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A SQLite database with demo orders and a trained fraud model aliased prod."""
    from mlkit.toolkit.config import load_config
    from mlkit.toolkit.db import init_schema, make_engine
    from mlkit.toolkit.demo.seed import seed_demo
    from mlkit.toolkit.fraud.pipeline import train_fraud_model
    from mlkit.toolkit.registry import promote

    folder = tmp_path_factory.mktemp("served")
    url = f"sqlite:///{folder}/served.db"
    home = folder / "home"
    engine = make_engine(url)
    init_schema(engine)
    seed_demo(engine, orders=3000, days=20, seed=7, families=("fraud",), start=datetime(2026, 1, 1))
    config = load_config(database_url=url, env={"MLKIT_HOME": str(home)})
    config.data["fraud"]["min_auc_pr"] = 0.0  # the gate is not what these tests are about
    train_fraud_model(engine, config, kind="xgboost", alias="candidate", force=True)
    promote(engine, "fraud", 1, "prod")
    with engine.connect() as conn:
        row = (
            conn.execute(
                sa.select(schema.orders).where(schema.orders.c.is_resale.is_(False)).limit(1)
            )
            .mappings()
            .one()
        )
    engine.dispose()
    order = {
        "buyer_wallet_id": int(row["buyer_wallet_id"]),
        "event_id": int(row["event_id"]),
        "price": 80,
        "payment_method": "paypal",
        "created_at": "2026-01-25T12:00:00",
    }
    return url, home, order


@pytest.fixture
def predict(cli, served):
    url, home, _ = served
    env = {"MLKIT_HOME": str(home), "MLKIT_NOW": NOW.isoformat()}

    def run(text: str):
        return cli("--database", url, "predict", "fraud", text, env=env)

    return run


def test_a_good_order_is_scored_as_standard_json(predict, served):
    result = predict(json.dumps(served[2]))
    assert result.exit_code == 0, result.output
    answer = strict_json(result.stdout)
    assert answer["decision"] in ("APPROVED", "REQUIRE_2FA", "MANUAL_REVIEW", "BLOCKED")


# Field, value as JSON text, and what the one error line must say.
HOSTILE = {
    "nan_price": ("price", "NaN", r"price NaN is not a finite number"),
    "infinite_price": ("price", "Infinity", r"price Infinity is not a finite number"),
    "huge_price": ("price", "1e308", r"price 1e\+308 is not below the maximum"),
    "negative_price": ("price", "-5", r"price -5 is not above 0"),
    "text_price": ("price", '"eighty"', r'price "eighty" is not a number'),
    "unknown_method": ("payment_method", '"venmo"', r'payment_method "venmo" is not a known'),
    "numeric_created_at": ("created_at", "1767225600", r"created_at 1767225600 is not an ISO"),
    "text_wallet": ("buyer_wallet_id", '"abc"', r'buyer_wallet_id "abc" is not an integer'),
    "huge_wallet": ("buyer_wallet_id", str(10**30), r"buyer_wallet_id 10{30} is out of range"),
    "huge_event": ("event_id", str(2**63), r"event_id 9223372036854775808 is out of range"),
    "resale_text": ("is_resale", '"yes"', r'is_resale "yes" is not a boolean'),
    "latitude": ("geo_lat", "123.5", r"geo_lat 123.5 is outside \[-90, 90\]"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_order_is_one_error_line(predict, served, case):
    field, value, message = HOSTILE[case]
    text = json.dumps({**served[2], field: "PLACEHOLDER"}).replace('"PLACEHOLDER"', value)
    result = predict(text)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: ")
    assert "unexpected" not in result.stderr
    assert re.search(message, lines[0]), lines[0]


def test_an_offset_is_converted_to_utc_before_the_features(predict, served):
    order = served[2]
    shifted = predict(json.dumps({**order, "created_at": "2026-01-25T12:00:00+05:00"}))
    utc = predict(json.dumps({**order, "created_at": "2026-01-25T07:00:00"}))
    local = predict(json.dumps({**order, "created_at": "2026-01-25T12:00:00"}))
    assert shifted.exit_code == utc.exit_code == local.exit_code == 0, shifted.output
    features = [strict_json(r.stdout)["features"] for r in (shifted, utc, local)]
    assert features[0] == features[1]
    # The wallet ages five hours between 07:00 and 12:00: dropping the offset would show it.
    age = [f["wallet_age_days"] for f in features]
    assert age[2] - age[1] == pytest.approx(5 / 24)


@pytest.mark.parametrize("command", [("etl", "run"), ("score", "fraud")])
def test_an_absurd_duration_is_a_clear_error(cli, served, command):
    url, home, _ = served
    result = cli("--database", url, *command, "--since", "99999999d", env={"MLKIT_HOME": str(home)})
    assert result.exit_code == 1, result.output
    assert "unexpected" not in result.stderr
    assert result.stderr.startswith("error: --since '99999999d' is longer than 100 years")


def test_emit_json_never_prints_nan_or_infinity(capsys):
    from mlkit.commands._common import emit_json

    emit_json({"a": float("nan"), "b": [np.float32("inf"), -np.inf], "c": 1.5, "d": (2, "x")})
    out = capsys.readouterr().out
    assert strict_json(out) == {"a": None, "b": [None, None], "c": 1.5, "d": [2, "x"]}


def test_the_order_schema_normalises_what_it_accepts():
    order = validate_order(
        {
            "buyer_wallet_id": np.int64(12),
            "event_id": 3.0,
            "price": 80,
            "is_resale": True,
            "payment_method": "paypal",
            "created_at": "2026-01-25T12:00:00-02:00",
            "geo_lat": -33.9,
            "geo_lon": 151.2,
            "unknown_key": "ignored",
        },
        now=NOW,
    )
    assert order["created_at"] == datetime(2026, 1, 25, 14, 0)
    assert (order["buyer_wallet_id"], order["event_id"], order["price"]) == (12, 3, 80.0)
    assert order["status"] == "PENDING" and order["is_resale"] is True
    assert "unknown_key" not in order


@pytest.mark.parametrize(
    "change",
    [
        {"created_at": "1985-01-01"},
        {"created_at": (NOW + timedelta(days=2)).isoformat()},
        {"buyer_wallet_id": 0},
        {"buyer_wallet_id": True},
        {"event_id": 3.5},
        {"geo_lon": float("nan")},
        {"status": "SHIPPED"},
    ],
)
def test_the_order_schema_refuses(change):
    base = {
        "buyer_wallet_id": 1,
        "event_id": 1,
        "price": 1,
        "payment_method": "paypal",
        "created_at": "2026-01-25T12:00:00",
    }
    with pytest.raises(MlkitError) as caught:
        validate_order({**base, **change}, now=NOW)
    assert next(iter(change)) in caught.value.message and caught.value.hint


def test_a_method_the_model_learned_is_known_too():
    base = {
        "buyer_wallet_id": 1,
        "event_id": 1,
        "price": 1,
        "payment_method": "venmo",
        "created_at": "2026-01-25T12:00:00",
    }
    assert validate_order(base, now=NOW, payment_methods=(*PAYMENT_METHODS, "venmo"))


def test_the_known_methods_are_the_demo_worlds():
    from mlkit.toolkit.demo.ticketing import PAYMENT_METHODS as DEMO_METHODS

    assert set(PAYMENT_METHODS) == set(DEMO_METHODS)


def test_durations_are_bounded():
    assert parse_duration("30d", "--since") == timedelta(days=30)
    assert parse_duration("2026-01-01", "--since") is None
    assert parse_duration("36525d", "--since") == timedelta(days=36525)
    for text in ("36526d", "876601h", "99999999999m"):
        with pytest.raises(MlkitError, match="longer than 100 years"):
            parse_duration(text, "--since")
