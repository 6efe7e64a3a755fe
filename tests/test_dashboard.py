"""`mlkit dashboard` driven by Textual's pilot against real PostgreSQL and Redis."""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import time
from datetime import datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import drop_database, make_database
from rich.console import Console

from mlkit.toolkit import schema
from mlkit.toolkit.config import load_config
from mlkit.toolkit.db import init_schema, make_engine, refresh_kpi
from mlkit.toolkit.demo.seed import seed_demo
from mlkit.toolkit.monitor import DECISIONS, FLAGGED
from mlkit.toolkit.pricing.state import BanditStore
from mlkit.toolkit.pricing.train import train_bandit

REFRESH = 0.3


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """PostgreSQL with a demo world, predictions for its last week, a trained bandit."""
    url = make_database("postgresql", tmp_path_factory.mktemp("pg"))
    engine = make_engine(url)
    init_schema(engine)
    seed_demo(
        engine,
        orders=12000,  # enough offers for the bandit's promotion gate
        days=30,
        seed=21,
        families=("fraud", "pricing"),
        start=datetime(2026, 1, 1),
    )
    # kpi_hourly refreshed before the scoring, as after a cron refresh: the panel must not
    # trust it (its figures are computed live).
    refresh_kpi(engine)
    o = schema.orders
    with engine.begin() as conn:
        orders = pd.DataFrame(conn.execute(sa.select(o.c.order_id, o.c.created_at)).all())
        newest = orders["created_at"].max()
        recent = orders[orders["created_at"] > newest - timedelta(days=7)]
        decisions = [
            DECISIONS[::-1][i % 7] if i % 7 < 4 else "APPROVED" for i in recent["order_id"]
        ]
        conn.execute(
            schema.fraud_predictions.insert(),
            [
                {
                    "order_id": int(i),
                    "fraud_score": 0.5,
                    "decision": d,
                    "model_version": "fraud:1",
                    "created_at": t,
                }
                for i, d, t in zip(recent["order_id"], decisions, recent["created_at"], strict=True)
            ],
        )
    expected = pd.Series(decisions).value_counts()
    yield engine, url, expected
    engine.dispose()
    drop_database(url)


def text_of(app, selector: str) -> str:
    """What a Static shows, or a DataTable's rows (cells separated by spaces), as text."""
    from textual.widgets import DataTable

    widget = app.query_one(selector)
    if isinstance(widget, DataTable):
        return "\n".join(
            " ".join(str(cell) for cell in widget.get_row_at(i)) for i in range(widget.row_count)
        )
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(widget.content)
    return console.export_text()


def screen_text(app) -> str:
    """The whole screen as plain text."""
    width, height = app.size
    console = Console(width=width, height=height, record=True, file=io.StringIO())
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text()


