"""`mlkit kpi`: the hourly KPI view."""

from __future__ import annotations

import typer

from ._common import JsonFlag, emit_json, open_engine, stdout_console

app = typer.Typer(help="The kpi_hourly view.", no_args_is_help=True)


@app.command("refresh")
def refresh(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Recompute kpi_hourly: REFRESH MATERIALIZED VIEW CONCURRENTLY on PostgreSQL (readers
    are never blocked; the first refresh of an empty view is a plain one). On MySQL and
    SQLite the view is a plain, always-current view, so there is nothing to do.

    Example: mlkit kpi refresh
    """
    from mlkit.toolkit.kpi import refresh_kpi_view

    document = refresh_kpi_view(open_engine(ctx))
    if as_json:
        emit_json(document)
        return
    refreshed = document["refreshed"]
    stdout_console().print(document["note"] + (f" in {document['seconds']} s" if refreshed else ""))
