"""`mlkit dashboard`: fraud, pricing bandit and training status, live in the terminal.

Reads run in a thread worker and the next poll is scheduled only after the last one returned, so a
slow database never piles queries up; widgets only render what they are given.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Sparkline, Static

from mlkit.toolkit.db import Engine, masked
from mlkit.toolkit.formats import version_label
from mlkit.toolkit.monitor import DECISIONS, DashboardSource, Panel, Snapshot

HELP = """mlkit dashboard

r  refresh now
p  pause / resume polling
q  quit
?  this help
ctrl+p  command palette

Fraud: decisions and the flagged share (BLOCKED + MANUAL_REVIEW) of orders
placed in the last 1 h / 24 h / 7 d, hourly flagged share, latest blocked
orders, firing alerts.
Bandit: pulls, share, mean reward and its 90 % interval per arm (from Redis,
from the database when Redis is down). Training: per family versions, last
run, status, cooldown, last error.

Press any key to close."""


class HelpScreen(ModalScreen):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Static { width: 80; height: auto; border: round $accent; padding: 1 2;
                          background: $panel; }
    """

    def compose(self) -> ComposeResult:
        yield Static(HELP)

    def on_key(self) -> None:
        self.dismiss()


class Dashboard(App):
    TITLE = "mlkit dashboard"
    CSS = """
    #top { height: 1; background: $boost; padding: 0 1; }
    Grid { grid-size: 2 2; grid-columns: 3fr 2fr; grid-rows: 1fr 1fr; }
    .panel { border: round $primary; padding: 0 1; }
    #fraud-box { row-span: 2; }
    #fraud-spark { height: 3; margin: 1 0; }
    """
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("r", "refresh", "Refresh"),
        Binding("p", "pause", "Pause"),
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
    ]

    def __init__(self, engine: Engine, redis_url: str | None, refresh: float = 2.0):
        super().__init__()
        self.source = DashboardSource(engine, redis_url)
        self.database_label = masked(engine)
        self.refresh_seconds = refresh
        self.paused = False
        self.polling = False
        self.snapshot: Snapshot | None = None
        self.refreshes = 0
        self._timer = None

    def compose(self) -> ComposeResult:
        yield Static(id="top")
        with Grid():
            with Vertical(id="fraud-box", classes="panel"):
                yield Static("loading…", id="fraud")
                yield Sparkline([], id="fraud-spark")
                yield Static("", id="blocked")
            yield Static("loading…", id="bandit", classes="panel")
            yield Static("loading…", id="training", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#fraud-box").border_title = "Fraud"
        self.query_one("#bandit").border_title = "Pricing bandit"
        self.query_one("#training").border_title = "Training"
        self._render_top()
        self.poll()

    # ------------------------------------------------------------ polling

    def poll(self) -> None:
        if self.polling:
            return
        self.polling = True
        self.read_snapshot()

    @work(thread=True, exclusive=True, group="poll")
    def read_snapshot(self) -> None:
        snapshot = self.source.snapshot()
        self.call_from_thread(self.show, snapshot)

    def show(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.refreshes += 1
        self.polling = False
        self._render_fraud(snapshot)
        self._render_bandit(snapshot)
        self._render_training(snapshot)
        self._render_top()
        if not self.paused:
            self._timer = self.set_timer(self.refresh_seconds, self.poll)

    # ------------------------------------------------------------ actions

    def action_refresh(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self.poll()

    def action_pause(self) -> None:
        self.paused = not self.paused
        if self.paused and self._timer is not None:
            self._timer.stop()
        if not self.paused:
            self.poll()
        self._render_top()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Refresh now", "Read every panel again", self.action_refresh)
        yield SystemCommand("Pause / resume", "Stop or restart polling", self.action_pause)

    def on_unmount(self) -> None:
        self.source.close()

    # ------------------------------------------------------------ rendering

    def _render_top(self) -> None:
        s = self.snapshot
        state = "paused" if self.paused else f"every {self.refresh_seconds:g} s"
        redis = s.redis_state if s else "…"
        last = (
            f"last refresh {s.taken_at:%H:%M:%S} UTC in {s.seconds * 1000:.0f} ms"
            if s
            else "first refresh…"
        )
        self.query_one("#top", Static).update(
            f"db {self.database_label} · Redis {redis} · {state} · {last}"
        )

    def _panel_box(self, panel: Panel, selector: str) -> Static | None:
        """The panel's box to render into; None once the panel's error is shown in it."""
        box = self.query_one(selector, Static)
        if panel.error:
            box.update(Text(panel.error, style="bold red"))
            return None
        return box

    def _render_fraud(self, s: Snapshot) -> None:
        box = self._panel_box(s.fraud, "#fraud")
        if box is None:
            return
        data = s.fraud.data
        if not data["orders"]:
            box.update("no orders yet")
            return
        table = Table(
            box=None,
            expand=True,
            title_justify="left",
            title="as of " + f"{data['as_of']:%Y-%m-%d %H:%M}" if data["as_of"] else None,
        )
        table.add_column("window")
        for d in DECISIONS:
            table.add_column(d, justify="right")
        table.add_column("fraud rate", justify="right")
        for name, w in data["windows"].items():
            rate = "-" if w["fraud_rate"] is None else f"{w['fraud_rate']:.2%}"
            table.add_row(name, *[f"{w['counts'][d]:,}" for d in DECISIONS], rate)
        box.update(table)
        self.query_one("#fraud-spark", Sparkline).data = [h["fraud_rate"] for h in data["hourly"]]
        blocked = Table(box=None, expand=True, title="latest blocked", title_justify="left")
        for column in ("order", "score", "price", "wallet", "scored at"):
            blocked.add_column(column, justify="left" if column == "scored at" else "right")
        for b in data["latest_blocked"]:
            blocked.add_row(
                str(b["order_id"]),
                f"{b['fraud_score']:.3f}",
                f"{b['price']:.2f}",
                str(b["buyer_wallet_id"]),
                f"{b['created_at']:%m-%d %H:%M:%S}",
            )
        if data["alerts"]:
            blocked.add_section()
            for a in data["alerts"]:
                blocked.add_row(
                    Text(f"ALERT {a['rule']}", style="bold red"),
                    "",
                    "",
                    "",
                    f"{a['fired_at']:%m-%d %H:%M}",
                )
        self.query_one("#blocked", Static).update(blocked)

    def _render_bandit(self, s: Snapshot) -> None:
        box = self._panel_box(s.bandit, "#bandit")
        if box is None:
            return
        data = s.bandit.data
        table = Table(
            box=None, expand=True, caption=self._bandit_caption(s), caption_justify="left"
        )
        for column in ("arm", "pulls", "share", "mean", "90% interval"):
            table.add_column(column, justify="left" if column == "arm" else "right")
        for arm, a in data["arms"].items():
            style = "bold green" if a["best"] else ""
            low, high = a["interval_90"]
            table.add_row(
                Text(arm + (" *" if a["best"] else ""), style=style),
                f"{a['pulls']:,}",
                f"{a['share']:.1%}",
                f"{a['mean']:.4f}",
                f"{low:.3f}-{high:.3f}",
            )
        box.update(table)

    @staticmethod
    def _bandit_caption(s: Snapshot) -> str:
        source = s.bandit.data["source"]
        if s.redis_state == "ok":
            return f"{s.bandit.data['total_pulls']:,} pulls, live from {source}"
        return f"Redis {s.redis_state}: from the database"

    def _render_training(self, s: Snapshot) -> None:
        box = self._panel_box(s.training, "#training")
        if box is None:
            return
        table = Table(box=None, expand=True)
        for column in ("family", "prod", "cand.", "last run", "metric", "status"):
            table.add_column(column)
        for family, info in s.training.data.items():
            run = info["last_training"]
            status, style = _status(info)
            metric = _key_metric((run or {}).get("metrics") or {})
            table.add_row(
                family,
                version_label(info["prod"]),
                version_label(info["candidate"]),
                f"{run['started_at']:%m-%d %H:%M}" if run else "never",
                metric,
                Text(status, style=style),
            )
            if run and run.get("last_error") and status != "ok":
                table.add_row("", "", "", "", Text(run["last_error"][:60], style="red"), "")
        box.update(table)


KEY_METRICS = ("auc_pr", "best_arm_mean_reward", "hit_rate_at_10", "macro_f1", "accuracy")


def _key_metric(metrics: dict) -> str:
    for name in KEY_METRICS:
        if isinstance(metrics.get(name), float):
            return f"{name} {metrics[name]:.3f}"
    return "-"


def _status(info: dict) -> tuple[str, str]:
    run = info["last_training"]
    if run is None:
        return "untrained", "dim"
    if info["cooldown"]:
        return f"cooldown until {info['next_retry_at']:%H:%M:%S}", "yellow"
    if run["status"] == "running":
        return "running", "cyan"
    if run["status"] == "failed":
        return "failed", "bold red"
    if run["status"] == "rejected":  # trained, but its version failed the validation gate
        return "rejected", "yellow"
    return "ok", "green"
