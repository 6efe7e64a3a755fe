"""`mlkit retention`: old orders and predictions into their archive tables."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import (
    JsonFlag,
    YesFlag,
    confirm_destructive,
    emit_json,
    load_config,
    open_engine,
    stdout_console,
)

app = typer.Typer(help="Data retention: archive old rows.", no_args_is_help=True)


@app.command("run")
def run(
    ctx: typer.Context,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="365d back from now, or a date [default: retention.older_than].",
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", min=1, help="Orders per transaction [default: config]."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would move; change nothing.")
    ] = False,
    yes: YesFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Move orders older than the cut-off, with their predictions, into orders_archive and
    fraud_predictions_archive; then old predictions whose order is gone.

    Batches of consecutive order ids, each one transaction that copies, checks every row
    is archived, then deletes: a crash loses and duplicates nothing, and a rerun finishes
    the job. Idempotent; a second run started meanwhile waits for the first. Live +
    archive counts are the same before and after.

    On a terminal it asks first (--yes skips the question); off a terminal (cron, scripts)
    it runs as told, since archiving moves rows and never drops them.

    With `outputs.orders_archive` / `outputs.fraud_predictions_archive` in the config, the
    platform's own old orders and predictions move into its archive tables the same way;
    orders that `sources:` maps are never deleted otherwise.

    Example: mlkit retention run --older-than 365d --dry-run
    """
    from mlkit.toolkit.retention import run_retention_configured

    config = load_config(ctx)
    if not dry_run:
        confirm_destructive(
            "retention run moves old orders and predictions out of the live tables",
            yes,
            unattended=True,
        )
    document = run_retention_configured(
        open_engine(ctx, config),
        config,
        older_than=older_than,
        batch_size=batch_size,
        dry_run=dry_run,
    )
    if as_json:
        emit_json(document)
        return
    plan, moved = document["to_move"], document["moved"]
    cutoff = f"{document['cutoff']:%Y-%m-%d %H:%M}"
    console = stdout_console()
    if dry_run:
        console.print(
            f"dry run: {plan['orders']:,} orders and {plan['predictions']:,} predictions older "
            f"than {cutoff} would move to the archive tables"
        )
        _print_platform(console, plan, "would move")
        return
    before, after = document["before"], document["after"]
    console.print(
        f"archived {moved['orders']:,} orders and {moved['predictions']:,} predictions older "
        f"than {cutoff} in {document['batches']} batch(es), {document['seconds']} s\n"
        f"  orders {before['orders']:,} -> {after['orders']:,} live, "
        f"{before['orders_archive']:,} -> {after['orders_archive']:,} archived; predictions "
        f"{before['fraud_predictions']:,} -> {after['fraud_predictions']:,} live, "
        f"{before['fraud_predictions_archive']:,} -> {after['fraud_predictions_archive']:,} "
        "archived"
        + ("" if document["conserved"] else "\n  (totals changed: other jobs wrote meanwhile)")
    )
    _print_platform(console, moved, "moved")


def _print_platform(console, counts: dict, verb: str) -> None:
    """The platform's own rows (`outputs:` maps its archive tables), when it has any mapped."""
    if "platform_orders" in counts:
        console.print(
            f"  the platform's tables: {counts['platform_orders']:,} orders and "
            f"{counts['platform_predictions']:,} predictions {verb} into its archive tables"
        )
