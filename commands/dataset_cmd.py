"""`mlkit dataset`: versioned, point-in-time training sets."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import (
    EngineOption,
    JsonFlag,
    SinceOption,
    UntilOption,
    emit_json,
    load_context,
    stdout_console,
)

app = typer.Typer(help="Build versioned training-set snapshots.", no_args_is_help=True)


@app.command("build")
def build(
    ctx: typer.Context,
    family: Annotated[str, typer.Argument(help="Model family: fraud.")],
    since: SinceOption = None,
    until: UntilOption = None,
    label_cutoff: Annotated[
        str | None,
        typer.Option(
            "--label-cutoff", help="Labels available after this do not count [default: now]."
        ),
    ] = None,
    set_current: Annotated[
        bool, typer.Option("--set-current", help="Also move the _CURRENT pointer here.")
    ] = False,
    engine_name: EngineOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Snapshot a training set as Parquet with a manifest under the datasets directory.

    Orders are as-of-joined to the feature rows known at their moment; a label counts when
    it was available at the label cut-off, and orders younger than fraud.label_delay_days
    at the cut-off are left out (their labels may still arrive). _LATEST always moves.

    `--engine spark` builds the same snapshot on Apache Spark; `auto` picks Spark above
    engine.auto_rows orders.

    Example: mlkit dataset build fraud --since 90d --set-current
    """
    from mlkit.toolkit.errors import MlkitError
    from mlkit.toolkit.spark.dataset import build_configured

    if family != "fraud":
        raise MlkitError(f"no dataset builder for {family!r}", hint="families with one: fraud")
    config, engine = load_context(ctx)
    result, reason = build_configured(
        engine,
        config,
        requested=engine_name,
        since=since,
        until=until,
        label_cutoff=label_cutoff,
        set_current=set_current,
    )
    document = {**result.as_dict(), "engine": reason}
    if as_json:
        emit_json(document)
        return
    if engine_name or config.get("engine.name") != "local":
        stdout_console().print(reason)
    counts = document["label_counts"]
    stdout_console().print(
        f"dataset {document['run_id']}: {document['rows']:,} rows "
        f"({counts['1']:,} fraud / {counts['0']:,} not), {document['time_range']['start']} .. "
        f"{document['time_range']['end']}, labels as of {document['label_cutoff']}\n"
        f"  {document['path']}"
    )
