"""The dashboard's look, pinned by snapshots (pytest-textual-snapshot) at 80x24 and 160x48:
seeded data, an empty database, Redis down, the database down, an alert firing, the
drill-down into a blocked order. A fixed clock and a fixed world keep them stable; update them
with `pytest tests/test_dashboard_snapshots.py --snapshot-update` and look at the SVGs."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from mlkit.toolkit import schema
from mlkit.toolkit.config import load_config
from mlkit.toolkit.db import init_schema, make_engine

NOW = datetime(2026, 11, 30, 23, 30)
SIZES = [(80, 24), (160, 48)]
DECISIONS = ["APPROVED"] * 6 + ["REQUIRE_2FA", "MANUAL_REVIEW", "BLOCKED"]
CLOSED_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def seed(engine, *, orders: int = 90, alert: bool = False) -> None:
    """`orders` orders over the last 3 days (the newest 10 minutes ago), each scored, a
    bandit, training runs; a firing fraud alert with `alert`."""
    from mlkit.toolkit.pricing.history import ARMS
    from mlkit.toolkit.pricing.state import ArmState, BanditStore

    with engine.begin() as conn:
        conn.execute(
            schema.orders.insert(),
            [
                {
                    "order_id": i + 1,
                    "buyer_wallet_id": 100 + i % 4,
                    "event_id": 1 + i % 3,
                    "price": 40.0 + i,
                    "payment_method": "card",
                    "is_resale": False,
                    "status": "COMPLETED",
                    "created_at": NOW - timedelta(minutes=10 + 47 * i),
                }
                for i in range(orders)
            ],
        )
        conn.execute(
            schema.fraud_predictions.insert(),
            [
                {
                    "order_id": i + 1,
                    "fraud_score": round(0.05 + 0.1 * (i % 9), 3),
                    "decision": DECISIONS[i % 9],
                    "model_version": "fraud:1",
                    "created_at": NOW - timedelta(minutes=5 + 47 * i),
                }
                for i in range(orders)
            ],
        )
        conn.execute(
            schema.training_runs.insert(),
            [
                {
                    "model_name": "fraud",
                    "status": "failed",
                    "started_at": NOW - timedelta(hours=2),
                    "finished_at": NOW - timedelta(hours=2),
                    "last_error": "ValueError: too few labelled orders",
                    "next_retry_at": NOW + timedelta(hours=1),
                    "host": "test",
                },
            ],
        )
        if alert:
            conn.execute(
                schema.alerts.insert(),
                {
                    "rule": "fraud_rate_spike",
                    "severity": "high",
                    "status": "firing",
                    "expression": "fraud_rate > 0.03",
                    "value": 0.2222,
                    "threshold": 0.03,
                    "message": "20 of 90 orders scored in the last 10m BLOCKED or MANUAL_REVIEW",
                    "fired_at": NOW - timedelta(minutes=20),
                    "last_seen_at": NOW - timedelta(minutes=1),
                },
            )
    BanditStore(engine).save(
        {arm: ArmState(arm, pulls=10 * (i + 1), reward_sum=3.0 * i) for i, arm in enumerate(ARMS)}
    )


@pytest.fixture(autouse=True)
def snapshot_report_folder(tmp_path_factory, monkeypatch):
    """The plugin makes its report folder in the session's controller only; a worker run on
    its own (PYTEST_XDIST_WORKER set, -n 0) has none: give it one."""
    if "TEXTUAL_SNAPSHOT_TEMPDIR" not in os.environ:
        monkeypatch.setenv("TEXTUAL_SNAPSHOT_TEMPDIR", str(tmp_path_factory.mktemp("snapshots")))


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A SQLite database at a fixed relative path (so the header reads the same every run)."""
    monkeypatch.setenv("MLKIT_NOW", NOW.isoformat())
    url = "sqlite:///mlkit.db"
    engine = make_engine(url)
    init_schema(engine)
    return engine, url


def dashboard(url: str, redis_url: str | None = None):
    from mlkit.dashboard.app import Dashboard

    return Dashboard(
        make_engine(url, check=False),
        redis_url,
        3600.0,  # one refresh: the picture holds still
        load_config(database_url=url),
    )


