"""The `mlkit` command: the root Typer app that joins one sub-app per area."""

from __future__ import annotations

from typing import Annotated

import typer

from mlkit.toolkit import __version__

from . import (
    alerts_cmd,
    config_cmd,
    cron_cmd,
    dashboard_cmd,
    dataset_cmd,
    db_cmd,
    demo_cmd,
    drift_cmd,
    etl_cmd,
    features_cmd,
    ingest_cmd,
    inspect_cmd,
    kpi_cmd,
    mab_cmd,
    migrate_cmd,
    models_cmd,
    quickstart_cmd,
    recommend_cmd,
    report_cmd,
    retention_cmd,
    score_cmd,
    serve_cmd,
    signal_cmd,
    sources_cmd,
    status_cmd,
    train_cmd,
    validate_cmd,
)
from ._common import DatabaseOption, GlobalOptions, MlkitGroup, RedisOption

app = typer.Typer(
    cls=MlkitGroup,
    name="mlkit",
    help="Train, validate and operate the ML models of a commerce platform from its database.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)
app.add_typer(config_cmd.app, name="config")
app.add_typer(db_cmd.app, name="db")
app.add_typer(sources_cmd.app, name="sources")
app.add_typer(demo_cmd.app, name="demo")
app.add_typer(inspect_cmd.app, name="inspect")
app.add_typer(etl_cmd.app, name="etl")
app.add_typer(features_cmd.app, name="features")
app.add_typer(dataset_cmd.app, name="dataset")
app.add_typer(train_cmd.app, name="train")
app.add_typer(validate_cmd.app, name="validate")
app.add_typer(score_cmd.score_app, name="score")
app.add_typer(score_cmd.predict_app, name="predict")
app.add_typer(models_cmd.app, name="models")
app.add_typer(drift_cmd.app, name="drift")
app.add_typer(alerts_cmd.app, name="alerts")
app.add_typer(retention_cmd.app, name="retention")
app.add_typer(kpi_cmd.app, name="kpi")
app.add_typer(cron_cmd.app, name="cron")
app.add_typer(ingest_cmd.app, name="ingest")
app.add_typer(signal_cmd.app, name="signal")
app.add_typer(mab_cmd.app, name="mab")
app.add_typer(recommend_cmd.app, name="recommend")
app.add_typer(recommend_cmd.export_app, name="export")
app.add_typer(report_cmd.app, name="report")
app.command("status")(status_cmd.status)
app.command("quickstart")(quickstart_cmd.quickstart)
app.command("migrate")(migrate_cmd.migrate)
app.command("dashboard")(dashboard_cmd.dashboard)
app.command("serve")(serve_cmd.serve)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"mlkit {__version__}")
        raise typer.Exit()


ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config", "-c", help="Config file (else $MLKIT_CONFIG, ./config.yaml).", metavar="PATH"
    ),
]
AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="Run as of this moment (sets MLKIT_NOW): every window counts back from it.",
        metavar="MOMENT",
    ),
]
VersionFlag = Annotated[
    bool,
    typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version."),
]


@app.callback()
def root(
    ctx: typer.Context,
    config: ConfigOption = None,
    database: DatabaseOption = None,
    redis: RedisOption = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show tracebacks and debug logs.")
    ] = False,
    as_of: AsOfOption = None,
    version: VersionFlag = False,
) -> None:
    ctx.obj = GlobalOptions(config, database, redis, verbose, as_of)
    if as_of is not None:
        _set_clock(ctx, as_of)
    import logging

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
    )


def _set_clock(ctx: typer.Context, moment: str) -> None:
    """MLKIT_NOW for this command (and what it starts), as a checked ISO moment in UTC."""
    import os

    from mlkit.toolkit.clock import NOW_VARIABLE, utcnow
    from mlkit.toolkit.errors import MlkitError

    previous = os.environ.get(NOW_VARIABLE)
    os.environ[NOW_VARIABLE] = moment.strip() or "unset"  # empty would mean the wall clock
    try:
        now = utcnow()
    except MlkitError:
        _restore(NOW_VARIABLE, previous)
        raise MlkitError(
            f"cannot read --as-of {moment!r}",
            hint="give an ISO moment like 2026-03-01 or 2026-03-01T02:00:00 (UTC)",
        ) from None
    os.environ[NOW_VARIABLE] = now.isoformat()
    # In-process callers (tests, the dashboard's runner) get their environment back.
    ctx.call_on_close(lambda: _restore(NOW_VARIABLE, previous))


def _restore(name: str, value: str | None) -> None:
    import os

    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def run() -> None:
    app()


if __name__ == "__main__":
    run()
