"""`mlkit recommend` and `mlkit export training-data`: the recommender served and fed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ._common import JsonFlag, ModelOption, emit_json, err, load_config, open_engine, stdout_console

if TYPE_CHECKING:
    from mlkit.toolkit.recommender.serve import Recommender

app = typer.Typer(
    help="Recommend products: similar ones, for a user, or the popular ones.",
    no_args_is_help=True,
)
export_app = typer.Typer(help="Export data for training elsewhere.", no_args_is_help=True)

CountOption = Annotated[int, typer.Option("-n", "--count", help="How many items (1-100).")]


def _recommender(ctx: typer.Context, ref: str) -> Recommender:
    from mlkit.toolkit.recommender.serve import Recommender

    config = load_config(ctx)
    # check=False: Recommender.open connects itself and falls back when it cannot
    engine = open_engine(ctx, config, check=False)
    recommender = Recommender.open(engine, config, ref)
    if recommender.warning:
        err(f"warning: {recommender.warning}")
    return recommender


def _show(result: dict, title: str, as_json: bool) -> None:
    if as_json:
        emit_json(result)
        return
    from rich.table import Table

    table = Table(title=f"{title} ({result['model']})")
    for column in ("product", "name", "category", "score", "reason"):
        table.add_column(column, justify="right" if column in ("product", "score") else "left")
    for item in result["items"]:
        table.add_row(
            str(item["product_id"]),
            item["name"],
            item["category"],
            f"{item['score']:.4f}",
            item["reason"],
        )
    stdout_console().print(table)


@app.command("product")
def product(
    ctx: typer.Context,
    product_id: Annotated[int, typer.Argument(help="Product id.")],
    n: CountOption = 10,
    model: ModelOption = "recommender@prod",
    as_json: JsonFlag = False,
) -> None:
    """Products most like this one (text attributes, price, rating).

    Example: mlkit recommend product 42 -n 5 --json
    """
    result = _recommender(ctx, model).similar(product_id, n)
    _show(result, f"like product {product_id}", as_json)


@app.command("user")
def user(
    ctx: typer.Context,
    user_id: Annotated[
        int, typer.Argument(help="User id; one without history gets popular products.")
    ],
    n: CountOption = 10,
    model: ModelOption = "recommender@prod",
    as_json: JsonFlag = False,
) -> None:
    """Products for a user from their history (what they bought is left out); a user
    without history gets popular products, marked cold_start.

    Example: mlkit recommend user 7 -n 10 --json
    """
    result = _recommender(ctx, model).for_user(user_id, n)
    if result["cold_start"]:
        err(f"user {user_id} has no history yet: popular products instead")
    _show(result, f"for user {user_id}", as_json)


@app.command("popular")
def popular(
    ctx: typer.Context,
    n: CountOption = 10,
    category: Annotated[str | None, typer.Option("--category", help="Only this category.")] = None,
    model: ModelOption = "recommender@prod",
    as_json: JsonFlag = False,
) -> None:
    """The most popular products (weighted by interaction type and recency).

    Example: mlkit recommend popular -n 5 --category Jeans
    """
    result = _recommender(ctx, model).popular(n, category)
    _show(result, "popular" + (f" in {category}" if category else ""), as_json)


@export_app.command("training-data")
def training_data(
    ctx: typer.Context,
    days: Annotated[float, typer.Option("--days", help="Window in days, back from now.")] = 90,
    fmt: Annotated[str, typer.Option("--format", help="json, csv or parquet.")] = "json",
    out: Annotated[
        str | None,
        typer.Option(
            "--out", help="File (json) or directory (csv, parquet); json default: stdout."
        ),
    ] = None,
) -> None:
    """Products with their stats and the window's interactions, plus metadata, in the shape
    of the shop's own training-data endpoint. csv and parquet write products.*,
    interactions.* and metadata.json into the --out directory.

    Example: mlkit export training-data --days 90 --format parquet --out export/
    """
    from pathlib import Path

    from mlkit.toolkit.clock import utcnow
    from mlkit.toolkit.errors import MlkitError
    from mlkit.toolkit.recommender.export import write_export

    if fmt not in ("json", "csv", "parquet"):
        raise MlkitError(f"unknown format {fmt!r}", hint="choose json, csv or parquet")
    if fmt != "json" and not out:
        raise MlkitError(f"--format {fmt} writes several files", hint="give --out DIRECTORY")
    config = load_config(ctx)
    written = write_export(
        open_engine(ctx, config), days, fmt, Path(out) if out else None, utcnow()
    )
    if written is None:
        return
    err(
        f"exported {written['metadata']['total_products']:,} products and "
        f"{written['metadata']['total_interactions']:,} interactions to {written['path']}"
    )
