"""`mlkit etl`: orders into the fraud feature table."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import (
    EngineOption,
    JsonFlag,
    UntilOption,
    emit_json,
    load_context,
    progress_bar,
    stdout_console,
)

app = typer.Typer(
    help="Extract orders, compute leakage-free features, load them.", no_args_is_help=True
)


SINCE_HELP = (
    "30d, 12h (back from now), 2026-01-01, or `last`: the incremental run [default: every order]."
)
IncrementalSinceOption = Annotated[str | None, typer.Option("--since", help=SINCE_HELP)]


@app.command("run")
def run(
    ctx: typer.Context,
    since: IncrementalSinceOption = None,
    until: UntilOption = None,
    engine_name: EngineOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Compute the features of orders in [since, until) and upsert them by order id.

    Every feature is known at its order's timestamp: computed only from rows strictly
    earlier (see `mlkit features show`). Idempotent: a re-run replaces the range's rows
    in one transaction.

    `--since last` (the nightly run) processes every order that has no feature row yet,
    whatever its timestamp (late or appended history included), and recomputes the
    featured orders of the last etl.lookback before the watermark when something new
    arrived. The watermark is the newest order timestamp processed. Nothing new: exit 0,
    nothing written.

    `--engine spark` computes the same features on Apache Spark (engine.spark in the
    config; README: "Spark"); `auto` picks Spark above engine.auto_rows orders.

    Example: mlkit etl run --since last
    """
    from mlkit.toolkit.spark.features import run_configured

    config, engine = load_context(ctx)
    with progress_bar() as progress:
        result, reason = run_configured(engine, config, since, until, engine_name, progress)
    document = {**result.as_dict(), "engine": reason}
    if as_json:
        emit_json(document)
        return
    if engine_name or config.get("engine.name") != "local":
        stdout_console().print(reason)
    watermark = document["watermark"] or "none"
    if not document["rows"]:
        what = "no new orders" if document["mode"] == "incremental" else "no orders in the range"
        stdout_console().print(f"etl {document['job']}: {what}; watermark {watermark}")
        return
    new = f", {document['new_orders']:,} new" if document["mode"] == "incremental" else ""
    stdout_console().print(
        f"etl {document['job']}: {document['rows']:,} orders{new} "
        f"({document['labelled_rows']:,} labelled) from {document['since'] or 'the beginning'} "
        f"to {document['until']} in {document['seconds']} s "
        f"({document['rows_per_second']:,} rows/s); watermark {watermark}"
    )
