"""`mlkit kpi`: the hourly KPI view."""

from __future__ import annotations

import typer

from ._common import JsonFlag, emit_json, load_config, stdout_console

app = typer.Typer(help="The kpi_hourly view.", no_args_is_help=True)


@app.command("refresh")
def refresh(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Recompute kpi_hourly: REFRESH MATERIALIZED VIEW CONCURRENTLY on PostgreSQL (readers
    are never blocked; the first refresh of an empty view is a plain one). On MySQL and
    SQLite the view is a plain, always-current view, so there is nothing to do.

    Example: mlkit kpi refresh
    """
    import time

    import sqlalchemy as sa

    from mlkit.toolkit.db import KPI_VIEW, dialect_name, make_engine, refresh_kpi
    from mlkit.toolkit.errors import MlkitError

    engine = make_engine(load_config(ctx).database_url)
    dialect = dialect_name(engine)
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        views = set(inspector.get_view_names())
        if dialect == "postgresql":
            views |= set(inspector.get_materialized_view_names())
    if KPI_VIEW not in views:
        raise MlkitError(f"the {KPI_VIEW} view is missing", hint="create it with `mlkit db init`")
    started = time.perf_counter()
    refresh_kpi(engine)
    seconds = round(time.perf_counter() - started, 3)
    refreshed = dialect == "postgresql"
    note = (
        f"refreshed {KPI_VIEW} concurrently"
        if refreshed
        else f"{KPI_VIEW} is a plain view on {dialect}: always current, nothing to refresh"
    )
    if as_json:
        emit_json(
            {
                "view": KPI_VIEW,
                "dialect": dialect,
                "refreshed": refreshed,
                "seconds": seconds,
                "note": note,
            }
        )
        return
    stdout_console().print(note + (f" in {seconds} s" if refreshed else ""))
