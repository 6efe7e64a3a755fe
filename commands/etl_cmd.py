"""`mlkit etl`: orders into the fraud feature table."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import JsonFlag, emit_json, load_config, progress_bar, stdout_console

app = typer.Typer(help="Extract orders, compute leakage-free features, load them.",
                  no_args_is_help=True)  # fmt: skip


@app.command("run")
def run(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="30d, 12h, 2026-01-01, or `last` (from the watermark) [default: every order].",
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="End of the range, exclusive [default: now].")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Compute the features of orders in [since, until) and upsert them by order id.

    Every feature is known at its order's timestamp: computed only from rows strictly
    earlier (see `mlkit features show`). Idempotent: a re-run replaces the range's rows
    in one transaction and moves the watermark that `--since last` continues from.

    Example: mlkit etl run --since last
    """
    from mlkit.toolkit.db import make_engine
    from mlkit.toolkit.fraud.etl import resolve_range, run_etl

    engine = make_engine(load_config(ctx).database_url)
    start, end = resolve_range(engine, since, until)
    with progress_bar() as progress:
        incremental = since is not None and since.strip() == "last"
        result = run_etl(engine, start, end, progress=progress, allow_empty=incremental)
    document = result.as_dict()
    if as_json:
        emit_json(document)
        return
    stdout_console().print(
        f"etl {document['job']}: {document['rows']:,} orders "
        f"({document['labelled_rows']:,} labelled) from {document['since'] or 'the beginning'} "
        f"to {document['until']} in {document['seconds']} s "
        f"({document['rows_per_second']:,} rows/s)"
    )
