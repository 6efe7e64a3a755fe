"""`mlkit sources`: check the `sources:` mapping against the database, re-create its views."""

from __future__ import annotations

import typer

from ._common import JsonFlag, emit_json, err, load_config, load_context, stdout_console

app = typer.Typer(
    help="Your own tables as mlkit's inputs. `sources:` in config.yaml maps each input "
    "(orders, wallets, events, tickets, ticket_transfers, security_alerts, bot_detection, "
    "security_events, products, product_interactions, product_reviews, order_items, "
    "market_data) to a platform table with `columns:` (mlkit column: platform column or SQL "
    "expression) or to a `sql:` SELECT returning mlkit's column names. `mlkit db init` makes "
    "each a view in database.state_schema (mlkit's own tables go there too): values cast to "
    "mlkit's types, text and UUID ids hashed to integers (source_<id> keeps the original), "
    "defaults for columns left out (payment_method 'unknown', status 'COMPLETED', is_resale "
    "false, a label row confirmed fraud, nullable columns NULL); with orders mapped, wallets "
    "(age from the "
    "first order) and events (priced by the first sale) are derived unless mapped.",
    no_args_is_help=True,
)


@app.command("check")
def check(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """For each mapped input: reachable or not, its columns and their types, rows and time
    range, NULLs in required columns, label count and label delay (median/p90 of
    label_available_at minus the order's time), and ids that do not join (orders without
    their wallet or event, labels without their order). Works before `mlkit db init`.

    Each problem is one `problem: <input>: ...` line followed by a `hint:` line on stderr;
    exit 1 if there is any, else 0.

    Example: mlkit sources check --json
    """
    from mlkit.toolkit.sources.check import check_configured

    document = check_configured(load_config(ctx))
    if as_json:
        emit_json(document)
    else:
        _print_report(document)
    for problem in document["problems"]:
        err(f"problem: {problem['input']}: {problem['problem']}")
        err(f"hint: {problem['hint']}")
    if document["problems"]:
        raise typer.Exit(1)


def _print_report(document: dict) -> None:
    console = stdout_console()
    if not document["inputs"]:
        console.print("no input is mapped: mlkit reads its own tables (see `sources:`)")
    for name, entry in document["inputs"].items():
        if not entry["reachable"]:
            console.print(f"{name}: {entry['source']}: not reachable", markup=False)
            continue
        line = f"{name}: {entry['source']}"
        if "rows" in entry:
            start, end = entry["time_range"]
            line += f", {entry['rows']:,} rows, {entry['time_column']} {start} .. {end}"
        if "labels" in entry:
            line += f", {entry['labels']:,} labels"
        delay = entry.get("label_delay_days")
        if delay:
            line += f", label delay median {delay['median']:.2f} d, p90 {delay['p90']:.2f} d"
        console.print(line, markup=False)
        columns = ", ".join(f"{c} {t}" for c, t in entry["columns"].items())
        console.print(f"  columns: {columns}", markup=False)
        rates = entry.get("null_rates") or {}
        if rates:
            nulls = ", ".join(f"{c} {r:.1%}" for c, r in rates.items())
            console.print(f"  nulls in required columns: {nulls}", markup=False)
        for column, count in (entry.get("unjoined") or {}).items():
            console.print(f"  {column} without a row to join: {count:,}", markup=False)
    for name, origin in document["derived"].items():
        console.print(f"{name}: derived from {origin}", markup=False)


@app.command("apply")
def apply(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Re-create the views of the mapped inputs (and kpi_hourly over them) after an edit of
    `sources:`; `mlkit db init` does the same and creates mlkit's own tables too.

    Example: mlkit sources apply
    """
    from mlkit.toolkit.sources.apply import apply_sources

    config, engine = load_context(ctx)
    document = apply_sources(engine, config)
    if as_json:
        emit_json(document)
        return
    where = f" in {document['state_schema']}" if document["state_schema"] else ""
    what = ", ".join(document["views"]) or "none (no input is mapped)"
    stdout_console().print(f"views{where}: {what}", markup=False)
