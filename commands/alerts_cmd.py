"""`mlkit alerts`: evaluate the alert rules and show what fires."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import JsonFlag, emit_json, err, load_config, open_engine, stdout_console

app = typer.Typer(help="Alert rules: evaluate, record, list.", no_args_is_help=True)

FIRING_EXIT_CODE = 3


@app.command("check")
def check(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Evaluate the rules in config `alerts.rules`; record what fires and what resolves.

    Metrics: fraud_rate is the share of scored orders with decision BLOCKED or
    MANUAL_REVIEW among the fraud_predictions created in the rule's duration (nothing
    scored: no data, not firing); failed_logins the most failed_login security_events
    from one source (address, else user) in the duration; kl_divergence the largest
    feature KL of the latest `mlkit drift check`; training_failed the number of models
    whose latest finished training run failed or was rejected by its validation gate.
    Windows count back from now (MLKIT_NOW when set). A rule still firing updates its open
    alert; one that stopped is resolved with a timestamp.

    alerts.webhook_url (off by default; http or https, checked when the config loads) gets
    a JSON POST of each check's changes, with a notification_id. A notification is queued
    in the database with the changes it reports and sent oldest first, up to 3 tries
    within about 5 s per run; one not delivered stays queued for the next check, which is
    reported as "webhook: N queued, last error ..." on stderr and never changes the exit
    code. The URL is printed masked. Exit 0: nothing fires; 3: at least one rule fires;
    1: error.

    Example: mlkit alerts check --json
    """
    from mlkit.toolkit.alerts import check_alerts

    config = load_config(ctx)
    document = check_alerts(open_engine(ctx, config), config)
    if as_json:
        emit_json(document)
    else:
        _print(document)
        for warning in document["warnings"]:
            err(f"warning: {warning}")
    if document["firing"]:
        raise typer.Exit(FIRING_EXIT_CODE)


def _value(value: float | None, metric: str) -> str:
    if value is None:
        return "no data"
    if metric in ("fraud_rate",):
        return f"{value:.2%}"
    return f"{value:g}" if float(value).is_integer() else f"{value:.3f}"


def _print(document: dict) -> None:
    """One line per rule: state, rule, value against the condition, what was seen."""
    from rich.markup import escape

    console = stdout_console()
    console.print(f"alerts at {document['checked_at']:%Y-%m-%d %H:%M:%S} UTC")
    fired, resolved = set(document["fired"]), set(document["resolved"])
    for r in document["rules"]:
        if r["firing"]:
            state = "[bold red]FIRING[/bold red]" + (" (new)" if r["rule"] in fired else "")
        else:
            state = "[green]resolved[/green]" if r["rule"] in resolved else "[green]ok[/green]"
        console.print(
            f"{state} {r['rule']} ({r['severity']}): {r['metric']} "
            f"{_value(r['value'], r['metric'])}, rule {escape(r['condition'])}; "
            f"{escape(r['message'])}"
        )
    gone = resolved - {r["rule"] for r in document["rules"]}
    if gone:
        console.print(f"resolved (rule no longer configured): {', '.join(sorted(gone))}")
    webhook = document["webhook"]
    if webhook["delivered"]:
        console.print(
            f"webhook: {len(webhook['delivered'])} notification(s) delivered to "
            f"{escape(webhook['url'])}"
        )


@app.command("list")
def list_alerts(
    ctx: typer.Context,
    show_all: Annotated[
        bool, typer.Option("--all", help="Resolved alerts too, not only the firing ones.")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """The alerts firing now, newest first (with --all, the recorded history).

    Example: mlkit alerts list --all --limit 50
    """
    from mlkit.toolkit.alerts import list_alerts

    rows = list_alerts(open_engine(ctx), limit, include_resolved=show_all)
    if as_json:
        emit_json({"alerts": rows})
        return
    if not rows:
        stdout_console().print("no alerts recorded" if show_all else "no alert is firing")
        return
    from rich.markup import escape

    console = stdout_console()
    for row in rows:
        status = row.get("status", "firing")
        colour = "red" if status == "firing" else "green"
        value = "no data" if row["value"] is None else f"{row['value']:.4g}"
        until = f" until {row['resolved_at']:%Y-%m-%d %H:%M:%S}" if row.get("resolved_at") else ""
        console.print(
            f"[{colour}]{status}[/{colour}] {row['rule']} ({row['severity']}) since "
            f"{row['fired_at']:%Y-%m-%d %H:%M:%S}{until} UTC: value {value}, threshold "
            f"{row['threshold']:g}; {escape(row['message'])}"
        )
