"""`mlkit kpi`: the hourly KPI view."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import JsonFlag, emit_json, open_engine, stdout_console

app = typer.Typer(help="The kpi_hourly view.", no_args_is_help=True)


@app.command("refresh")
def refresh(
    ctx: typer.Context,
    full: Annotated[
        bool,
        typer.Option("--full", help="Recompute every hour (after deleting orders in the window)."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Bring kpi_hourly up to date. On PostgreSQL its hours are kept in the table kpi_hours
    and a refresh recomputes only the hours of orders and predictions added since the last
    one (readers are never blocked, one refresh at a time); --full recomputes every hour of
    the 30 days, which orders deleted inside them need. On MySQL and SQLite kpi_hourly is a
    plain, always-current view, so there is nothing to do.

    Example: mlkit kpi refresh
    """
    from mlkit.toolkit.kpi import refresh_kpi_view

    document = refresh_kpi_view(open_engine(ctx), full=full)
    if as_json:
        emit_json(document)
        return
    refreshed = document["refreshed"]
    stdout_console().print(document["note"] + (f" in {document['seconds']} s" if refreshed else ""))
