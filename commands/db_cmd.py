"""`mlkit db`: create the schema, show what the database holds, print DDL."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import JsonFlag, emit_json, err, load_config, open_engine, stdout_console
from ._render import print_values

app = typer.Typer(help="Create and inspect the database schema.", no_args_is_help=True)


@app.command("init")
def init(
    ctx: typer.Context,
    create_database: Annotated[
        bool,
        typer.Option("--create-database", help="Create the database itself on PostgreSQL/MySQL."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Create every missing table, index and the kpi_hourly view. Safe to run again.

    Example: MLKIT_DATABASE_URL=postgresql+psycopg2://postgres@host/shop mlkit db init
             --create-database
    """
    from mlkit.toolkit.db import init_database

    config = load_config(ctx)
    result = init_database(config, lambda: open_engine(ctx, config), create=create_database)
    document = result.as_dict()
    if as_json:
        emit_json(document)
        return
    if result.database_created:
        err(f"created database {result.name}")
    done = [f"created {len(result.tables_created)} tables"] if result.tables_created else []
    if result.indexes_added:
        done.append(f"added indexes {', '.join(result.indexes_added)}")
    what = "; ".join(done) or "schema already up to date"
    if result.views:
        what += f"; views of the mapped sources: {', '.join(result.views)}"
    stdout_console().print(f"{document['database']} ({document['dialect']}): {what}")


@app.command("status")
def status(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Dialect, masked URL and the row count of every table.

    Example: mlkit db status --json
    """
    from mlkit.toolkit.db import database_status

    document = database_status(open_engine(ctx))
    counts = document["tables"]
    if as_json:
        emit_json(document)
        return
    foreign = document.get("foreign_tables", {})
    print_values(
        f"{document['database']} ({document['dialect']})",
        ("table", "rows"),
        (
            (name, "not mlkit's" if name in foreign else "missing" if rows is None else f"{rows:,}")
            for name, rows in counts.items()
        ),
    )
    for name, lacking in foreign.items():
        err(f"warning: table {name} has other columns (no {', '.join(lacking)}): not counted")
    if foreign:
        err("hint: map such tables under `sources:` and set `database.state_schema`")
    elif any(rows is None for rows in counts.values()):
        err("hint: create the missing tables with `mlkit db init`")


@app.command("ddl")
def ddl(
    dialect: Annotated[
        str, typer.Option("--dialect", help="postgresql, mysql or sqlite.", metavar="DIALECT")
    ],
) -> None:
    """Print the schema's DDL for a dialect (what sql/<dialect>.sql holds).

    Example: mlkit db ddl --dialect mysql > schema.sql
    """
    from mlkit.toolkit.db import ddl as render

    typer.echo(render(dialect), nl=False)
