"""`mlkit cron`: the platform's schedule as a crontab block."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import JsonFlag, emit_json, err, load_config

app = typer.Typer(help="The crontab block for the platform's schedule.", no_args_is_help=True)


@app.command("show")
def show(
    ctx: typer.Context,
    install: Annotated[
        bool,
        typer.Option("--install", help="Merge the block into your crontab (idempotent)."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Print the crontab block: ETL daily 02:00, kpi refresh every 5 min, retention weekly,
    fraud retraining every two weeks, bandit weekly, recommender daily, signals hourly
    (one line per symbol with market data), drift and alerts hourly; schedules from the
    `cron:` config section ("" leaves a job out).

    Each line calls mlkit and the config by absolute path under `flock -n` (a run still
    going makes the next skip) and appends to <logs>/<job>.log. --install replaces the
    block between its marker comments in `crontab -l` (or appends it) and keeps every
    other line; installing twice changes nothing. $MLKIT_CRONTAB_CMD replaces `crontab`.

    Example: mlkit cron show --install
    """
    from mlkit.toolkit.cron import build_block, install_block

    config = load_config(ctx)
    symbols, warnings = _symbols(config)
    document = build_block(config, symbols=symbols)
    document["warnings"] = warnings + document["warnings"]
    if install:
        document["install"] = install_block(
            document["block"], logs_dir=document["logs_dir"], locks_dir=document["locks_dir"]
        )
    if as_json:
        emit_json(document)
    else:
        typer.echo(document["block"], nl=False)
    for warning in document["warnings"]:
        err(f"warning: {warning}")
    if install:
        changed = document["install"]["changed"]
        err("crontab updated" if changed else "crontab already holds this block: unchanged")


def _symbols(config) -> tuple[list[str], list[str]]:
    """Symbols with market data, for the hourly signal lines; none when unreadable."""
    from mlkit.toolkit.db import make_engine
    from mlkit.toolkit.errors import MlkitError

    try:
        engine = make_engine(config.database_url)
        import sqlalchemy as sa

        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("market_data"):
                return [], []
        from mlkit.toolkit.signal.market import symbols_overview

        return list(symbols_overview(engine)), []
    except MlkitError as exc:
        return [], [f"cannot read the symbols with market data ({exc.message})"]
