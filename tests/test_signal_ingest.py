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