async def wait_for_refresh(app, pilot, after: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while app.refreshes <= after:
        assert time.monotonic() < deadline, "no refresh arrived"
        await pilot.pause(0.05)


async def test_panels_show_the_seeded_figures_and_follow_updates(seeded, redis_url, monkeypatch):
    from mlkit.dashboard.app import Dashboard

    engine, url, expected = seeded
    monkeypatch.setenv("MLKIT_HOME", "home")
    config = load_config(database_url=url)
    import redis as redis_lib

    store = BanditStore(engine, redis_lib.Redis.from_url(redis_url))
    train_bandit(engine, config, store.redis, since="365d", force=True)

    app = Dashboard(make_engine(url, check=False), redis_url, REFRESH)
    async with app.run_test(size=(180, 50)) as pilot:
        await wait_for_refresh(app, pilot, 0)
        fraud = text_of(app, "#fraud")
        seven_days = next(line for line in fraud.splitlines() if line.strip().startswith("7d"))
        for decision in DECISIONS:
            assert f"{int(expected.get(decision, 0)):,}" in seven_days
        flagged = sum(int(expected.get(d, 0)) for d in FLAGGED) / int(expected.sum())
        assert f"{flagged:.2%}" in seven_days
        title = app.query_one("#left").border_title
        assert "windows end at the newest order" in title  # the demo's orders are older
        assert "latest blocked" in text_of(app, "#blocked-title")
        blocked = text_of(app, "#blocked")
        assert len(blocked.splitlines()) == min(20, int(expected.get("BLOCKED", 0)))

        bandit = text_of(app, "#arms")
        states = store.read_database()
        for arm, state in states.items():
            assert arm in bandit and f"{state.pulls:,}" in bandit, bandit
        best = max(states, key=lambda a: states[a].mean)
        assert f"{best} *" in bandit and "from redis" in text_of(app, "#bandit")

        training = text_of(app, "#training")
        pricing = next(line for line in training.splitlines() if line.startswith("pricing"))
        assert "v1" in pricing and pricing.endswith("ok"), pricing
        assert "untrained" in next(line for line in training.splitlines() if "recommender" in line)
        assert "Redis ok" in text_of(app, "#top")

        # A reward recorded elsewhere shows at the next refresh.
        before = states["early_bird"].pulls
        store.record("early_bird", 1.0)
        await wait_for_refresh(app, pilot, app.refreshes)
        await wait_for_refresh(app, pilot, app.refreshes)
        assert f"{before + 1:,}" in text_of(app, "#arms")

        # p pauses polling and the footer offers Resume; p again resumes.
        assert "Pause" in screen_text(app).splitlines()[-1]
        await pilot.press("p")
        await pilot.pause(0.1)
        paused_at = app.refreshes
        await pilot.pause(REFRESH * 4)
        assert app.refreshes == paused_at and "PAUSED" in text_of(app, "#top")
        footer = screen_text(app).splitlines()[-1]
        assert "Resume" in footer and "Pause" not in footer, footer
        await pilot.press("p")
        await wait_for_refresh(app, pilot, paused_at)
        assert "Pause" in screen_text(app).splitlines()[-1]

        await pilot.press("question_mark")
        await pilot.pause(0.1)
        assert "HelpScreen" in type(app.screen).__name__
        await pilot.press("x")
        await pilot.pause(0.1)

        await pilot.press("q")
        await pilot.pause(0.2)
    assert not app.is_running


async def test_another_databases_bandit_in_the_same_redis_is_never_shown(
    seeded, redis_url, tmp_path, monkeypatch
):
    """Two databases share a Redis index: the one whose stamp the values do not carry reads
    its own arms from its database and says why."""
    import redis as redis_lib

    from mlkit.dashboard.app import Dashboard
    from mlkit.toolkit.pricing.history import ARMS
    from mlkit.toolkit.pricing.state import ArmState

    engine, url, _ = seeded
    monkeypatch.setenv("MLKIT_HOME", "home")
    client = redis_lib.Redis.from_url(redis_url)
    train_bandit(engine, load_config(database_url=url), client, since="365d", force=True)
    theirs = BanditStore(engine, client).read()
    assert theirs[1] == "redis"

    other = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    init_schema(other)
    BanditStore(other).save({arm: ArmState(arm, pulls=7, reward_sum=3.0) for arm in ARMS})
    app = Dashboard(other, redis_url, REFRESH)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for_refresh(app, pilot, 0)
        caption = text_of(app, "#bandit")
        assert "another database's bandit: not shown" in caption and "from database" in caption
        arms = text_of(app, "#arms")
        assert all(f"{arm} " in arms for arm in ARMS)
        assert all(" 7 25.0% " in line for line in arms.splitlines()), arms
        await pilot.press("q")
    # Read only: the dashboard left the other database's values in Redis alone.
    assert BanditStore(engine, client).read() == theirs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [
            shutil.which("redis-server"),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis as redis_lib

    client = redis_lib.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return server
        except redis_lib.RedisError:
            time.sleep(0.05)
    raise AssertionError("private redis-server did not start")


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary")
async def test_redis_stopped_degrades_the_bandit_panel_and_it_recovers(seeded):
    from mlkit.dashboard.app import Dashboard

    _, url, _ = seeded
    port = free_port()
    server = start_redis(port)
    app = Dashboard(make_engine(url, check=False), f"redis://127.0.0.1:{port}/0", REFRESH)
    try:
        async with app.run_test(size=(180, 50)) as pilot:
            await wait_for_refresh(app, pilot, 0)
            assert "Redis ok" in text_of(app, "#top")
            server.kill()
            server.wait()
            await wait_for_refresh(app, pilot, app.refreshes)
            await wait_for_refresh(app, pilot, app.refreshes)
            assert "Redis disconnected, retrying" in text_of(app, "#top")
            caption = text_of(app, "#bandit")
            assert "from database" in caption and "Redis disconnected" in caption, caption
            assert "baseline" in text_of(app, "#arms")
            server = start_redis(port)
            await wait_for_refresh(app, pilot, app.refreshes)
            await wait_for_refresh(app, pilot, app.refreshes)
            assert "Redis ok" in text_of(app, "#top")
            await pilot.press("q")
    finally:
        server.kill()


async def test_sqlite_without_redis_and_a_database_that_goes_away(tmp_path):
    from mlkit.dashboard.app import Dashboard

    path = tmp_path / "mlkit.db"
    setup = make_engine(f"sqlite:///{path}")
    init_schema(setup)
    setup.dispose()  # its last connection checkpoints the WAL: the schema is in the file we move
    app = Dashboard(make_engine(f"sqlite:///{path}", check=False), None, REFRESH)
    async with app.run_test(size=(180, 50)) as pilot:
        await wait_for_refresh(app, pilot, 0)
        assert "no orders yet" in text_of(app, "#fraud")
        assert "Redis disabled" in text_of(app, "#bandit")
        assert "Redis disabled" in text_of(app, "#top")
        path.rename(tmp_path / "away.db")
        # A server going away also ends its connections; SQLite's pooled ones would keep
        # reading the moved file, so drop them as a server would.
        app.source.engine.dispose()
        await wait_for_refresh(app, pilot, app.refreshes)
        await wait_for_refresh(app, pilot, app.refreshes)
        assert "database disconnected, retrying" in text_of(app, "#fraud")
        assert str(path) in text_of(app, "#fraud")  # where, and why
        assert "database disconnected, retrying" in text_of(app, "#training-detail")
        assert "down" in text_of(app, "#top")
        path.unlink(missing_ok=True)  # the empty file SQLite made meanwhile
        (tmp_path / "away.db").rename(path)
        await wait_for_refresh(app, pilot, app.refreshes)
        await wait_for_refresh(app, pilot, app.refreshes)
        assert "no orders yet" in text_of(app, "#fraud")
        await pilot.press("q")


def test_the_command_opens_the_configured_database_and_quits_on_q(
    seeded, cli, redis_url, monkeypatch
):
    """`mlkit dashboard` as a user starts it, headless: its --database reaches the panels."""
    from mlkit.dashboard.app import Dashboard

    _, url, _ = seeded
    shown = {}

    async def look_and_quit(pilot) -> None:
        await wait_for_refresh(pilot.app, pilot, 0)
        shown["top"] = text_of(pilot.app, "#top")
        shown["fraud"] = pilot.app.query_one("#left").border_title
        await pilot.press("q")

    run = Dashboard.run
    monkeypatch.setattr(
        Dashboard,
        "run",
        lambda app: run(app, headless=True, size=(180, 50), auto_pilot=look_and_quit),
    )
    # In-process, the command must not end the process the way it ends `mlkit dashboard`.
    left = []
    monkeypatch.setattr("mlkit.dashboard.app.leave_now", left.append)
    result = cli("--redis", redis_url, "dashboard", "--database", url, "--refresh", str(REFRESH))
    assert result.exit_code == 0, result.output
    assert left == [0]
    assert url.rsplit("/", 1)[-1] in shown["top"] and "Redis ok" in shown["top"]
    assert "windows end at the newest order" in shown["fraud"]


def test_the_command_checks_its_options_and_the_config(cli):
    fast = cli("dashboard", "--refresh", "0.1")
    assert fast.exit_code == 1 and fast.stderr.startswith("error: --refresh 0.1 is too fast")
    for args in (["--database", "oracle://x@y/z", "dashboard"], ["dashboard", "--database", "x"]):
        result = cli(*args)
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith("error: --database: "), result.stderr
