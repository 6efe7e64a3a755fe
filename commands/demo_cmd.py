"""`mlkit demo`: a reproducible demo world with its ground truth."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from ._common import JsonFlag, emit_json, load_config, progress_bar, stdout_console

app = typer.Typer(help="Generate demo data with ground truth.", no_args_is_help=True)


@app.command("seed")
def seed(
    ctx: typer.Context,
    orders: Annotated[
        int | None,
        typer.Option(
            "--orders",
            help="Ticket orders to generate [default: 100000; on --append, the world's own pace].",
        ),
    ] = None,
    days: Annotated[float, typer.Option("--days", help="Days of history.")] = 90,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: same seed, same data.")] = 42,
    families: Annotated[
        str | None,
        typer.Option("--families", help="Comma-separated: fraud,pricing,signal,recommender."),
    ] = None,
    start: Annotated[
        datetime | None,
        typer.Option(
            "--start",
            help="First day of the world (UTC) [default: 2026-01-01].",
            formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"],
        ),
    ] = None,
    append: Annotated[
        bool, typer.Option("--append", help="Continue the existing world --days more days.")
    ] = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="Delete the existing demo world first.")
    ] = False,
    shift: Annotated[
        list[str] | None,
        typer.Option(
            "--shift",
            help="NAME=FACTOR drift on purpose: price, fraud, volume, volatility (repeatable).",
            metavar="NAME=FACTOR",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Fill the database with a realistic demo world for all four model families.

    Records the truth it sampled from in demo_truth_* tables (models never read them).
    Loads in one transaction: a failure leaves the database as it was.

    Examples: mlkit demo seed --orders 1000000 --seed 7
              mlkit demo seed --append --days 7 --shift price=1.5
    """
    from mlkit.toolkit.db import make_engine
    from mlkit.toolkit.demo.seed import parse_families, parse_shifts, seed_demo

    chosen = parse_families(families)
    shifts = parse_shifts(shift)
    engine = make_engine(load_config(ctx).database_url)
    with progress_bar() as progress:
        result = seed_demo(
            engine,
            orders=orders,
            days=days,
            seed=seed,
            families=chosen,
            start=start,
            append=append,
            replace=replace,
            shift=shifts,
            progress=progress,
        )
    document = result.as_dict()
    if as_json:
        emit_json(document)
        return
    print_seed_summary(document)


def print_seed_summary(document: dict) -> None:
    from rich.table import Table

    console = stdout_console()
    what = "appended period" if document["period"] else "seeded world"
    console.print(
        f"{what} {document['period']} (seed {document['seed']}): "
        f"{document['start']} .. {document['end']}, families {','.join(document['families'])}"
    )
    table = Table()
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in sorted(document["rows"].items()):
        table.add_row(name, f"{rows:,}")
    console.print(table)
    rate = document["orders_per_second"]
    console.print(
        f"generated in {document['generate_seconds']} s, loaded in {document['load_seconds']} s"
        + (f" ({rate:,} orders/s)" if rate else "")
    )
