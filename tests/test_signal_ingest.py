"""`mlkit ingest market` on every dialect: header variants, idempotent upsert, and bad files
that name their lines and write nothing."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from mlkit.toolkit.schema import market_data

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "market_btcusdt.csv"

GOOD = """Date,Open,High,Low,Close,Volume
2026-01-01 00:00:00,100,102,99,101,10
2026-01-01 01:00:00,101,103,100,102,11
2026-01-01 02:00:00,102,104,101,103,12
"""


def symbol() -> str:
    return f"T{uuid.uuid4().hex[:8].upper()}"


def rows(engine, sym: str) -> list:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(market_data).where(market_data.c.symbol == sym).order_by(market_data.c.ts)
        ).fetchall()


@pytest.fixture
def ingest(engine, cli, tmp_path):
    url = engine.url.render_as_string(hide_password=False)

    def run(text: str, sym: str, *extra: str, name: str = "bars.csv"):
        path = tmp_path / name
        path.write_text(text)
        return cli(
            "ingest",
            "market",
            "--csv",
            str(path),
            "--symbol",
            sym,
            *extra,
            env={"MLKIT_DATABASE_URL": url},
        )

    return run


def test_a_file_loads_and_loading_it_again_changes_nothing(engine, ingest):
    sym = symbol()
    first = ingest(GOOD, sym.lower(), "--json")
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert (report["symbol"], report["rows"], report["new"], report["updated"]) == (sym, 3, 3, 0)
    assert report["first_ts"] == "2026-01-01T00:00:00"
    loaded = rows(engine, sym)
    assert [(r.open, r.high, r.low, r.close, r.volume) for r in loaded] == [
        (100, 102, 99, 101, 10),
        (101, 103, 100, 102, 11),
        (102, 104, 101, 103, 12),
    ]
    again = ingest(GOOD, sym, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["new"] == 0 and json.loads(again.stdout)["updated"] == 3
    assert rows(engine, sym) == loaded
    # A corrected file with one more bar overwrites the bars it repeats.
    corrected = GOOD.replace(
        "2026-01-01 01:00:00,101,103,100,102,11", "2026-01-01 01:00:00,101,103,100,102.5,20"
    )
    corrected += "2026-01-01 03:00:00,103,105,102,104,13\n"
    third = ingest(corrected, sym, "--json")
    assert third.exit_code == 0, third.output
    assert (json.loads(third.stdout)["new"], json.loads(third.stdout)["updated"]) == (1, 3)
    after = rows(engine, sym)
    assert len(after) == 4 and (after[1].close, after[1].volume) == (102.5, 20)
    human = ingest(GOOD, sym)
    assert human.exit_code == 0 and "3 bars" in human.stdout


def test_header_variants_epoch_milliseconds_and_semicolons(engine, ingest):
    sym = symbol()
    text = (
        "open_time;O;H;L;C;Vol\n"
        "1767229200000;1.5;1.6;1.4;1.55;100\n"
        "1767225600000;1.4;1.5;1.3;1.5;90\n"
    )
    result = ingest(text, sym, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["columns"]["ts"] == "open_time"
    loaded = rows(engine, sym)
    assert [r.ts.isoformat() for r in loaded] == ["2026-01-01T00:00:00", "2026-01-01T01:00:00"]
    assert loaded[0].close == 1.5
    separate = "date,time,open,high,low,close,volume\n2026-01-02,05:00,1,2,0.5,1.5,3\n"
    offset = "Timestamp,open,high,low,close,volume\n2026-01-02T07:00:00+02:00,1,2,0.5,1.5,3\n"
    sym2 = symbol()
    assert ingest(separate, sym2).exit_code == 0
    assert ingest(offset, sym2).exit_code == 0
    # 07:00 at +02:00 is the 05:00 UTC bar the first file wrote: one bar, updated.
    assert [r.ts.isoformat() for r in rows(engine, sym2)] == ["2026-01-02T05:00:00"]


BAD_FILES = {
    "missing_columns": (
        "Date,Open,High,Close\n2026-01-01,1,2,1.5\n",
        r"missing column\(s\) low, volume",
    ),
    "unparsable_date": (
        GOOD + "yesterday,1,2,0.5,1.5,3\n",
        r"line 5: cannot read the date 'yesterday'",
    ),
    "duplicated_timestamp": (
        GOOD + "2026-01-01 01:00:00,101,103,100,102,11\n",
        r"line 5: duplicate timestamp 2026-01-01 01:00:00 \(first on line 3\)",
    ),
    "negative_price": (
        GOOD + "2026-01-01 03:00:00,-5,104,101,103,12\n",
        r"line 5: negative open price -5",
    ),
    "negative_volume": (
        GOOD + "2026-01-01 03:00:00,102,104,101,103,-1\n",
        r"line 5: negative volume -1",
    ),
    "not_a_number": (
        GOOD + "2026-01-01 03:00:00,102,104,101,n/a,12\n",
        r"line 5: close 'n/a' is not a number",
    ),
    "high_below_low": (
        GOOD + "2026-01-01 03:00:00,102,100,101,103,12\n",
        r"line 5: high 100 and low 101 do not bound open and close",
    ),
    # Read by the file's largest magnitude, the seconds would be a bar in January 1970.
    "mixed_epoch_units": (
        "ts,open,high,low,close,volume\n1767225600000,1,2,0.5,1.5,3\n"
        "1767229200000,1,2,0.5,1.5,3\n1767232800,1,2,0.5,1.5,3\n",
        r"line 4: epoch timestamp in seconds, but line 2 is in milliseconds \(one unit per file\)",
    ),
    "before_1990": (
        GOOD + "1989-12-31 23:00:00,102,104,101,103,12\n",
        r"line 5: date '1989-12-31 23:00:00' \(1989-12-31 23:00:00\) is outside 1990-01-01",
    ),
    "far_future": (
        GOOD + "2999-01-01 00:00:00,102,104,101,103,12\n",
        r"line 5: date '2999-01-01 00:00:00' .* is outside 1990-01-01 \.\. ",
    ),
    "infinite_price": (
        GOOD + "2026-01-01 03:00:00,102,inf,101,103,12\n",
        r"line 5: high 'inf' is not a number",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_file_names_its_line_and_writes_nothing(engine, ingest, case):
    text, message = BAD_FILES[case]
    sym = symbol()
    result = ingest(text, sym)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and len(lines) == 2 and lines[1].startswith("hint: ")
    assert re.search(message, lines[0]), lines[0]
    assert rows(engine, sym) == []  # the good lines before the bad one are not written either


def test_many_bad_lines_are_counted_and_other_symbols_refused(engine, ingest):
    sym = symbol()
    bad = GOOD + "".join(f"2026-01-02 {h:02d}:00:00,1,2,0.5,1.5,-{h + 1}\n" for h in range(8))
    result = ingest(bad, sym)
    assert result.exit_code == 1
    assert "line 5: negative volume -1" in result.stderr
    assert "(and 3 more problems)" in result.stderr
    mixed = "symbol,date,open,high,low,close,volume\nBTCUSDT,2026-01-01,1,2,0.5,1.5,3\n"
    refused = ingest(mixed, sym)
    assert refused.exit_code == 1 and "line 2: symbol 'BTCUSDT' is not" in refused.stderr
    assert rows(engine, sym) == []
    assert ingest("", sym).exit_code == 1
    assert "invalid symbol" in ingest(GOOD, "BTC/USDT").stderr


def test_the_example_file_loads(engine, cli):
    url = engine.url.render_as_string(hide_password=False)
    sym = symbol()
    result = cli(
        "ingest",
        "market",
        "--csv",
        str(EXAMPLE),
        "--symbol",
        sym,
        "--json",
        env={"MLKIT_DATABASE_URL": url},
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == len(rows(engine, sym)) == 2000


# ---------------------------------------------------------------- layouts, stdin, Adj Close


def _kline(open_ms: int, o: float, c: float) -> str:
    """One Binance kline line: 12 columns, times in milliseconds."""
    high, low = max(o, c) + 1, min(o, c) - 1
    return (
        f"{open_ms},{o:.8f},{high:.8f},{low:.8f},{c:.8f},12.5,{open_ms + 3_599_999},"
        f"1250.0,42,6.1,610.0,0\n"
    )


HOUR_MS = 3_600_000
KLINES = "".join(_kline(1767225600000 + i * HOUR_MS, 100 + i, 101 + i) for i in range(3))


def test_pandas_to_csv_with_its_index_column(engine, ingest):
    import pandas as pd

    frame = pd.DataFrame(
        {
            "open": [1.0, 2.0, 3.0],
            "high": [2.0, 3.0, 4.0],
            "low": [0.5, 1.0, 2.0],
            "close": [1.5, 2.5, 3.5],
            "volume": [1, 1, 1],
        },
        index=pd.date_range("2026-01-01", periods=3, freq="h"),
    )
    # An unnamed DatetimeIndex: the header starts with an empty name, the times under it.
    sym = symbol()
    result = ingest(frame.to_csv(), sym, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["columns"]["ts"] == "Unnamed: 0"
    assert [(r.ts.isoformat(), r.close) for r in rows(engine, sym)] == [
        ("2026-01-01T00:00:00", 1.5),
        ("2026-01-01T01:00:00", 2.5),
        ("2026-01-01T02:00:00", 3.5),
    ]
    # A RangeIndex beside a date column: the row numbers are ignored.
    sym2 = symbol()
    with_dates = frame.rename_axis("date").reset_index()
    assert with_dates.to_csv().startswith(",date,")
    result = ingest(with_dates.to_csv(), sym2, "--json")
    assert result.exit_code == 0, result.output
    assert [r.ts.isoformat() for r in rows(engine, sym2)] == [
        r.ts.isoformat() for r in rows(engine, sym)
    ]
    # Row numbers and no date anywhere: refused, saying so.
    sym3 = symbol()
    refused = ingest(frame.reset_index(drop=True).to_csv(), sym3)
    assert refused.exit_code == 1
    assert "unnamed first column holds row numbers" in refused.stderr
    assert "--ts-column" in refused.stderr and rows(engine, sym3) == []


def test_binance_klines_without_a_header(engine, ingest):
    sym = symbol()
    result = ingest(KLINES, sym, "--no-header", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["layout"] == "binance_klines" and report["columns"]["ts"] == "open_time"
    loaded = rows(engine, sym)
    assert [r.ts.isoformat() for r in loaded] == [
        "2026-01-01T00:00:00",
        "2026-01-01T01:00:00",
        "2026-01-01T02:00:00",
    ]
    assert (loaded[0].open, loaded[0].close, loaded[0].volume) == (100, 101, 12.5)
    # A first line of values is data even without --no-header; Binance spot files of
    # 2025 on give microseconds, read as such.
    sym2 = symbol()
    micro = "".join(_kline((1767225600000 + i * HOUR_MS) * 1000, 5, 6) for i in range(2))
    micro = micro.replace(",3599999", ",3599999999")
    result = ingest(micro, sym2, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["layout"] == "binance_klines"
    assert [r.ts.isoformat() for r in rows(engine, sym2)][1] == "2026-01-01T01:00:00"
    human = ingest(KLINES, sym)
    assert human.exit_code == 0 and "(binance_klines, no header)" in human.stdout


def test_a_bad_line_of_a_headerless_file_is_named_by_its_line(engine, ingest):
    sym = symbol()
    bad = KLINES.splitlines(keepends=True)
    bad[1] = bad[1].replace(",12.5,", ",-3,", 1)
    result = ingest("".join(bad), sym, "--no-header")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "line 2: negative volume -3" in result.stderr
    assert rows(engine, sym) == []
    unknown = ingest("1767225600000,1,2,0.5,1.5\n", sym, "--no-header")
    assert unknown.exit_code == 1
    assert "line 1 has 5 columns and no header" in unknown.stderr
    assert "12 columns: Binance klines" in unknown.stderr and rows(engine, sym) == []


def test_ts_column_names_the_time(engine, ingest):
    text = (
        "Period Start,Period End,Open,High,Low,Close,Volume\n"
        "2026-01-01 00:00,2026-01-01 01:00,1,2,0.5,1.5,3\n"
        "2026-01-01 01:00,2026-01-01 02:00,1.5,2,1,1.8,4\n"
    )
    sym = symbol()
    missing = ingest(text, sym)
    assert missing.exit_code == 1 and "missing column(s) date" in missing.stderr
    assert "--ts-column" in missing.stderr
    result = ingest(text, sym, "--ts-column", "period end", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["columns"]["ts"] == "Period End"
    assert [r.ts.isoformat() for r in rows(engine, sym)] == [
        "2026-01-01T01:00:00",
        "2026-01-01T02:00:00",
    ]
    # It wins over a column the names would pick: the klines' close time instead of open.
    sym2 = symbol()
    closing = ingest(KLINES, sym2, "--no-header", "--ts-column", "close_time", "--json")
    assert closing.exit_code == 0, closing.output
    # (MySQL's DATETIME keeps whole seconds.)
    assert rows(engine, sym2)[0].ts.isoformat().startswith("2026-01-01T00:59:59")
    wrong = ingest(text, symbol(), "--ts-column", "when")
    assert wrong.exit_code == 1
    assert "no column 'when' for --ts-column" in wrong.stderr and "'Period End'" in wrong.stderr


def test_stdin(engine):
    from typer.testing import CliRunner

    from mlkit.commands.main import app

    env = {"MLKIT_DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    sym = symbol()
    runner = CliRunner()
    args = ["ingest", "market", "--csv", "-", "--symbol", sym, "--json"]
    result = runner.invoke(app, args, input=GOOD, env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["file"] == "stdin" and len(rows(engine, sym)) == 3
    piped = runner.invoke(app, args, input=KLINES, env=env)
    assert piped.exit_code == 0 and json.loads(piped.stdout)["layout"] == "binance_klines"
    bad = runner.invoke(app, args[:-1], input=GOOD + "2026-01-01 03:00:00,1,2,0.5,x,1\n", env=env)
    assert bad.exit_code == 1
    assert bad.stderr.startswith("error: stdin: line 5: close 'x' is not a number")
    empty = runner.invoke(app, args, input="", env=env)
    assert empty.exit_code == 1 and "empty" in empty.stderr


YAHOO = """Date,Open,High,Low,Close,Adj Close,Volume
2026-01-02,200,210,190,205,102.5,1000
2026-01-05,205,215,200,210,105,1100
2026-01-06,105,108,103,107,107,2300
"""


def test_adj_close_is_the_close_with_open_high_low_scaled_alike(engine, ingest):
    # A 2:1 split before the third day: the raw closes fall by half, the adjusted do not.
    sym = symbol()
    result = ingest(YAHOO, sym, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["adjusted"] == {
        "column": "Adj Close",
        "used": True,
        "bars_changed": 2,
        "factor_range": [0.5, 1.0],
    }
    assert [(r.open, r.high, r.low, r.close, r.volume) for r in rows(engine, sym)] == [
        (100, 105, 95, 102.5, 1000),
        (102.5, 107.5, 100, 105, 1100),
        (105, 108, 103, 107, 2300),
    ]
    human = ingest(YAHOO, sym)
    assert "close from 'Adj Close'" in human.stdout and "--no-adjust" in human.stdout
    sym2 = symbol()
    raw = ingest(YAHOO, sym2, "--no-adjust", "--json")
    assert raw.exit_code == 0, raw.output
    assert json.loads(raw.stdout)["adjusted"] == {
        "column": "Adj Close",
        "used": False,
        "bars_changed": 0,
    }
    assert [r.close for r in rows(engine, sym2)] == [205, 210, 107]
    bad = ingest(YAHOO.replace(",102.5,", ",,"), symbol())
    assert bad.exit_code == 1 and "line 2: empty Adj Close" in bad.stderr
