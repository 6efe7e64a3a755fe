"""The dashboard never hangs: a PostgreSQL that stops answering (a proxy that accepts and then
stops forwarding) is shown within one refresh interval plus the timeout, with its host and the
cause; `q` and ctrl+c exit within 1 s while a read hangs (as a real process, whose read would
hang for 30 s: the pilot's reads end at its 1 s timeout, so a bound there would time the
watchdog, not the quit)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import drop_database, make_database
from sqlalchemy.engine import make_url
from stalling_proxy import StallingProxy

from mlkit.toolkit.db import init_schema, make_engine

REFRESH = 0.3
TIMEOUT = 1.0


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    url = make_database("postgresql", tmp_path_factory.mktemp("pg"))
    engine = make_engine(url)
    init_schema(engine)
    engine.dispose()
    yield url
    drop_database(url)


@pytest.fixture
def proxied(postgres):
    parsed = make_url(postgres)
    proxy = StallingProxy((parsed.host or "127.0.0.1", parsed.port or 5432))
    yield proxy, parsed.set(host="127.0.0.1", port=proxy.port)
    proxy.close()


def top(app) -> str:
    return str(app.query_one("#top").content)


async def wait_until(pilot, condition, timeout: float) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "condition not met in time"
        await pilot.pause(0.05)
    return time.monotonic() - started


@pytest.mark.parametrize("key", ["q", "ctrl+c"])
async def test_a_database_that_stops_answering_is_shown_and_quitting_still_works(proxied, key):
    from mlkit.dashboard.app import Dashboard

    proxy, url = proxied
    app = Dashboard(make_engine(url, check=False), None, REFRESH, timeout=TIMEOUT)
    async with app.run_test(size=(120, 40)) as pilot:
        # Answering first (on a loaded machine the first connect may outlast the 1 s timeout
        # once; the dashboard then shows it down and recovers on the next poll).
        await wait_until(pilot, lambda: app.snapshot and app.snapshot.database_state == "ok", 15)
        assert " ok " in top(app) and app.snapshot.fraud.error is None
        proxy.stall()
        shown = await wait_until(
            pilot,
            lambda: app.snapshot.database_state == "down",
            # one refresh interval, the timeout and the watchdog's margin, the reconnect's
            # own connect timeout (libpq's minimum is 2 s), and slack
            REFRESH + TIMEOUT + 1.0 + 2.0 + 1.5,
        )
        assert shown > 0
        error = app.snapshot.fraud.error
        assert error.startswith("database not answering") and f"127.0.0.1:{proxy.port}" in error
        assert "down" in top(app)
        fraud = str(app.query_one("#fraud").content)
        assert "not answering" in fraud and str(proxy.port) in fraud
        # A poll is stuck on the proxy now or soon: the key still ends the app (how fast is
        # measured on a real process below, where the stuck read would outlive the bound).
        await wait_until(pilot, lambda: app.polling_since is not None, 5)
        await pilot.pause(0.3)
        await pilot.press(key)
        await wait_until(pilot, lambda: not app.is_running, 5)
    proxy.resume()


async def test_the_dashboard_recovers_when_the_database_answers_again(proxied):
    from mlkit.dashboard.app import Dashboard

    proxy, url = proxied
    app = Dashboard(make_engine(url, check=False), None, REFRESH, timeout=TIMEOUT)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.refreshes >= 1, 15)
        proxy.stall()
        await wait_until(pilot, lambda: app.snapshot.database_state == "down", 10)
        proxy.resume()
        await wait_until(pilot, lambda: app.snapshot.database_state == "ok", 10)
        assert str(app.query_one("#fraud").content) == "no orders yet"
        await pilot.press("q")


PROCESS = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    from stalling_proxy import StallingProxy
    from sqlalchemy.engine import make_url
    from mlkit.dashboard.app import Dashboard, leave_now
    from mlkit.toolkit.db import make_engine

    target = make_url({url!r})
    proxy = StallingProxy((target.host, target.port))
    app = Dashboard(make_engine(target.set(host="127.0.0.1", port=proxy.port), check=False),
                    None, {refresh}, timeout={timeout})

    async def stall_then_quit(pilot):
        while app.refreshes < 1:
            await pilot.pause(0.05)
        proxy.stall()
        await pilot.pause({refresh} + 0.5)
        while app.polling_since is None:  # a poll stuck on the proxy
            await pilot.pause(0.05)
        await pilot.pause(0.2)
        print("pressed", time.monotonic(), flush=True)
        await pilot.press({key!r})

    app.run(headless=True, size=(100, 30), auto_pilot=stall_then_quit)
    print("returned", time.monotonic(), flush=True)
    leave_now(app.return_code or 0)  # as `mlkit dashboard` ends
    """
)


@pytest.mark.parametrize("key", ["q", "ctrl+c"])
def test_the_process_exits_within_a_second_while_a_read_hangs(postgres, key):
    script = PROCESS.format(
        tests=str(Path(__file__).parent), url=postgres, refresh=REFRESH, timeout=30.0, key=key
    )
    # A 30 s timeout: the read is still hanging, unaborted by the watchdog, when q is pressed.
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    said = {}
    for line in process.stdout:
        word, _, at = line.partition(" ")
        said[word] = float(at)
        if word == "returned":
            break
    assert "pressed" in said, process.stderr.read()
    process.wait(timeout=10)
    exited = time.monotonic() - said["pressed"]
    assert process.returncode == 0, process.stderr.read()
    app_ended = said.get("returned", float("nan")) - said["pressed"]
    assert exited < 1.0, f"exited {exited:.2f} s after {key} (app ended at {app_ended:.2f} s)"
