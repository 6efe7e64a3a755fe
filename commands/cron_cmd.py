"""`mlkit cron`: the platform's schedule as a crontab block, and the wrapper each line calls."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from ._common import JsonFlag, emit_json, err, load_config, options

app = typer.Typer(help="The crontab block for the platform's schedule.", no_args_is_help=True)


InstallFlag = Annotated[
    bool, typer.Option("--install", help="Merge the block into your crontab (idempotent).")
]


@app.command("show")
def show(ctx: typer.Context, install: InstallFlag = False, as_json: JsonFlag = False) -> None:
    """Print the crontab block: ETL daily 02:00, kpi refresh every 5 min, retention weekly,
    fraud retraining every two weeks, bandit weekly, recommender daily, signals hourly
    (one line per symbol with market data), drift and alerts hourly; schedules from the
    `cron:` config section ("" leaves a job out).

    Each line is `<schedule> [NAME=value ...] /abs/mlkit --config /abs/config cron run
    <job>`: it carries the variables the config file reads and the MLKIT_* overrides set
    now, never a password or token (those go in <home>/cron.env or $MLKIT_ENV_FILE, chmod
    600, which `cron run` loads). Lines whose jobs would reach another database under
    cron's bare environment are refused. --install replaces the block between its marker
    comments in `crontab -l` (or appends it) and keeps every other line; installing twice
    changes nothing. $MLKIT_CRONTAB_CMD replaces `crontab`. `mlkit serve` is no cron job:
    run it under a process manager (the README's Serving section has a systemd unit).

    Example: mlkit cron show --install
    """
    from mlkit.toolkit.cron import cron_block

    opts = options(ctx)
    document = cron_block(
        load_config(ctx),
        database_flag=opts.database_url,
        redis_flag=opts.redis_url,
        install=install,
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


@app.command("run")
def run(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="The job: etl, train_fraud, signals_BTCUSDT, ...")],
) -> None:
    """Run one job of the block as cron does: what every crontab line calls.

    Creates <logs>/locks, takes <logs>/locks/<job>.lock without waiting (a run still
    going makes this one log `skipped` and exit 0), loads <home>/cron.env (or
    $MLKIT_ENV_FILE; refused when group or others may read it) for the variables not
    already set, runs the job's mlkit commands and appends each output line to
    <logs>/<job>.log with a timestamp, between `start:` and `end: <outcome> (exit N)`
    lines. Exit 0, 3 when drift/alerts report something, else 1 with one summary line on
    stderr (cron mails it to MAILTO); nothing else is printed.

    Example: mlkit cron run etl
    """
    from mlkit.toolkit.jobrun import run_job

    opts = options(ctx)
    result = run_job(
        job,
        config_path=opts.config_path,
        database_url=opts.database_url,
        redis_url=opts.redis_url,
        verbose=opts.verbose,
        env=dict(os.environ),
    )
    if result.summary:
        err(result.summary)
    raise typer.Exit(result.exit_code)
