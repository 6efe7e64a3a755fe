"""Acceptance: after `mlkit quickstart` and `mlkit score fraud`, on every dialect, the fraud
windows the dashboard shows equal the SQL counts for 1 h / 24 h / 7 d, orders that came in
since the scoring included (unscored); and every family's status, signal's among them, is the
one `mlkit status` reports."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from conftest import DIALECTS, drop_database, make_database
from rich.console import Console
from typer.testing import CliRunner

from mlkit.toolkit import schema
from mlkit.toolkit.db import make_engine
from mlkit.toolkit.fraud.columns import DECISIONS
from mlkit.toolkit.monitor import WINDOWS, fraud_overview

NOW = datetime(2026, 11, 30, 23, 30)
LIVE_SCORED = 5  # orders placed in the last hour, then scored
LIVE_UNSCORED = 2  # orders placed after the scoring

pytestmark = pytest.mark.slow


def mlkit(url: str, env: dict, *args: str):
    from mlkit.commands.main import app

    result = CliRunner().invoke(app, ["--database", url, *args], env=env)
    assert result.exit_code == 0, result.output
    return result


def add_orders(engine, count: int, minutes_ago: int) -> None:
    """`count` orders copied from the newest one, placed a minute apart from `minutes_ago`."""
    o = schema.orders
    with engine.begin() as conn:
        row = conn.execute(sa.select(o).order_by(o.c.created_at.desc()).limit(1)).one()._asdict()
        row.pop("order_id")
        conn.execute(
            o.insert(),
            [
                row | {"created_at": NOW - timedelta(minutes=minutes_ago - i), "completed_at": None}
                for i in range(count)
            ],
        )


@pytest.fixture(scope="module", params=DIALECTS)
def world(request, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    url = make_database(request.param, home)
    env = {"MLKIT_HOME": str(home), "MLKIT_NOW": NOW.isoformat(), "MLKIT_REDIS_URL": ""}
    mlkit(url, env, "quickstart", "--orders", "12000", "--yes")
    engine = make_engine(url)
    add_orders(engine, LIVE_SCORED, minutes_ago=20)
    mlkit(url, env, "score", "fraud")
    add_orders(engine, LIVE_UNSCORED, minutes_ago=5)
    yield engine, url, env
    engine.dispose()
    drop_database(url)


def sql_counts(engine, start: datetime, end: datetime) -> dict:
    """Per latest decision (None: unscored), the orders placed in (start, end], in plain SQL."""
    query = sa.text("""
        SELECT p.decision, COUNT(*) FROM orders o
        LEFT JOIN fraud_predictions p ON p.order_id = o.order_id
            AND NOT EXISTS (SELECT 1 FROM fraud_predictions q
                            WHERE q.order_id = p.order_id AND q.id > p.id)
        WHERE o.created_at > :start AND o.created_at <= :end
        GROUP BY p.decision""")
    with engine.connect() as conn:
        return {d: int(n) for d, n in conn.execute(query, {"start": start, "end": end})}


def test_the_windows_equal_the_sql_counts(world, monkeypatch):
    engine, _, _ = world
    monkeypatch.setenv("MLKIT_NOW", NOW.isoformat())
    data = fraud_overview(engine)
    assert data["anchor"] == NOW and data["as_of"] is None
    for name, span in WINDOWS.items():
        expected = sql_counts(engine, NOW - span, NOW)
        window = data["windows"][name]
        assert window["counts"] == {d: expected.get(d, 0) for d in DECISIONS}, name
        assert window["unscored"] == expected.get(None, 0), name
        assert window["orders"] == sum(expected.values()), name
    one_hour = data["windows"]["1h"]
    assert one_hour["orders"] == LIVE_SCORED + LIVE_UNSCORED
    assert one_hour["unscored"] == LIVE_UNSCORED
    assert data["windows"]["7d"]["orders"] > data["windows"]["24h"]["orders"]
    # The hourly series adds up to the 7 d window, hour by hour.
    assert sum(h["orders"] for h in data["hourly"]) == data["windows"]["7d"]["orders"]
    assert data["hourly"][-1]["hour"] == NOW.replace(minute=0)


async def test_the_dashboard_shows_them(world, monkeypatch):
    from mlkit.dashboard.app import Dashboard

    engine, url, _ = world
    monkeypatch.setenv("MLKIT_NOW", NOW.isoformat())
    app = Dashboard(make_engine(url, check=False), None, 0.5)
    async with app.run_test(size=(160, 48)) as pilot:
        while app.refreshes < 1:
            await pilot.pause(0.05)
        console = Console(width=200, record=True, file=io.StringIO())
        console.print(app.query_one("#fraud").content)
        lines = {line.split()[0]: line for line in console.export_text().splitlines()[1:]}
        assert "windows end 11-30 23:30:00" in app.query_one("#left").border_title
        for name, span in WINDOWS.items():
            expected = sql_counts(engine, NOW - span, NOW)
            total = sum(expected.values())
            cells = lines[name].split()
            assert cells[1] == f"{total:,}", lines[name]
            figures = [f"{expected.get(d, 0):,}" for d in DECISIONS]
            assert cells[-7:-3] == figures, lines[name]
            flagged = expected.get("BLOCKED", 0) + expected.get("MANUAL_REVIEW", 0)
            scored = total - expected.get(None, 0)
            assert cells[-3] == f"{flagged / scored:.2%}", lines[name]
            assert cells[-2:] == [f"{NOW - span:%m-%d}", f"{NOW - span:%H:%M}"], lines[name]
        assert f"({LIVE_UNSCORED} new)" in lines["1h"]
        await pilot.press("q")


def test_signal_prod_is_reported_by_status_and_the_dashboard_alike(world, monkeypatch):
    from mlkit.toolkit.registry import promote
    from mlkit.toolkit.status import family_status

    engine, url, env = world
    promote(engine, "signal-BTCUSDT", 1, "prod", reason="test")
    info = family_status(engine, bandit=False)["signal"]
    assert info["is_trained"] and info["prod_symbols"] == {"BTCUSDT": 1}
    assert info["last_training"] is not None and info["state"] != "untrained"
    assert info["symbols"]["BTCUSDT"]["prod"] == 1
    shown = mlkit(url, env, "status").stdout
    signal = shown[shown.index("signal") :]
    assert "last training │ never" not in signal and "untrained" not in signal
    assert "BTCUSDT" in signal and "prod v1" in signal


def test_a_blocked_order_opens_with_its_models_own_contributions(world, monkeypatch):
    """The drill-down of a blocked order: its decision, its wallet's orders, and the
    contributions of the model that scored it; XGBoost's (pred_contribs) for the XGBoost
    version, in the order of their size."""
    from mlkit.toolkit.config import load_config
    from mlkit.toolkit.drilldown import contributions, order_detail
    from mlkit.toolkit.registry import resolve

    engine, url, env = world
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = load_config(database_url=url)
    p = schema.fraud_predictions
    with engine.connect() as conn:
        order_id = conn.execute(
            sa.select(p.c.order_id).where(p.c.decision == "BLOCKED").order_by(p.c.id.desc())
        ).first()[0]
    detail = order_detail(engine, order_id, config)
    assert detail["prediction"]["decision"] == "BLOCKED"
    assert detail["contributions"], detail["contributions_note"]
    assert any(h["order_id"] == order_id for h in detail["wallet_history"])
    xgboost = next(
        mv
        for mv in (resolve(engine, f"fraud:{v}") for v in (1, 2))
        if mv.params["model"] == "xgboost"
    )
    with engine.connect() as conn:
        features = conn.execute(
            sa.select(schema.fraud_features).where(schema.fraud_features.c.order_id == order_id)
        ).one()
    top, unit = contributions(engine, xgboost.ref, features, config)
    sizes = [abs(c["contribution"]) for c in top]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > 0 and "log-odds" in unit


def test_after_a_kpi_refresh_and_a_rescore_the_windows_still_equal_the_sql_counts(
    world, monkeypatch
):
    """kpi refresh keeps the hours (PostgreSQL); then an order is re-scored BLOCKED and two
    more come in: the windows, the kept hours and the live ones together, still equal the
    SQL counts. Runs last: it changes the world."""
    engine, url, env = world
    monkeypatch.setenv("MLKIT_NOW", NOW.isoformat())
    mlkit(url, env, "kpi", "refresh")
    p = schema.fraud_predictions
    with engine.begin() as conn:
        order_id = conn.execute(
            sa.select(schema.orders.c.order_id)
            .where(schema.orders.c.created_at < NOW - timedelta(days=2))
            .order_by(schema.orders.c.created_at.desc())
            .limit(1)
        ).scalar()
        conn.execute(
            p.insert().values(
                order_id=order_id,
                fraud_score=0.999,
                decision="BLOCKED",
                model_version="fraud:9",
                created_at=NOW,
            )
        )
    add_orders(engine, 2, minutes_ago=3)
    data = fraud_overview(engine)
    for name, span in WINDOWS.items():
        expected = sql_counts(engine, NOW - span, NOW)
        assert data["windows"][name]["counts"] == {d: expected.get(d, 0) for d in DECISIONS}
        assert data["windows"][name]["orders"] == sum(expected.values()), name
    kept = data["source"]["kept_hours"]
    assert kept > 100 if engine.dialect.name == "postgresql" else kept == 0
