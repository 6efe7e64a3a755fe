"""What each panel shows, as Rich renderables and table rows, from what toolkit.monitor read.

Pure functions of the data: every figure carries its time, states carry their colour.
"""

from __future__ import annotations

from datetime import datetime

from rich.table import Table
from rich.text import Text

from mlkit.toolkit.formats import version_label
from mlkit.toolkit.fraud.columns import DECISIONS

OK, STALE, DOWN = "green", "yellow", "bold red"
SHORT = {
    "APPROVED": "approved",
    "REQUIRE_2FA": "2fa",
    "MANUAL_REVIEW": "review",
    "BLOCKED": "blocked",
}
STATE_STYLES = {
    "ok": OK,
    "running": "cyan",
    "candidate-rejected": STALE,
    "cooling-down": STALE,
    "failed": DOWN,
    "untrained": "dim",
}


def hhmm(moment: datetime | None, seconds: bool = False) -> str:
    if moment is None:
        return "-"
    return f"{moment:%m-%d %H:%M:%S}" if seconds else f"{moment:%m-%d %H:%M}"


def rate_style(rate: float | None, thresholds: list[float]) -> str:
    """Red at or above the lowest alert threshold, yellow from half of it, else green."""
    if rate is None or not thresholds:
        return ""
    if rate >= thresholds[0]:
        return DOWN
    return STALE if rate >= thresholds[0] / 2 else OK


def header(
    database: str,
    database_state: str,
    redis_state: str,
    taken_at: datetime | None,
    age: float | None,
    stale_after: float,
    polling_for: float | None,
    paused: bool,
    refresh: float,
) -> Text:
    """db, Redis and refresh state, each coloured ok / stale / down."""
    text = Text.assemble(("mlkit ", "bold"), "db ", (database, "bold"), " ")
    db_style = {"ok": OK, "slow": STALE, "down": DOWN}.get(database_state, "dim")
    text.append(database_state if database_state != "…" else "connecting…", db_style)
    redis_style = OK if redis_state == "ok" else ("dim" if redis_state == "disabled" else DOWN)
    text.append(" · Redis ")
    text.append(redis_state, redis_style)
    text.append(" · ")
    if taken_at is None:
        text.append("first refresh…", STALE)
    else:
        style = STALE if age is not None and age > stale_after else OK
        text.append(f"refreshed {taken_at:%H:%M:%S} UTC ({age:.0f} s ago)", style)
    if polling_for is not None and polling_for > 1:
        text.append(f" · waiting on the database {polling_for:.0f} s", STALE)
    text.append(" · ")
    text.append("PAUSED" if paused else f"every {refresh:g} s", "bold yellow" if paused else "")
    return text


def alert_banner(alerts: list[dict]) -> Text:
    text = Text()
    for i, a in enumerate(alerts):
        if i:
            text.append("\n")
        text.append(f" ALERT {a['rule']} ", "bold white on red")
        value = f"{a['value']:.4g}" if isinstance(a.get("value"), float) else str(a.get("value"))
        text.append(
            f" {a.get('severity') or ''} · since {hhmm(a['fired_at'])} UTC · value {value} "
            f"(threshold {a.get('threshold')}) · {a.get('message') or ''}"
        )
    return text


def fraud_windows(data: dict, thresholds: list[float], narrow: bool) -> Table:
    """Per window: orders, decisions, flagged share coloured by the alert thresholds, span."""
    table = Table(box=None, expand=True, pad_edge=False)
    table.add_column("window")
    table.add_column("orders", justify="right")
    shown = ("REQUIRE_2FA", "MANUAL_REVIEW", "BLOCKED") if narrow else DECISIONS
    for d in shown:
        table.add_column(SHORT[d], justify="right")
    table.add_column("flagged", justify="right")
    table.add_column("since (UTC)", justify="right")
    for name, w in data["windows"].items():
        rate = w["fraud_rate"]
        orders = f"{w['orders']:,}" + (f" ({w['unscored']:,} new)" if w["unscored"] else "")
        table.add_row(
            name,
            orders,
            *[f"{w['counts'][d]:,}" for d in shown],
            Text("-" if rate is None else f"{rate:.2%}", style=rate_style(rate, thresholds)),
            hhmm(w["start"]),
        )
    return table


