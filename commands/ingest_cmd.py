"""`mlkit ingest`: load external data files into the database."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import JsonFlag, emit_json, open_engine, stdout_console

app = typer.Typer(
    help="Load external data (market bars, a platform's CSV exports) into the database.",
    no_args_is_help=True,
)

TableCsv = Annotated[
    str,
    typer.Option("--csv", help="The CSV export, or - for stdin.", metavar="FILE|-"),
]
TableMap = Annotated[
    list[str] | None,
    typer.Option(
        "--map",
        help="target=source: fill mlkit's column from the file's column (repeatable).",
        metavar="TARGET=SOURCE",
    ),
]


def _ingest_table(ctx: typer.Context, kind: str, csv: str, maps, as_json: bool) -> None:
    """Upsert one CSV export into its table and say what changed."""
    from mlkit.toolkit.imports.tables import ingest_table_file

    result = ingest_table_file(open_engine(ctx), kind, csv, maps)
    if as_json:
        emit_json(result)
        return
    ignored = f"; ignored columns: {', '.join(result['ignored'])}" if result["ignored"] else ""
    stdout_console().print(
        f"{result['table']}: {result['rows_read']:,} rows from {result['file']} "
        f"({result['inserted']:,} new, {result['updated']:,} updated, "
        f"{result['skipped']:,} unchanged){ignored}"
    )


def _table_command(kind: str, doc: str) -> None:
    """Register `mlkit ingest <kind>`: the same options for every table, its own help."""

    def command(
        ctx: typer.Context, csv: TableCsv, maps: TableMap = None, as_json: JsonFlag = False
    ) -> None:
        _ingest_table(ctx, kind, csv, maps, as_json)

    command.__doc__ = doc
    app.command(kind)(command)


_table_command(
    "orders",
    """Upsert orders (transactions) into orders, keyed on order_id.

    Needs order_id, buyer_wallet_id, event_id, price and created_at (common names such as
    transaction_id, wallet_address, price_paid and timestamp are recognised). Wallet
    columns may hold addresses or card ids as text: each becomes a wallet, dated by its
    first order. Timestamps are ISO 8601 or epoch seconds/milliseconds (UTC). The whole
    file is checked first; a bad line is named and nothing is written.

    Example: mlkit ingest orders --csv transactions.csv --map buyer_wallet_id=wallet_address
    """,
)


_table_command(
    "labels",
    """Upsert fraud labels into security_alerts, keyed on (order_id, alert_type).

    Needs order_id and label_available_at, the time the label became known (reported_at,
    confirmed_at, ... are recognised); optional is_fraud (default true), alert_type
    (default imported), severity, details. Each order must be in orders already; its
    buyer becomes the label's wallet. Training and features count a label only from
    label_available_at on.

    Example: mlkit ingest labels --csv chargebacks.csv --map label_available_at=reported_at
    """,
)


_table_command(
    "events",
    """Upsert events (or merchants) into events, keyed on event_id.

    Needs event_id, name, base_price, capacity, event_date and one of sale_start or
    created_at; optional event_type, venue, city, venue_lat, venue_lon.

    Example: mlkit ingest events --csv events.csv --map base_price=face_value
    """,
)


_table_command(
    "products",
    """Upsert the product catalog into products, keyed on product_id.

    Needs product_id, name, category and price; optional gender (M/F/U), color, material,
    size, description, created_at (default: the time of the first import).

    Example: mlkit ingest products --csv catalog.csv --map product_id=sku_id
    """,
)


_table_command(
    "interactions",
    """Upsert product interactions into product_interactions.

    Needs user_id, product_id, interaction_type (view, add_to_cart, purchase, rate) and
    created_at; optional rating (1-5), session_id, time_spent_seconds. Keyed on id when
    the file has one, else on (user_id, product_id, interaction_type, created_at). Each
    product must be in products already.

    Example: mlkit ingest interactions --csv clicks.csv --map interaction_type=action
    """,
)


@app.command("market")
def market(
    ctx: typer.Context,
    csv: Annotated[
        str,
        typer.Option(
            "--csv",
            help="OHLCV file, or - for stdin: a date/datetime column and open, high, "
            "low, close, volume (any case, common variants).",
            metavar="FILE",
        ),
    ],
    symbol: Annotated[str, typer.Option("--symbol", help="The symbol the bars belong to.")],
    no_header: Annotated[
        bool,
        typer.Option(
            "--no-header",
            help="The first line is data: a recognised layout by its column count (12 "
            "Binance klines, 7 Kraken OHLCVT, 6 time/open/high/low/close/volume).",
        ),
    ] = False,
    ts_column: Annotated[
        str | None,
        typer.Option("--ts-column", help="The time column's name, when guessing is wrong."),
    ] = None,
    no_adjust: Annotated[
        bool,
        typer.Option("--no-adjust", help="Keep Close as written and ignore an Adj Close column."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Upsert a CSV of OHLCV bars into market_data, keyed on (symbol, ts).

    The whole file is checked first: missing columns, unreadable dates, dates before
    1990 or more than a day ahead, epoch timestamps mixing units (seconds and
    milliseconds), duplicate timestamps, non-numeric, negative or zero prices, negative
    volumes and highs/lows that do not bound open and close are reported with their
    line numbers, and then nothing is written. A good file goes in as one transaction;
    loading it again changes nothing, a corrected file overwrites the bars it repeats.

    The unnamed first column pandas' to_csv() writes is the time when no other column
    is; a file whose first line is values reads as a known exchange layout. With an
    Adj Close column beside Close, the adjusted close is the close and open/high/low
    are scaled alike (splits and dividends are not price moves); --no-adjust keeps Close.

    Example: mlkit ingest market --csv examples/market_btcusdt.csv --symbol BTCUSDT

    Example: unzip -p BTCUSDT-1h-2025-01.zip | mlkit ingest market --csv - --symbol BTCUSDT
    """
    from mlkit.toolkit.signal.ingest import ingest_market_file

    result = ingest_market_file(
        open_engine(ctx),
        csv,
        symbol,
        no_header=no_header,
        ts_column=ts_column,
        adjust=not no_adjust,
    ).as_dict()
    if as_json:
        emit_json(result)
        return
    console = stdout_console()
    layout = "" if result["layout"] == "header" else f" ({result['layout']}, no header)"
    console.print(
        f"{result['symbol']}: {result['rows']:,} bars from {result['file']}{layout} "
        f"({result['new']:,} new, {result['updated']:,} already there and updated), "
        f"{result['first_ts']} to {result['last_ts']}, in {result['seconds']} s"
    )
    adjusted = result["adjusted"]
    if adjusted and adjusted["used"]:
        console.print(
            f"  close from {adjusted['column']!r}, open/high/low scaled alike "
            f"({adjusted['bars_changed']:,} bars changed); --no-adjust keeps Close"
        )
    elif adjusted:
        console.print(f"  {adjusted['column']!r} ignored (--no-adjust): the close is Close")
