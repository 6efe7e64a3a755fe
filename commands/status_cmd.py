"""`mlkit status`: per model family, what is trained, promoted, running or cooling down."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import typer

from ._common import JsonFlag, emit_json, load_config, stdout_console


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S} UTC" if value else "-"


def _version(value: int | None) -> str:
    return f"v{value}" if value is not None else "-"


def status(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Per family: trained or not, prod/candidate/latest versions, the last training run
    (when, how long, samples, metrics; its status ok, failed with the error, or rejected
    with the validation gates its version failed) and any cooldown with its next retry.

    Example: mlkit status --json
    """
    from sqlalchemy.exc import DBAPIError

    from mlkit.toolkit.db import explain_db_error, make_engine
    from mlkit.toolkit.errors import MlkitError
    from mlkit.toolkit.runs import training_status

    from .models_cmd import iso

    config = load_config(ctx)
    engine = make_engine(config.database_url)
    try:
        document = training_status(engine)
    except DBAPIError as exc:
        explained = explain_db_error(exc, engine.url)
        text = str(exc.orig).lower()
        if any(s in text for s in ("no such table", "does not exist", "doesn't exist")):
            raise MlkitError(
                "the registry tables are missing in this database",
                hint="create them with `mlkit db init`",
            ) from None
        raise explained from None
    if "pricing" in document:
        document["pricing"]["bandit"] = _bandit(engine, config)
    if "signal" in document:
        from mlkit.toolkit.signal.run import family_training_status

        # Signal models are per symbol (signal-BTCUSDT...): the family is trained if any is.
        symbols = family_training_status(engine)
        document["signal"]["symbols"] = symbols
        document["signal"]["is_trained"] = document["signal"]["is_trained"] or any(
            entry["is_trained"] for entry in symbols.values()
        )
    if as_json:
        emit_json(iso(document))
        return
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
            "versions",
            f"prod {_version(info['prod'])} · candidate {_version(info['candidate'])} · "
            f"latest {_version(info['latest_version'])}",
        )
        if run is None:
            table.add_row("last training", "never")
        else:
            duration = run["duration_seconds"]
            table.add_row(
                "last training",
                f"run {run['run_id']} {run['status']} at {_when(run['started_at'])}"
                + (f" ({duration:.1f} s)" if duration is not None else ""),
            )
            if run["n_samples"] is not None:
                table.add_row("samples", f"{run['n_samples']:,}")
            if run["metrics"]:
                table.add_row("metrics", _metrics(run["metrics"]))
            if run["last_error"] and run["status"] == "rejected":
                table.add_row(
                    "rejected",
                    f"[yellow]v{run['version']} failed its validation gate: "
                    f"{escape(run['last_error'])}; prod stays {_version(info['prod'])}[/yellow]",
                )
            elif run["last_error"]:
                table.add_row("last error", f"[red]{escape(run['last_error'])}[/red]")
        success = info["last_success"]
        if success is not None and (run is None or success["run_id"] != run["run_id"]):
            table.add_row(
                "last success",
                f"run {success['run_id']} at {_when(success['finished_at'])}"
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
            table.add_row("cooldown", f"[yellow]until {_when(info['next_retry_at'])}[/yellow]")
        console.print(table)


def _bandit(engine, config) -> dict | None:
    """The pricing bandit's arms as `mlkit mab stats` reports them (None when untrained)."""
    from mlkit.toolkit.cache import redis_client
    from mlkit.toolkit.pricing.service import stats_report
    from mlkit.toolkit.pricing.state import BanditStore

    store = BanditStore(engine, redis_client(config.redis_url, required=False))
    return stats_report(*store.read()) if store.is_trained() else None


def _symbol_line(entry: dict[str, Any]) -> str:
    """One signal symbol: its prod version, last run and any cooldown, on one line."""
    from rich.markup import escape

    run = entry["last_training"]
    parts = [f"prod {_version(entry['prod'])}" if entry["is_trained"] else "not trained"]
    if run is not None:
        parts.append(f"last run {run['status']} at {_when(run['started_at'])}")
        if run["last_error"]:
            parts.append(f"[red]{escape(run['last_error'])}[/red]")
    if entry["cooldown"]:
        parts.append(f"[yellow]cooldown until {_when(entry['next_retry_at'])}[/yellow]")
    return " · ".join(parts)


def _metrics(metrics: dict[str, Any], limit: int = 6) -> str:
    parts = []
    for key, value in list(metrics.items())[:limit]:
        parts.append(f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}")
    return ", ".join(parts)
