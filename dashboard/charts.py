"""Charts with axes, time labels and legends (textual-plotext)."""

from __future__ import annotations

from datetime import datetime

from textual_plotext import PlotextPlot

from mlkit.toolkit.fraud.columns import DECISIONS

from .render import SHORT

DECISION_COLORS = {
    "APPROVED": "green",
    "REQUIRE_2FA": "cyan",
    "MANUAL_REVIEW": "orange",
    "BLOCKED": "red",
}


def _ticks(hours: list[datetime]) -> tuple[list[int], list[str]]:
    """Short labels that never collide: every 4th hour as HHh over a day, each midnight as
    MM-DD over longer spans (the span's end is in the title)."""
    if len(hours) <= 48:
        marks = [(i, f"{h:%H}h") for i, h in enumerate(hours) if h.hour % 4 == 0]
    else:
        marks = [(i, f"{h:%m-%d}") for i, h in enumerate(hours) if h.hour == 0]
    return [i for i, _ in marks], [label for _, label in marks]


def _end(hours: list[datetime]) -> str:
    return f"{hours[-1]:%m-%d %H}h" if hours else "-"


class FraudRateChart(PlotextPlot):
    """The flagged share (BLOCKED + MANUAL_REVIEW of the scored) per hour, in %, with the
    lowest alert threshold drawn as a line."""

    def show(self, hourly: list[dict], threshold: float | None, span: str) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        hours = [h["hour"] for h in hourly]
        x = list(range(len(hourly)))
        rates = [100 * (h["fraud_rate"] or 0.0) for h in hourly]
        plt.plot(x, rates, label="flagged %", color="red", marker="braille")
        if threshold is not None:
            plt.plot(x, [100 * threshold] * len(x), label="alert", color="yellow", marker="dot")
        plt.xticks(*_ticks(hours))
        plt.ylim(0, min(100.0, max([*rates, 100 * (threshold or 0), 1.0]) * 1.15))
        plt.title(f"flagged % per hour, {span} to {_end(hours)} UTC")
        self.refresh()


class DecisionsChart(PlotextPlot):
    """Orders per hour by decision, stacked."""

    def show(self, hourly: list[dict], span: str) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        hours = [h["hour"] for h in hourly]
        x = list(range(len(hourly)))
        series = [[h["counts"][d] for h in hourly] for d in DECISIONS]
        unscored = [h["unscored"] for h in hourly]
        plt.stacked_bar(
            x,
            [*series, unscored],
            labels=[SHORT[d] for d in DECISIONS] + ["unscored"],
            color=[DECISION_COLORS[d] for d in DECISIONS] + ["gray"],
            width=1,
        )
        plt.xticks(*_ticks(hours))
        plt.ylim(0, max(1, *(sum(column) for column in zip(*series, unscored, strict=True))))
        plt.title(f"orders per hour by decision, {span} to {_end(hours)} UTC")
        self.refresh()


class ArmSharesChart(PlotextPlot):
    """Each arm's share of pulls (or mean reward) at each refresh of this session."""

    def show(self, history: list[tuple[datetime, dict]], what: str = "share") -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        if not history:
            plt.title("arm shares: waiting for the first refresh")
            self.refresh()
            return
        times = [t for t, _ in history]
        x = list(range(len(history)))
        for arm in history[-1][1]:
            values = [arms.get(arm, {}).get(what, 0.0) for _, arms in history]
            if what == "share":
                values = [100 * v for v in values]
            plt.plot(x, values, label=arm, marker="braille")
        step = max(1, len(times) // 4)
        plt.xticks(list(range(0, len(times), step)), [f"{t:%H:%M:%S}" for t in times[::step]])
        unit = "% of pulls" if what == "share" else "mean reward"
        plt.title(f"arm {unit} since {times[0]:%H:%M:%S} UTC")
        self.refresh()
