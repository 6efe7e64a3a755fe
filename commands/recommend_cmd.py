"""`mlkit recommend` and `mlkit export training-data`: the recommender served and fed."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import (
    JsonFlag,
    ModelOption,
    emit_json,
    err,
    load_context,
    open_engine,
    stdout_console,
)

app = typer.Typer(
    help="Recommend products: similar ones, for a user, or the popular ones.",
    no_args_is_help=True,
)
export_app = typer.Typer(help="Export data for training elsewhere.", no_args_is_help=True)

CountOption = Annotated[int, typer.Option("-n", "--count", help="How many items (1-100).")]


def _unchecked(ctx: typer.Context):
    """An engine not yet connected and the configuration: the recommender connects itself
    and falls back to its last good artifact when it cannot."""
    config, engine = load_context(ctx, check=False)
    return engine, config


def _warn(text: str) -> None:
    err(f"warning: {text}")


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
    from mlkit.toolkit.recommender.serve import similar_products

    result = similar_products(*_unchecked(ctx), model, product_id, n, warn=_warn)
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
    from mlkit.toolkit.recommender.serve import user_products

    result = user_products(*_unchecked(ctx), model, user_id, n, warn=_warn)
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
    from mlkit.toolkit.recommender.serve import popular_products

    result = popular_products(*_unchecked(ctx), model, n, category, warn=_warn)
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
    from mlkit.toolkit.errors import MlkitError
    from mlkit.toolkit.recommender.export import export_training_data

    if fmt not in ("json", "csv", "parquet"):
        raise MlkitError(f"unknown format {fmt!r}", hint="choose json, csv or parquet")
    if fmt != "json" and not out:
        raise MlkitError(f"--format {fmt} writes several files", hint="give --out DIRECTORY")
    written = export_training_data(open_engine(ctx), days, fmt, out)
    if written is None:
        return
    err(
        f"exported {written['metadata']['total_products']:,} products and "
        f"{written['metadata']['total_interactions']:,} interactions to {written['path']}"
    )
