"""`mlkit dashboard`: fraud, pricing bandit and training status, live in the terminal.

Each poll reads every panel in a daemon thread awaited by a cancellable Textual worker, and the
next poll is scheduled only after the last one returned, so a slow database never piles queries
up; its queries are bounded by the source's timeouts and watchdog, and quitting never waits for
them. Widgets only render what they are given (dashboard.render, dashboard.charts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from . import render
from .screens import ArmScreen, FamilyScreen, HelpScreen, OrderScreen

if TYPE_CHECKING:
    from mlkit.toolkit.db import Engine
    from mlkit.toolkit.monitor import DashboardSource, Snapshot

MIN_SIZE = (80, 24)
ARM_HISTORY = 240  # refreshes kept for the arm charts


def leave_now(code: int = 0) -> None:
    """End the process as soon as the app has quit, without the interpreter's teardown.

    After the last frame, finalising some 700 modules took 0.4-0.7 s more (a poll thread may
    also still be stuck on a database that stopped answering): `q` gives the shell back only
    when the process ends. The terminal is already restored; stdio and logs are flushed."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


class Dashboard(App):
    TITLE = "mlkit dashboard"
    HORIZONTAL_BREAKPOINTS: ClassVar = [(0, "-tiny"), (MIN_SIZE[0], "-narrow"), (150, "-wide")]
    VERTICAL_BREAKPOINTS: ClassVar = [(0, "-short"), (MIN_SIZE[1], "-tall")]
    CSS = """
    #top { height: auto; max-height: 2; background: $boost; padding: 0 1; }
    #alerts { height: auto; max-height: 4; display: none; }
    #alerts.firing { display: block; }
    #too-small { display: none; content-align: center middle; height: 1fr; }
    Screen.-tiny #too-small, Screen.-short #too-small { display: block; }
    Screen.-tiny #body, Screen.-short #body { display: none; }
    #body { scrollbar-gutter: stable; }
    #columns { height: auto; }
    .panel { border: round $primary; padding: 0 1; height: auto; }
    .panel Static { height: auto; }
    #left { width: 3fr; height: auto; }
    #right { width: 2fr; height: auto; }
    Screen.-narrow #columns { layout: vertical; }
    Screen.-narrow #left, Screen.-narrow #right { width: 1fr; }
    #charts { height: 12; display: none; }
    #charts.shown { display: block; }
    Screen.-narrow #charts { layout: vertical; height: 22; }
    Screen.-wide.-tall #charts { height: 1fr; min-height: 12; max-height: 24; }
    FraudRateChart, DecisionsChart { height: 1fr; }
    #arm-chart { height: 10; display: none; }
    #arm-chart.shown { display: block; }
    DataTable { height: auto; max-height: 12; }
    Screen.-wide.-tall #blocked { max-height: 30; }
    .error { color: $error; text-style: bold; }
    """
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("r", "refresh", "Refresh"),
        Binding("p", "pause", "Pause"),
        Binding("p", "resume", "Resume"),
        Binding("w", "span", "24h/7d"),
        Binding("enter", "open", "Open"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(
        self,
        database: Engine | str | Callable[[], Engine],
        redis_url: str | None,
        refresh: float = 2.0,
        config=None,
        timeout: float | None = None,
    ):
        """`database`: an engine, a URL, or a function returning an engine, called by the
        first poll: SQLAlchemy and the toolkit's queries are imported off the first paint."""
        super().__init__()
        self.database = database
        self.redis_url = redis_url
        self.timeout = timeout
        self.source: DashboardSource | None = None  # made by the first poll's thread
        self.connect_error: Exception | None = None  # why no source could be made
        self.config = config
        self.thresholds: list[float] = []
        self.refresh_seconds = refresh
        self.paused = False
        self.polling_since: float | None = None
        self.snapshot: Snapshot | None = None
        self.shown_at: float | None = None
        self.refreshes = 0
        self.span = "24h"
        self.arm_history: list = []
        self._timer = None
        self._charts: tuple | None = None  # fraud rate, decisions, arm shares

    def compose(self) -> ComposeResult:
        yield Static(id="top")
        yield Static(id="alerts")
        yield Static(
            f"the terminal is too small: the dashboard needs {MIN_SIZE[0]}x{MIN_SIZE[1]}",
            id="too-small",
        )
        with VerticalScroll(id="body"), Horizontal(id="columns"):
            with Vertical(id="left", classes="panel"):
                yield Static("loading…", id="fraud")
                yield Horizontal(id="charts")  # its charts come with the first data
                yield Static("latest blocked", id="blocked-title")
                yield DataTable(id="blocked", cursor_type="row", zebra_stripes=True)
            with Vertical(id="right"):
                with Vertical(id="bandit-box", classes="panel"):
                    yield Static("loading…", id="bandit")
                    yield DataTable(id="arms", cursor_type="row")
                with Vertical(id="training-box", classes="panel"):
                    yield DataTable(id="training", cursor_type="row")
                    yield Static("", id="training-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#left").border_title = "Fraud"
        self.query_one("#bandit-box").border_title = "Pricing bandit"
        self.query_one("#training-box").border_title = "Training"
        _columns(self.query_one("#blocked", DataTable), render.BLOCKED_COLUMNS)
        _columns(self.query_one("#arms", DataTable), render.ARM_COLUMNS)
        _columns(self.query_one("#training", DataTable), render.TRAINING_COLUMNS)
        self._render_top()
        self.clock = self.set_interval(1.0, self._render_top)  # the header's "s ago"
        # After the first frame: the first poll's imports would hold the GIL against it.
        self.call_after_refresh(self.poll)

    # ------------------------------------------------------------ polling

    def poll(self) -> None:
        if self.polling_since is not None:
            return
        self.polling_since = time.monotonic()
        self.read_snapshot()

    @work(exclusive=True, group="poll", exit_on_error=False)
    async def read_snapshot(self) -> None:
        """The source's read in a daemon thread (never joined: quitting does not wait on a
        database), awaited here, where cancelling the worker abandons it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()

        def deliver(result, error) -> None:
            if not future.done():
                future.set_exception(error) if error else future.set_result(result)

        def read() -> None:
            try:
                result, error = self._connected().snapshot(), None
            except BaseException as exc:
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # the app is gone
                loop.call_soon_threadsafe(deliver, result, error)

        threading.Thread(target=read, name="mlkit-dashboard-poll", daemon=True).start()
        try:
            snapshot = await future
        except Exception as exc:
            if self.source is None:  # no source to read (a URL no driver takes): say why
                self.connect_error = exc
                self.exit(return_code=1)
                return
            raise
        finally:
            self.polling_since = None
        self.show(snapshot)

    def _connected(self) -> DashboardSource:
        """The source, made on the first poll (in its thread: imports and engine set-up stay
        off the event loop)."""
        if self.source is None:
            from mlkit.toolkit.monitor import TIMEOUT_SECONDS, DashboardSource, fraud_thresholds

            database = self.database() if callable(self.database) else self.database
            if self.config is not None:
                self.thresholds = fraud_thresholds(self.config.get("alerts.rules"))
            self.source = DashboardSource(database, self.redis_url, self.timeout or TIMEOUT_SECONDS)
        return self.source

    def show(self, snapshot: Snapshot) -> None:
        self._mount_charts()
        self.snapshot = snapshot
        self.shown_at = time.monotonic()
        self.refreshes += 1
        self._render_fraud(snapshot)
        self._render_bandit(snapshot)
        self._render_training(snapshot)
        self._render_top()
        if not self.paused:
            self._timer = self.set_timer(self.refresh_seconds, self.poll)

    def _mount_charts(self) -> None:
        """The charts, mounted with the first data: they are hidden until there is something
        to plot, so plotext's import (a tenth of the start-up) stays out of the first paint."""
        if self._charts is not None:
            return
        from .charts import ArmSharesChart, DecisionsChart, FraudRateChart

        self._charts = (
            FraudRateChart(id="rate-chart"),
            DecisionsChart(id="decisions-chart"),
            ArmSharesChart(id="arm-chart"),
        )
        self.query_one("#charts").mount(*self._charts[:2])
        self.query_one("#bandit-box").mount(self._charts[2])

    # ------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "pause":
            return not self.paused
        if action == "resume":
            return self.paused
        return True

    def action_refresh(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self.poll()

    def action_pause(self) -> None:
        self.paused = True
        if self._timer is not None:
            self._timer.stop()
        self.refresh_bindings()
        self._render_top()

    def action_resume(self) -> None:
        self.paused = False
        self.refresh_bindings()
        self.poll()
        self._render_top()

    def action_span(self) -> None:
        self.span = "7d" if self.span == "24h" else "24h"
        if self.snapshot is not None:
            self._render_fraud(self.snapshot)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_open(self) -> None:
        focused = self.focused
        if isinstance(focused, DataTable) and focused.row_count:
            self._open(focused, focused.cursor_row)

    async def action_quit(self) -> None:
        if self.source is not None:
            self.source.abort()  # reads in flight end now; their thread is a daemon anyway
        self.exit()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self._open(event.data_table, event.cursor_row)

    def _open(self, table: DataTable, row: int) -> None:
        key = table.coordinate_to_cell_key((row, 0)).row_key.value
        if table.id == "blocked":
            self.push_screen(OrderScreen(self.source.engine, int(key), self.config))
        elif table.id == "training" and self.snapshot and self.snapshot.training.data:
            self.push_screen(
                FamilyScreen(self.source.engine, key, self.snapshot.training.data[key])
            )
        elif table.id == "arms":
            self.push_screen(ArmScreen(key, self.arm_history))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Refresh now", "Read every panel again", self.action_refresh)
        if self.paused:
            yield SystemCommand("Resume polling", "Poll again", self.action_resume)
        else:
            yield SystemCommand("Pause polling", "Stop polling", self.action_pause)
        yield SystemCommand("Chart span 24 h / 7 d", "Switch the fraud charts", self.action_span)
        yield SystemCommand(
            "Open the selected row", "Order, family or arm in detail", self.action_open
        )

    def on_unmount(self) -> None:
        # Closing a connection to a server that stopped answering may wait: never here.
        if self.source is not None:
            threading.Thread(target=self.source.close, daemon=True).start()

    # ------------------------------------------------------------ rendering

    def _render_top(self) -> None:
        s = self.snapshot
        now = time.monotonic()
        self.query_one("#top", Static).update(
            render.header(
                self.source.label if self.source else "connecting…",
                s.database_state if s else "…",
                s.redis_state if s else "…",
                s.taken_at if s else None,
                now - self.shown_at if self.shown_at else None,
                2 * self.refresh_seconds + (self.source.timeout if self.source else 0) + 1,
                now - self.polling_since if self.polling_since is not None else None,
                self.paused,
                self.refresh_seconds,
            )
        )

    def _panel_error(self, selector: str, error: str | None) -> bool:
        if error:
            self.query_one(selector, Static).update(Text(error, style="bold red"))
        return bool(error)

    def _render_fraud(self, s: Snapshot) -> None:
        box = self.query_one("#left")
        alerts = self.query_one("#alerts", Static)
        firing = (s.fraud.data or {}).get("alerts") or []
        alerts.set_class(bool(firing), "firing")
        alerts.update(render.alert_banner(firing))
        data = s.fraud.data or {}
        self.query_one("#charts").set_class(bool(data.get("orders")), "shown")
        if self._panel_error("#fraud", s.fraud.error):
            box.border_title = "Fraud"
            return
        box.border_title = render.fraud_title(data)
        if not data["orders"]:
            self.query_one("#fraud", Static).update("no orders yet")
            return
        narrow = self.size.width < 150
        self.query_one("#fraud", Static).update(render.fraud_windows(data, self.thresholds, narrow))
        hourly = data["hourly"][-24:] if self.span == "24h" else data["hourly"]
        threshold = self.thresholds[0] if self.thresholds else None
        rate_chart, decisions_chart, _ = self._charts
        rate_chart.show(hourly, threshold, self.span)
        decisions_chart.show(hourly, self.span)
        rows = render.blocked_rows(data)
        self.query_one("#blocked-title", Static).update(
            f"latest blocked ({len(rows)}) · enter opens an order"
        )
        _fill(self.query_one("#blocked", DataTable), {row[0]: row for row in rows})

    def _render_bandit(self, s: Snapshot) -> None:
        if self._panel_error("#bandit", s.bandit.error):
            return
        data = s.bandit.data
        self.query_one("#bandit", Static).update(
            render.bandit_caption(data, s.redis_state, s.taken_at)
        )
        table = self.query_one("#arms", DataTable)
        _fill(table, {arm: render.bandit_cells(arm, a) for arm, a in data["arms"].items()})
        if data["trained"]:
            self.arm_history = [*self.arm_history, (s.taken_at, data["arms"])][-ARM_HISTORY:]
        chart = self._charts[2]
        chart.set_class(bool(self.arm_history), "shown")
        chart.show(self.arm_history)

    def _render_training(self, s: Snapshot) -> None:
        if self._panel_error("#training-detail", s.training.error):
            return
        rows = render.training_rows(s.training.data)
        _fill(self.query_one("#training", DataTable), {row[0]: row for row in rows})
        self.query_one("#training-detail", Static).update(render.training_detail(s.training.data))


def _columns(table: DataTable, widths: dict[str, int]) -> None:
    for label, width in widths.items():
        table.add_column(label, width=width)


def _fill(table: DataTable, rows: dict) -> None:
    """Replace the rows (by key), keeping the cursor on the same position."""
    keep = table.cursor_row
    table.clear()
    for key, row in rows.items():
        table.add_row(*row, key=str(key))
    if rows:
        table.move_cursor(row=min(keep, len(rows) - 1))
