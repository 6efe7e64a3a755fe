"""`mlkit train all`: every family in turn, past failures, honouring cooldowns."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from mlkit.toolkit import train_all as train_all_module
from mlkit.toolkit.config import load_config
from mlkit.toolkit.errors import MlkitError, TooLittleData
from mlkit.toolkit.runs import training_run
from mlkit.toolkit.schema import market_data, training_runs
from mlkit.toolkit.train_all import Planned, default_plan, train_all


@pytest.fixture(autouse=True)
def no_runs(engine):
    with engine.begin() as conn:
        conn.execute(training_runs.delete())


def fake(version: int, calls: list, name: str):
    def train() -> dict:
        calls.append(name)
        return {"version": version, "alias": "prod"}

    return train


def broken(calls: list, name: str, error: Exception):
    def train() -> dict:
        calls.append(name)
        raise error

    return train


def test_a_failure_does_not_stop_the_families_after_it(engine):
    calls: list = []
    plan = [
        Planned("fraud", "fraud", broken(calls, "fraud", MlkitError("one class only"))),
        Planned("pricing", "pricing", broken(calls, "pricing", ZeroDivisionError("oops"))),
        Planned("recommender", "recommender", fake(4, calls, "recommender")),
        Planned("signal", "signal-BTCUSDT", fake(2, calls, "signal-BTCUSDT")),
        Planned("signal", "signal-ETHUSDT", None, "120 bars, fewer than needed"),
    ]
    document = train_all(engine, load_config(), plan=plan)
    assert calls == ["fraud", "pricing", "recommender", "signal-BTCUSDT"]
    statuses = [(r["model"], r["status"]) for r in document["results"]]
    assert statuses == [
        ("fraud", "failed"),
        ("pricing", "failed"),
        ("recommender", "ok"),
        ("signal-BTCUSDT", "ok"),
        ("signal-ETHUSDT", "skipped"),
    ]
    assert document["results"][0]["detail"] == "one class only"
    assert document["results"][1]["detail"] == "ZeroDivisionError: oops"
    assert document["results"][2]["version"] == 4
    assert document["results"][2]["detail"] == "v4, prod -> v4"
    assert (document["ok"], document["failed"], document["skipped"]) == (2, 2, 1)


def test_too_little_data_is_a_skip_that_keeps_the_serving_model(engine):
    calls: list = []
    few = TooLittleData("12 priced primary orders ..., fewer than pricing.min_offers (100)")
    plan = [
        Planned("pricing", "pricing", broken(calls, "pricing", few)),
        Planned("recommender", "recommender", fake(2, calls, "recommender")),
    ]
    document = train_all(engine, load_config(), plan=plan)
    assert calls == ["pricing", "recommender"]
    pricing = document["results"][0]
    assert pricing["status"] == "skipped" and pricing["detail"] == few.message
    assert (document["ok"], document["failed"], document["skipped"]) == (1, 0, 1)


def test_a_family_cooling_down_is_skipped_not_trained(engine):
    with pytest.raises(MlkitError), training_run(engine, "pricing", cooldown_seconds=600):
        raise MlkitError("too few offers")
    calls: list = []
    plan = [
        Planned("fraud", "fraud", fake(1, calls, "fraud")),
        Planned("pricing", "pricing", fake(1, calls, "pricing")),
    ]
    document = train_all(engine, load_config(), plan=plan)
    assert calls == ["fraud"]
    pricing = document["results"][1]
    assert pricing["status"] == "skipped" and "cooling down" in pricing["detail"]
    assert document["failed"] == 0


def test_a_model_being_trained_elsewhere_is_skipped(engine):
    calls: list = []
    with training_run(engine, "fraud", cooldown_seconds=600):
        # The lock is held: the real training refuses at once, and train all moves on.
        def train() -> dict:
            calls.append("fraud")
            with training_run(engine, "fraud", cooldown_seconds=600):
                return {}  # pragma: no cover

        document = train_all(engine, load_config(), plan=[Planned("fraud", "fraud", train)])
    assert calls == ["fraud"]
    assert document["results"][0]["status"] == "skipped" and document["failed"] == 0


def test_the_default_plan_follows_the_data(engine):
    config = load_config()
    with engine.begin() as conn:
        conn.execute(market_data.delete())
    plan = {p.model: p for p in default_plan(engine, config)}
    assert list(plan) == ["fraud", "pricing", "recommender", "signal"]
    assert plan["signal"].train is None and "no market data" in plan["signal"].reason
    assert plan["recommender"].train is None and "interactions" in plan["recommender"].reason
    with engine.begin() as conn:
        start = datetime(2026, 1, 1)
        conn.execute(
            market_data.insert(),
            [
                {
                    "symbol": "TINY",
                    "ts": start + timedelta(hours=i),
                    "open": 1,
                    "high": 1,
                    "low": 1,
                    "close": 1,
                    "volume": 1,
                }
                for i in range(10)
            ],
        )
    plan = {p.model: p for p in default_plan(engine, config)}
    assert plan["signal-TINY"].train is None and "10 bars" in plan["signal-TINY"].reason
    assert set(plan) >= {"fraud", "pricing", "recommender", "signal-TINY"}
    with engine.connect() as conn:
        has_orders = conn.execute(sa.text("SELECT COUNT(*) FROM orders")).scalar() > 0
    assert (plan["fraud"].train is None) == (not has_orders)


def test_cli_summary_and_exit_codes(cli, database_url, monkeypatch):
    calls: list = []

    def plan_with(failing: bool):
        def plan(engine, config, redis=None):
            first = (
                broken(calls, "fraud", MlkitError("no labels"))
                if failing
                else fake(1, calls, "fraud")
            )
            return [
                Planned("fraud", "fraud", first),
                Planned("pricing", "pricing", fake(3, calls, "pricing")),
            ]

        return plan

    monkeypatch.setattr(train_all_module, "default_plan", plan_with(failing=True))
    result = cli("--database", database_url, "train", "all", "--json")
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert [r["status"] for r in document["results"]] == ["failed", "ok"]
    assert "training pricing" in result.stderr

    monkeypatch.setattr(train_all_module, "default_plan", plan_with(failing=False))
    result = cli("--database", database_url, "train", "all")
    assert result.exit_code == 0, result.output
    assert "2 trained, 0 rejected, 0 failed, 0 skipped" in result.stdout
