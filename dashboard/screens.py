"""Modal screens: help, one order in detail, one family's runs, one arm's history."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from .render import STATE_STYLES, hhmm

HELP = """mlkit dashboard

r  refresh now            p  pause / resume polling
w  chart span 24 h / 7 d   tab  next table
enter  open the selected order, family or arm
q / ctrl+c  quit          ?  this help     ctrl+p  command palette

Fraud: orders placed in the last 1 h / 24 h / 7 d by their latest decision, and the
flagged share (BLOCKED + MANUAL_REVIEW of the scored), computed live at each refresh;
coloured by the fraud_rate alert threshold. Bandit: pulls, share, mean reward and its
90 % interval per arm, from Redis when Redis holds this database's state. Training: the
state `mlkit status` reports per family.

Press escape to close."""


class Modal(ModalScreen):
    DEFAULT_CSS = """
    Modal { align: center middle; }
    Modal > VerticalScroll { width: 90%; max-width: 120; height: 90%; border: round $accent;
                             padding: 0 1; background: $panel; }
    Modal Static { height: auto; }
    """
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("escape", "dismiss", "Close"),
        Binding("q", "dismiss", "Close", show=False),
    ]


class HelpScreen(Modal):
    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(HELP)

    def on_key(self, event) -> None:
        self.dismiss()


class OrderScreen(Modal):
    """One order: features, score and decision, contributions, the wallet's recent orders."""

    def __init__(self, engine, order_id: int, config) -> None:
        super().__init__()
        self.engine, self.order_id, self.config = engine, order_id, config

    def compose(self) -> ComposeResult:
        with VerticalScroll() as box:
            box.border_title = f"order {self.order_id}"
            yield Static(f"loading order {self.order_id}…", id="order-detail")

    def on_mount(self) -> None:
        self.load()

    @work(thread=True, exit_on_error=False)
    def load(self) -> None:
        from mlkit.toolkit.drilldown import order_detail

        try:
            detail = order_detail(self.engine, self.order_id, self.config)
        except Exception as exc:  # shown, never raised into the app
            self.app.call_from_thread(self._show_error, f"{type(exc).__name__}: {exc}")
            return
        self.app.call_from_thread(self._show, detail)

    def _show_error(self, message: str) -> None:
        self.query_one("#order-detail", Static).update(Text(message, "bold red"))

    def _show(self, detail: dict) -> None:
        self.query_one("#order-detail", Static).update(order_renderable(detail))


def order_renderable(detail: dict) -> Table:
    order, prediction = detail["order"], detail["prediction"]
    grid = Table.grid(padding=(0, 2))
    grid.add_column()
    head = Text.assemble(
        ("placed ", "dim"),
        f"{order['created_at']:%Y-%m-%d %H:%M:%S} UTC · price {float(order['price']):,.2f} · "
        f"{order['payment_method']} · wallet {order['buyer_wallet_id']} · event {order['event_id']}"
        f" · {order['status']}",
    )
    grid.add_row(head)
    if prediction:
        style = "bold red" if prediction["decision"] == "BLOCKED" else "bold"
        grid.add_row(
            Text.assemble(
                ("decision ", "dim"),
                (prediction["decision"], style),
                f" · score {prediction['fraud_score']:.4f} by {prediction['model_version']} "
                f"at {prediction['created_at']:%Y-%m-%d %H:%M} UTC",
            )
        )
    contributions = Table(title="what drove the score", title_justify="left", box=None)
    contributions.add_column("feature")
    contributions.add_column(detail.get("contributions_unit") or "contribution", justify="right")
    for c in detail["contributions"] or []:
        value = c["contribution"]
        contributions.add_row(c["feature"], Text(f"{value:+.3f}", "red" if value > 0 else "green"))
    if detail["contributions_note"]:
        contributions.add_row(Text(detail["contributions_note"], "yellow"), "")
    features = Table(title="features", title_justify="left", box=None)
    features.add_column("feature")
    features.add_column("value", justify="right")
    for name, value in (detail["features"] or {}).items():
        features.add_row(
            name,
            "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value),
        )
    history = Table(title="the wallet's recent orders", title_justify="left", box=None)
    for column in ("order", "placed (UTC)", "price", "status", "decision"):
        history.add_column(column)
    for h in detail["wallet_history"]:
        history.add_row(
            str(h["order_id"]),
            hhmm(h["created_at"], True),
            f"{float(h['price']):,.2f}",
            h["status"],
            h["decision"] or "unscored",
        )
    grid.add_row(contributions)
    grid.add_row(features)
    grid.add_row(history)
    return grid


class FamilyScreen(Modal):
    """One family's status detail and last runs."""

    def __init__(self, engine, family: str, info: dict) -> None:
        super().__init__()
        self.engine, self.family, self.info = engine, family, info

    def compose(self) -> ComposeResult:
        with VerticalScroll() as box:
            box.border_title = f"training · {self.family}"
            state = self.info["state"]
            yield Static(
                Text.assemble(
                    (state, STATE_STYLES.get(state, "")), " · ", self.info["state_detail"] or ""
                )
            )
            yield Static("loading runs…", id="runs")

    def on_mount(self) -> None:
        self.load()

    @work(thread=True, exit_on_error=False)
    def load(self) -> None:
        from mlkit.toolkit.monitor import family_runs

        try:
            runs = family_runs(self.engine, self.family)
        except Exception as exc:
            self.app.call_from_thread(self._update, Text(f"{type(exc).__name__}: {exc}", "red"))
            return
        table = Table(box=None, expand=True)
        for column in (
            "run",
            "model",
            "status",
            "version",
            "started (UTC)",
            "s",
            "samples",
            "error",
        ):
            table.add_column(column)
        for r in runs:
            table.add_row(
                str(r["run_id"]),
                r["model_name"],
                Text(r["status"], "red" if r["status"] == "failed" else ""),
                "-" if r["version"] is None else f"v{r['version']}",
                hhmm(r["started_at"]),
                "-" if r["duration_seconds"] is None else f"{r['duration_seconds']:.1f}",
                "-" if r["n_samples"] is None else f"{r['n_samples']:,}",
                (r["last_error"] or "")[:80],
            )
        self.app.call_from_thread(self._update, table if runs else Text("no runs yet", "dim"))

    def _update(self, renderable) -> None:
        self.query_one("#runs", Static).update(renderable)


class ArmScreen(Modal):
    """One arm's pulls and mean reward over this session's refreshes."""

    def __init__(self, arm: str, history: list) -> None:
        super().__init__()
        self.arm, self.history = arm, history

    def compose(self) -> ComposeResult:
        from .charts import ArmSharesChart  # opened after the first data: already imported

        with VerticalScroll() as box:
            box.border_title = f"arm {self.arm}"
            yield Static(id="arm-table")
            yield ArmSharesChart(id="arm-chart")

    def on_mount(self) -> None:
        table = Table(box=None)
        for column in ("read at (UTC)", "pulls", "share", "mean"):
            table.add_column(column, justify="right")
        for taken_at, arms in self.history[-12:]:
            a = arms.get(self.arm, {})
            table.add_row(
                f"{taken_at:%H:%M:%S}",
                f"{a.get('pulls', 0):,}",
                f"{a.get('share', 0.0):.1%}",
                f"{a.get('mean', 0.0):.4f}",
            )
        self.query_one("#arm-table", Static).update(table)
        chart = self.query_one("#arm-chart")
        chart.styles.height = 14
        chart.show([(t, {self.arm: arms.get(self.arm, {})}) for t, arms in self.history], "mean")
