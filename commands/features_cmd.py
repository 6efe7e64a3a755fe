"""`mlkit features`: the stored feature vectors."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import emit_json, load_config, stdout_console

app = typer.Typer(help="Show stored fraud features.", no_args_is_help=True)


@app.command("show")
def show(
    ctx: typer.Context,
    order: Annotated[int, typer.Option("--order", help="Order id.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Print one order's feature vector as stored by `mlkit etl run`.

    Example: mlkit features show --order 1234 --json
    """
    from mlkit.toolkit.db import make_engine
    from mlkit.toolkit.errors import MlkitError
    from mlkit.toolkit.fraud.etl import feature_row

    row = feature_row(make_engine(load_config(ctx).database_url), order)
    if row is None:
        raise MlkitError(
            f"order {order} has no stored features", hint="run `mlkit etl run` to compute them"
        )
    if as_json:
        emit_json(row)
        return
    from rich.table import Table

    table = Table(title=f"order {order}: features known at {row['feature_ts']}")
    table.add_column("feature")
    table.add_column("value", justify="right")
    for name, value in row.items():
        table.add_row(name, "—" if value is None else f"{value:.4g}" if isinstance(value, float)
                      else str(value))  # fmt: skip
    stdout_console().print(table)
