"""`mlkit features`: the stored feature vectors."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import JsonFlag, emit_json, load_context, open_engine, progress_bar, stdout_console
from ._render import print_values

app = typer.Typer(
    help="Stored fraud features and their online copy in Redis.", no_args_is_help=True
)


TtlOption = Annotated[
    int | None,
    typer.Option("--ttl", help="Seconds each key lives [default: fraud.online_ttl_seconds]."),
]


FullFlag = Annotated[
    bool, typer.Option("--full", help="Rewrite every wallet, not only those with new activity.")
]


@app.command("materialize")
def materialize(
    ctx: typer.Context, ttl: TtlOption = None, full: FullFlag = False, as_json: JsonFlag = False
) -> None:
    """Write wallets' histories to Redis (features:wallet:<id>) for online scoring.

    The first run writes every wallet; later runs only the wallets with new activity
    (orders, completions, transfers, labels) and renew the others' TTL. Online features
    of a new order are computed from it while fresh, else from the database, with the
    same definitions as `mlkit etl run`. Cron runs it (cron.features) within the TTL.

    Example: mlkit features materialize --ttl 600
    """
    from mlkit.toolkit.fraud.online import materialize_configured

    config, engine = load_context(ctx)
    with progress_bar() as progress:
        document = materialize_configured(engine, config, ttl=ttl, full=full, progress=progress)
    if as_json:
        emit_json(document)
        return
    stdout_console().print(
        f"materialized {document['wallets']:,} wallets to Redis ({document['mode']}; "
        f"{document['kept']:,} unchanged kept) (TTL {document['ttl_seconds']} s) "
        f"in {document['seconds']} s"
    )


@app.command("show")
def show(
    ctx: typer.Context,
    order: Annotated[int, typer.Option("--order", help="Order id.")],
    as_json: JsonFlag = False,
) -> None:
    """Print one order's feature vector as stored by `mlkit etl run`.

    Example: mlkit features show --order 1234 --json
    """
    from mlkit.toolkit.fraud.etl import stored_features

    row = stored_features(open_engine(ctx), order)
    if as_json:
        emit_json(row)
        return
    print_values(
        f"order {order}: features known at {row['feature_ts']}",
        ("feature", "value"),
        ((name, _value(value)) for name, value in row.items()),
    )


def _value(value) -> str:
    return "—" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
