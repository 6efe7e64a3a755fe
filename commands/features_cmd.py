"""`mlkit features`: the stored feature vectors."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import JsonFlag, emit_json, load_config, open_engine, progress_bar, stdout_console
from ._render import print_values

app = typer.Typer(
    help="Stored fraud features and their online copy in Redis.", no_args_is_help=True
)


TtlOption = Annotated[
    int | None,
    typer.Option("--ttl", help="Seconds each key lives [default: fraud.online_ttl_seconds]."),
]


@app.command("materialize")
def materialize(ctx: typer.Context, ttl: TtlOption = None, as_json: JsonFlag = False) -> None:
    """Write each wallet's history to Redis (features:wallet:<id>) for online scoring.

    Online features of a new order are computed from it while fresh, else from the
    database, with the same definitions as `mlkit etl run`.

    Example: mlkit features materialize --ttl 600
    """
    import time

    from mlkit.toolkit.cache import redis_client
    from mlkit.toolkit.fraud.online import materialize as write_states

    config = load_config(ctx)
    client = redis_client(config.redis_url)
    seconds = ttl if ttl is not None else config.get("fraud.online_ttl_seconds")
    started = time.perf_counter()
    with progress_bar() as progress:
        count = write_states(open_engine(ctx, config), client, seconds, progress=progress)
    document = {
        "wallets": count,
        "ttl_seconds": seconds,
        "seconds": round(time.perf_counter() - started, 2),
    }
    if as_json:
        emit_json(document)
        return
    stdout_console().print(
        f"materialized {count:,} wallets to Redis (TTL {seconds} s) in {document['seconds']} s"
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
    from mlkit.toolkit.errors import MlkitError
    from mlkit.toolkit.fraud.etl import feature_row

    row = feature_row(open_engine(ctx), order)
    if row is None:
        raise MlkitError(
            f"order {order} has no stored features", hint="run `mlkit etl run` to compute them"
        )
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
