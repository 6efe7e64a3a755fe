"""`mlkit ingest`: load external data files into the database."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import JsonFlag, emit_json, open_engine, stdout_console

app = typer.Typer(help="Load external data (market bars) into the database.", no_args_is_help=True)


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