async def settled(pilot) -> None:
    """The first refresh shown, and shown again once the screen's layout is done (a refresh
    that lands during the first layout may keep the sizes of an empty panel)."""
    deadline = time.monotonic() + 20
    while pilot.app.refreshes < 1:
        assert time.monotonic() < deadline, "no refresh"
        await pilot.pause(0.05)
    await pilot.pause(0.2)
    pilot.app.show(pilot.app.snapshot)
    await still(pilot)


async def still(pilot) -> None:
    """The header's clock stopped at "0 s ago" whatever the machine's speed, the layout
    settled."""
    pilot.app.clock.pause()
    pilot.app.shown_at = time.monotonic()
    pilot.app._render_top()
    await pilot.pause(0.3)
    for _ in range(3):  # every pending message handled, the layout and tables' sizes done
        await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_seeded(world, size, snap_compare):
    engine, url = world
    seed(engine)
    assert snap_compare(dashboard(url), terminal_size=size, run_before=settled)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_empty_database(world, size, snap_compare):
    _, url = world
    assert snap_compare(dashboard(url), terminal_size=size, run_before=settled)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_redis_down(world, size, snap_compare):
    engine, url = world
    seed(engine)
    assert snap_compare(dashboard(url, CLOSED_REDIS), terminal_size=size, run_before=settled)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_database_down(size, snap_compare, monkeypatch):
    monkeypatch.setenv("MLKIT_NOW", NOW.isoformat())
    down = "postgresql+psycopg2://mlkit@127.0.0.1:1/mlkit"  # nothing listens on port 1
    assert snap_compare(dashboard(down), terminal_size=size, run_before=settled)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_alert_firing(world, size, snap_compare):
    engine, url = world
    seed(engine, alert=True)
    assert snap_compare(dashboard(url), terminal_size=size, run_before=settled)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_drill_down(world, size, snap_compare):
    engine, url = world
    seed(engine)

    async def open_first_blocked(pilot) -> None:
        await settled(pilot)
        pilot.app.query_one("#blocked").focus()
        await pilot.press("enter")
        deadline = time.monotonic() + 10
        while "loading" in str(pilot.app.screen.query_one("#order-detail").content):
            assert time.monotonic() < deadline, "the order did not load"
            await pilot.pause(0.05)
        await still(pilot)

    assert snap_compare(dashboard(url), terminal_size=size, run_before=open_first_blocked)


def test_the_order_drill_down_reads_the_order_its_wallet_and_says_why_no_contributions(world):
    from mlkit.toolkit.drilldown import order_detail

    engine, url = world
    seed(engine)
    with engine.connect() as conn:
        blocked = conn.execute(
            sa.select(sa.func.min(schema.fraud_predictions.c.order_id)).where(
                schema.fraud_predictions.c.decision == "BLOCKED"
            )
        ).scalar()
    detail = order_detail(engine, blocked, load_config(database_url=url))
    assert detail["prediction"]["decision"] == "BLOCKED"
    wallet = detail["order"]["buyer_wallet_id"]
    assert detail["wallet_history"] and all(
        h["created_at"] <= detail["wallet_history"][0]["created_at"]
        for h in detail["wallet_history"]
    )
    assert len(detail["wallet_history"]) == 10  # the wallet has 22 or 23 orders
    assert detail["features"] is None and detail["contributions"] is None
    assert detail["contributions_note"] == "no features"
    assert wallet in (100, 101, 102, 103)


async def test_a_family_and_an_arm_open_their_detail(world):
    engine, url = world
    seed(engine)
    app = dashboard(url)
    async with app.run_test(size=(160, 48)) as pilot:
        await settled(pilot)
        training = app.query_one("#training")
        training.focus()
        training.move_cursor(row=[str(k.value) for k in training.rows].index("fraud"))
        await pilot.press("enter")
        await pilot.pause(0.5)
        runs = str(app.screen.query_one("#runs").content)
        assert type(app.screen).__name__ == "FamilyScreen"
        shown = app.screen.query_one("Static").content
        assert "cooling-down" in str(shown) and "too few labelled orders" in str(shown)
        assert runs != "loading runs…"
        await pilot.press("escape")
        await pilot.pause(0.1)
        app.query_one("#arms").focus()
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert type(app.screen).__name__ == "ArmScreen"
        assert app.screen.arm == "baseline"
        await pilot.press("escape")
        await pilot.press("q")