def fraud_title(data: dict) -> str:
    if not data.get("orders"):
        return "Fraud · no orders yet"
    if data["as_of"] is not None:
        return f"Fraud · no orders in 7 d: windows end at the newest order {hhmm(data['as_of'])}"
    return f"Fraud · live, windows end {hhmm(data['anchor'], True)} UTC"


# Tables' columns with fixed widths: the layout never waits on measuring the rows.
BLOCKED_COLUMNS = {
    "order": 8,
    "placed (UTC)": 14,
    "score": 5,
    "price": 9,
    "wallet": 8,
    "scored": 11,
    "model": 12,
}


def blocked_rows(data: dict) -> list[tuple]:
    return [
        (
            str(b["order_id"]),
            hhmm(b["placed_at"], True),
            f"{b['fraud_score']:.3f}",
            f"{float(b['price']):,.2f}",
            str(b["buyer_wallet_id"]),
            hhmm(b["scored_at"]),
            b["model_version"],
        )
        for b in data.get("latest_blocked", [])
    ]


ARM_COLUMNS = {"arm": 15, "pulls": 7, "share": 5, "mean": 6, "90% interval": 11, "updated": 5}


def bandit_cells(arm: str, a: dict) -> list:
    low, high = a["interval_90"]
    return [
        Text(arm + (" *" if a["best"] else ""), style="bold green" if a["best"] else ""),
        f"{a['pulls']:,}",
        f"{a['share']:.1%}",
        f"{a['mean']:.4f}",
        f"{low:.3f}-{high:.3f}",
        f"{a['updated_at']:%H:%M}" if a["updated_at"] else "-",  # UTC, today's as a rule
    ]


def bandit_caption(data: dict, redis_state: str, taken_at: datetime) -> Text:
    if data["trained"]:
        text = Text(
            f"{data['total_pulls']:,} pulls · read {taken_at:%H:%M:%S} from {data['source']}"
        )
    else:
        text = Text("not trained yet: no arms (`mlkit train pricing`)", "dim")
    if data["redis_note"]:
        text.append(f" · {data['redis_note']}", STALE)
    if redis_state == "disabled":
        text.append(" · Redis disabled", "dim")
    elif redis_state != "ok":
        text.append(f" · Redis {redis_state}", DOWN)
    return text


TRAINING_COLUMNS = {"family": 11, "prod": 12, "last run (UTC)": 14, "state": 18}


def training_rows(data: dict) -> list[tuple]:
    rows = []
    for family, info in data.items():
        run = info["last_training"]
        prod = version_label(info["prod"])
        if info.get("prod_symbols"):
            prod = ", ".join(f"{s} v{v}" for s, v in info["prod_symbols"].items())
        rows.append(
            (
                family,
                prod,
                hhmm(run["started_at"]) if run else "never",
                Text(info["state"], style=STATE_STYLES.get(info["state"], "")),
            )
        )
    return rows


DETAIL = 110  # characters of a family's state detail in the panel (enter shows it all)


def training_detail(data: dict) -> Text:
    """One line per family that is not ok: why."""
    text = Text()
    for family, info in data.items():
        if info["state"] in ("ok", "untrained") or not info["state_detail"]:
            continue
        if text:
            text.append("\n")
        text.append(f"{family}: ", "bold")
        detail = info["state_detail"]
        detail = detail if len(detail) <= DETAIL else detail[: DETAIL - 1] + "…"
        text.append(detail, STATE_STYLES.get(info["state"], ""))
    return text
