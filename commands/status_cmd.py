"""`mlkit status`: per model family, what is trained, promoted, running or cooling down."""

from __future__ import annotations

from typing import Any

import typer

from mlkit.toolkit.formats import version_label, when

from ._common import JsonFlag, emit_json, load_context, stdout_console


def status(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Per family: trained or not, prod/candidate/latest versions, the last training run
    (when, how long, samples, metrics; its status ok, failed with the error, or rejected
    with the validation gates its version failed), any cooldown with its next retry, and
    when the latest version does not serve, why (its promotion gate's verdict).

    Example: mlkit status --json
    """
    from mlkit.toolkit.status import status_report

    config, engine = load_context(ctx)
    document = status_report(engine, config)
    if as_json:
        emit_json(document)
        return
    _print(document)


def _print(document: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = stdout_console()
    for family, info in document.items():
        run = info["last_training"]
        table = Table(title=family, show_header=False, title_justify="left")
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        table.add_row("trained", "yes" if info["is_trained"] else "no")
        table.add_row(
            "state", escape(" · ".join(filter(None, (info["state"], info["state_detail"]))))
        )
        table.add_row(
            "versions",
            f"prod {version_label(info['prod'])} · candidate {version_label(info['candidate'])} · "
            f"latest {version_label(info['latest_version'])}",
        )
        if info.get("waiting"):
            table.add_row("not serving", _waiting(info["waiting"], info["prod"]))
        if run is None:
            table.add_row("last training", "never")
        else:
            duration = run["duration_seconds"]
            table.add_row(
                "last training",
                f"run {run['run_id']} {run['status']} at {when(run['started_at'])}"
                + (f" ({duration:.1f} s)" if duration is not None else ""),
            )
            if run["n_samples"] is not None:
                table.add_row("samples", f"{run['n_samples']:,}")
            if run["metrics"]:
                table.add_row("metrics", _metrics(run["metrics"]))
            if run["status"] == "rejected":
                if not info.get("waiting"):  # else the "not serving" row says why
                    table.add_row(
                        "rejected",
                        f"[yellow]v{run['version']} kept from prod: "
                        f"{escape(run['last_error'] or '')}; "
                        f"prod stays {version_label(info['prod'])}[/yellow]",
                    )
            elif run["last_error"]:
                table.add_row("last error", f"[red]{escape(run['last_error'])}[/red]")
        success = info["last_success"]
        if success is not None and (run is None or success["run_id"] != run["run_id"]):
            table.add_row(
                "last success",
                f"run {success['run_id']} at {when(success['finished_at'])}"
                + (f" → v{success['version']}" if success["version"] is not None else ""),
            )
        bandit = info.get("bandit")
        if bandit and bandit["best_arm"]:
            best = bandit["arms"][bandit["best_arm"]]
            table.add_row(
                "bandit",
                f"best {bandit['best_arm']} (mean reward {best['mean']:.4f}, "
                f"{best['share']:.0%} of pulls) · {bandit['total_pulls']:,} pulls · "
                f"state from {bandit['source']}",
            )
        for symbol, entry in (info.get("symbols") or {}).items():
            table.add_row(symbol, _symbol_line(entry))
        if info["cooldown"]:
            table.add_row("cooldown", f"[yellow]until {when(info['next_retry_at'])}[/yellow]")
        console.print(table)


def _symbol_line(entry: dict[str, Any]) -> str:
    """One signal symbol: its prod version, last run and any cooldown, on one line."""
    from rich.markup import escape

    run = entry["last_training"]
    parts = [f"prod {version_label(entry['prod'])}" if entry["is_trained"] else "not trained"]
    if run is not None:
        parts.append(f"last run {run['status']} at {when(run['started_at'])}")
        if run["last_error"] and not (run["status"] == "rejected" and entry.get("waiting")):
            parts.append(f"[red]{escape(run['last_error'])}[/red]")
    if entry["cooldown"]:
        parts.append(f"[yellow]cooldown until {when(entry['next_retry_at'])}[/yellow]")
    if entry.get("waiting"):
        parts.append(_waiting(entry["waiting"], entry["prod"]))
    return " · ".join(parts)


def _waiting(waiting: dict[str, Any], prod: int | None) -> str:
    """The latest version that does not serve, where it stays and why."""
    from rich.markup import escape

    where = " and ".join(waiting["aliases"]) or "no alias"
    serving = "nothing serves" if prod is None else f"prod v{prod} serves"
    return (
        f"[yellow]v{waiting['version']} stays {where}, {serving}: "
        f"{escape('; '.join(waiting['reasons']))}[/yellow]"
    )


def _metrics(metrics: dict[str, Any], limit: int = 6) -> str:
    parts = []
    for key, value in list(metrics.items())[:limit]:
        parts.append(f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}")
    return ", ".join(parts)
