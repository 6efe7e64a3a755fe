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
            help="OHLCV file: a date/datetime column and open, high, "
            "low, close, volume (any case, common variants).",
            metavar="FILE",
        ),
    ],
    symbol: Annotated[str, typer.Option("--symbol", help="The symbol the bars belong to.")],
    as_json: JsonFlag = False,
) -> None:
    """Upsert a CSV of OHLCV bars into market_data, keyed on (symbol, ts).

    The whole file is checked first: missing columns, unreadable dates, dates before
    1990 or more than a day ahead, epoch timestamps mixing units (seconds and
    milliseconds), duplicate timestamps, non-numeric, negative or zero prices, negative
    volumes and highs/lows that do not bound open and close are reported with their
    line numbers, and then nothing is written. A good file goes in as one transaction;
    loading it again changes nothing, a corrected file overwrites the bars it repeats.

    Example: mlkit ingest market --csv examples/market_btcusdt.csv --symbol BTCUSDT
    """
    from mlkit.toolkit.signal.ingest import ingest_market_file

    result = ingest_market_file(open_engine(ctx), csv, symbol).as_dict()
    if as_json:
        emit_json(result)
        return
    stdout_console().print(
        f"{result['symbol']}: {result['rows']:,} bars from {result['file']} "
        f"({result['new']:,} new, {result['updated']:,} already there and updated), "
        f"{result['first_ts']} to {result['last_ts']}, in {result['seconds']} s"
    )
