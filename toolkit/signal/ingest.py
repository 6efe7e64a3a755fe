"""`mlkit ingest market`: OHLCV bars from a CSV file (or stdin) into `market_data`, upserted on
(symbol, ts) in one transaction; a file with any bad row writes nothing and the error names
its lines (the row rules live in `toolkit.inputs`).

Files come with a header line (names matched loosely, the unnamed index column pandas writes
read as the time when no other column is one), or without one in a recognised exchange
layout (`LAYOUTS`). A split- and dividend-adjusted close (`Adj Close`) replaces the close,
open, high and low scaled by the same factor, unless asked not to: the model learns from
returns, and a split left in the prices is a false crash.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from ..clock import utcnow
from ..db import explain_db_error
from ..errors import MlkitError
from ..imports.csvfile import STDIN, delimiter, normal_name, open_source
from ..inputs import LineProblems, check_epoch_units, check_market_rows, epoch_units
from .market import PRICE_COLUMNS, normalize_symbol, upsert_bars

# Accepted header names per column, after lower-casing and turning spaces/dashes into "_".
COLUMN_NAMES: dict[str, tuple[str, ...]] = {
    "ts": (
        "ts",
        "timestamp",
        "datetime",
        "date_time",
        "time_stamp",
        "open_time",
        "opentime",
        "time_open",
        "date",
        "time",
    ),
    "open": ("open", "o", "open_price", "opening_price"),
    "high": ("high", "h", "high_price", "max"),
    "low": ("low", "l", "low_price", "min"),
    "close": ("close", "c", "close_price", "closing_price", "last", "price", "adj_close"),
    "volume": ("volume", "vol", "v", "base_volume", "volume_base", "qty", "quantity"),
}
# A close adjusted for splits and dividends (Yahoo's `Adj Close`, Alpha Vantage's).
ADJUSTED_CLOSE_NAMES = ("adj_close", "adjusted_close", "adjclose", "adj._close")
SYMBOL_NAMES = ("symbol", "ticker", "pair", "instrument")
# Files without a header line, told apart by their number of columns: (name, description,
# column names). The time is the bar's open, in any epoch unit or as text.
LAYOUTS: dict[int, tuple[str, str, tuple[str, ...]]] = {
    12: (
        "binance_klines",
        "Binance klines",
        (
            "open_time",
            "open",
            "high",
            "low",
            "close",
            "volume",
            "close_time",
            "quote_volume",
            "trades",
            "taker_buy_base_volume",
            "taker_buy_quote_volume",
            "ignore",
        ),
    ),
    7: (
        "kraken_ohlcvt",
        "Kraken OHLCVT",
        ("time", "open", "high", "low", "close", "volume", "trades"),
    ),
    6: ("ohlcv", "time, open, high, low, close, volume", ("time", *PRICE_COLUMNS)),
}
MAX_LISTED = 5  # bad lines named in the error; the rest are counted
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_DATE_START = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{2,4}")
_UNNAMED = re.compile(r"(unnamed:_\d+)?")


@dataclass
class IngestResult:
    symbol: str
    file: str
    rows: int
    new: int
    updated: int  # bars that already existed
    first_ts: datetime | None
    last_ts: datetime | None
    columns: dict[str, str]
    seconds: float
    layout: str = "header"  # or the LAYOUTS name of a file without a header line
    adjusted: dict | None = None  # what was done with an adjusted-close column

    def as_dict(self) -> dict:
        return asdict(self) | {
            "first_ts": self.first_ts.isoformat() if self.first_ts is not None else None,
            "last_ts": self.last_ts.isoformat() if self.last_ts is not None else None,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class MarketFile:
    """A file's checked bars and how they were read."""

    bars: pd.DataFrame  # ts, open, high, low, close, volume; time-ordered (+ file_symbol, line)
    columns: dict[str, str]  # our column -> the file's
    layout: str
    adjusted: dict | None


def _unnamed(header: str) -> bool:
    """A column without a name: pandas writes its index so (and reads it back as `Unnamed: 0`)."""
    return bool(_UNNAMED.fullmatch(normal_name(header)))


def _ts_column(headers: list[str], ts_column: str, where: str) -> str:
    """The header `--ts-column` names (any case)."""
    for header in headers:
        if header == ts_column or normal_name(header) == normal_name(ts_column):
            return header
    shown = ", ".join(repr(h) for h in headers)
    raise MlkitError(
        f"{where}: no column {ts_column!r} for --ts-column (the columns are {shown})",
        hint="name one of those columns (any case)",
    )


def map_columns(headers: list[str], where: str, ts_column: str | None = None) -> dict[str, str]:
    """Our column -> the file's header; raises naming every missing one. Without a time
    column by name, an unnamed first column (a pandas index) is taken for the time."""
    by_normal: dict[str, str] = {}
    for header in headers:
        by_normal.setdefault(normal_name(header), header)
    mapping: dict[str, str] = {}
    if ts_column is not None:
        mapping["ts"] = _ts_column(headers, ts_column, where)
    for column, variants in COLUMN_NAMES.items():
        for variant in variants:
            if column in mapping:
                break
            if variant in by_normal and by_normal[variant] not in mapping.values():
                mapping[column] = by_normal[variant]
    if ts_column is None:
        # A date column and a time column side by side: the timestamp is both.
        if normal_name(mapping.get("ts", "")) == "date" and "time" in by_normal:
            mapping["time"] = by_normal["time"]
        if "ts" not in mapping and headers and _unnamed(headers[0]):
            mapping["ts"] = headers[0]
    missing = [c for c in COLUMN_NAMES if c not in mapping]
    if missing:
        shown = ", ".join(repr(h) for h in headers) or "none"
        wanted = "; ".join(
            f"{'date' if c == 'ts' else c}: {'/'.join(COLUMN_NAMES[c][:4])}" for c in missing
        )
        hint = f"name them like {wanted} (any case)"
        if "ts" in missing:
            hint += ", or name the time column with --ts-column"
        raise MlkitError(
            f"{where}: missing column(s) {', '.join('date' if c == 'ts' else c for c in missing)}"
            f" (header has {shown})",
            hint=hint,
        )
    return mapping


def parse_timestamps(raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Naive UTC timestamps (NaT where a value cannot be read) and, for epoch numbers, the
    unit each one's magnitude implies ("" elsewhere); `check_epoch_units` then holds a file
    to one unit."""
    text = raw.astype("string").str.strip()
    numeric = pd.to_numeric(text, errors="coerce")
    units = np.full(len(text), "", dtype=object)
    if text.notna().any() and numeric[text.notna()].notna().all():
        units = epoch_units(numeric.to_numpy(dtype=float, na_value=np.nan))
        parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[us, UTC]")
        for unit in sorted({str(u) for u in units} - {""}):
            each = units == unit
            parsed[each] = pd.to_datetime(numeric[each], unit=unit, errors="coerce", utc=True)
    else:
        parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
        retry = parsed.isna() & text.notna()
        if retry.any():
            parsed = parsed.copy()
            parsed[retry] = pd.to_datetime(text[retry], errors="coerce", utc=True, format="mixed")
    return parsed.dt.tz_localize(None).astype("datetime64[us]"), units


# ---------------------------------------------------------------- reading the text


def _is_data_line(line: str, sep: str) -> bool:
    """Whether a first line holds values (numbers and dates only) rather than names."""
    fields = [field.strip().strip("\"'") for field in line.strip().split(sep)]
    filled = [field for field in fields if field]
    return bool(filled) and all(_NUMBER.fullmatch(f) or _DATE_START.match(f) for f in filled)


def _layout(first_line: str, sep: str, where: str) -> tuple[str, tuple[str, ...]]:
    """The recognised layout of a file without a header line, by its number of columns."""
    count = len(first_line.rstrip("\r\n").split(sep))
    if count in LAYOUTS:
        name, _, names = LAYOUTS[count]
        return name, names
    known = "; ".join(f"{n} columns: {description}" for n, (_, description, _) in LAYOUTS.items())
    raise MlkitError(
        f"{where}: line 1 has {count} columns and no header, which is no layout mlkit knows",
        hint=f"add a header line (date, open, high, low, close, volume), or give one of: {known}",
    )


def _read_cells(csv: str, no_header: bool) -> tuple[str, pd.DataFrame, str, np.ndarray]:
    """(where, the cells as text, the layout, each row's line number) of the file."""
    where, handle, first_line = open_source(csv)
    sep = delimiter(first_line)
    headerless = no_header or _is_data_line(first_line, sep)
    layout, names = _layout(first_line, sep, where) if headerless else ("header", None)
    options: dict = {"dtype": str, "keep_default_na": False, "skip_blank_lines": False}
    if headerless:
        options |= {"header": None, "names": list(names), "index_col": False}
    if isinstance(handle, Path):
        options["encoding"] = "utf-8-sig"
    try:
        raw = pd.read_csv(handle, sep=sep, **options)
    except pd.errors.EmptyDataError:
        raise MlkitError(f"{where}: the file is empty", hint="expect a header line") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        detail = " ".join(str(exc).split())
        raise MlkitError(f"{where}: not a readable CSV file: {detail}") from None
    if not isinstance(raw.index, pd.RangeIndex):
        # Each row one field longer than the header: pandas took the first for an index.
        raw = raw.reset_index(names="")
    cells = raw.apply(lambda column: column.str.strip())
    lines = np.arange(len(raw)) + (1 if headerless else 2)
    blank = (cells == "").all(axis=1).to_numpy()
    cells, lines = cells.loc[~blank].reset_index(drop=True), lines[~blank]
    if cells.empty:
        raise MlkitError(f"{where}: no data rows" + ("" if headerless else " after the header"))
    return where, cells, layout, lines


# ---------------------------------------------------------------- checking the values


def _row_numbers(cells: pd.Series) -> bool:
    """Whether a column counts rows 0, 1, 2... (a pandas RangeIndex written out)."""
    numbers = pd.to_numeric(cells, errors="coerce").to_numpy(dtype=float)
    return len(numbers) > 1 and bool(np.array_equal(numbers, np.arange(len(numbers))))


def _timestamps(cells, mapping, where, problems) -> tuple[pd.Series, np.ndarray]:
    ts_text = cells[mapping["ts"]]
    if "time" in mapping:
        ts_text = ts_text + " " + cells[mapping["time"]]
    ts_text = ts_text.str.strip()
    if _unnamed(mapping["ts"]) and _row_numbers(ts_text):
        raise MlkitError(
            f"{where}: no date column; the unnamed first column holds row numbers 0, 1, 2, ...",
            hint="name the time column with --ts-column, or write the file with "
            "df.to_csv(index=False) after keeping the time as a column",
        )
    ts, units = parse_timestamps(ts_text.where(ts_text != ""))
    check_epoch_units(problems, units)
    return ts, ts_text.to_numpy()


def _numbers(cells: pd.Series) -> np.ndarray:
    return pd.to_numeric(cells.where(cells != ""), errors="coerce").to_numpy(dtype=float)


def _adjusted_close(cells, mapping, values, problems, *, adjust: bool) -> dict | None:
    """With an adjusted-close column beside the close: check it, and (with `adjust`) take it
    for the close and scale open, high and low by the same factor per bar, as yfinance's
    auto_adjust does; volume stays. The returned note says which."""
    header = next(
        (
            h
            for h in cells.columns
            if normal_name(h) in ADJUSTED_CLOSE_NAMES and h != mapping["close"]
        ),
        None,
    )
    if header is None:
        return None
    if not adjust:
        return {"column": str(header), "used": False, "bars_changed": 0}
    text = cells[header].to_numpy()
    adjusted = _numbers(cells[header])
    problems.add(
        ~np.isfinite(adjusted),
        lambda i: f"{header} {text[i]!r} is not a number" if text[i] else f"empty {header}",
    )
    with np.errstate(invalid="ignore"):
        problems.add(adjusted <= 0, lambda i: f"{header} {adjusted[i]:g} is not above 0")
        factor = adjusted / values["close"]
    changed = np.isfinite(factor) & ~np.isclose(factor, 1.0, rtol=1e-9, atol=0)
    mapping["adjusted_close"] = header
    return {
        "column": str(header),
        "used": True,
        "bars_changed": int(changed.sum()),
        "factor": factor,  # applied once every check passed
    }


def _apply_adjustment(bars: pd.DataFrame, adjusted: dict | None) -> dict | None:
    if adjusted is None or not adjusted["used"]:
        return adjusted
    factor = adjusted.pop("factor")
    for column in ("open", "high", "low", "close"):
        bars[column] = bars[column] * factor
    finite = factor[np.isfinite(factor)]
    adjusted["factor_range"] = [float(finite.min()), float(finite.max())] if len(finite) else None
    return adjusted


def read_market_file(
    csv: str | Path,
    *,
    no_header: bool = False,
    ts_column: str | None = None,
    adjust: bool = True,
) -> MarketFile:
    """The file's bars (or stdin's for `-`), time-ordered, once every check passed."""
    where, cells, layout, line_numbers = _read_cells(str(csv), no_header)
    mapping = map_columns(list(cells.columns), where, ts_column)
    problems = LineProblems(line_numbers, MAX_LISTED)
    ts, ts_text = _timestamps(cells, mapping, where, problems)
    texts = {column: cells[mapping[column]].to_numpy() for column in PRICE_COLUMNS}
    values = {column: _numbers(cells[mapping[column]]) for column in PRICE_COLUMNS}
    check_market_rows(problems, ts, ts_text, texts, values, now=utcnow())
    adjusted = _adjusted_close(cells, mapping, values, problems, adjust=adjust)

    known = ts.notna()
    first_line = pd.Series(line_numbers).where(known).groupby(ts).transform("first").to_numpy()
    repeated = (known & ts.duplicated(keep="first")).to_numpy()
    problems.add(
        repeated,
        lambda i: (
            f"duplicate timestamp {pd.Timestamp(ts.iloc[i]).isoformat(sep=' ')} "
            f"(first on line {int(first_line[i])})"
        ),
    )
    problems.raise_if_any(where)

    bars = pd.DataFrame({"ts": ts.to_numpy(), **values})
    adjusted = _apply_adjustment(bars, adjusted)
    symbol_header = next((h for h in cells.columns if normal_name(h) in SYMBOL_NAMES), None)
    if symbol_header is not None:
        mapping["symbol"] = symbol_header
        bars["file_symbol"] = cells[symbol_header].str.upper().to_numpy()
        bars["line"] = line_numbers
    bars = bars.sort_values("ts", kind="stable", ignore_index=True)
    return MarketFile(bars, {k: str(v) for k, v in mapping.items()}, layout, adjusted)


def _refuse_other_symbols(where: str, bars: pd.DataFrame, symbol: str) -> pd.DataFrame:
    if "file_symbol" not in bars:
        return bars
    other = bars["file_symbol"] != symbol
    if other.any():
        lines = sorted(int(n) for n in bars.loc[other, "line"])[:MAX_LISTED]
        found = bars.loc[other, "file_symbol"].iloc[0]
        raise MlkitError(
            f"{where}: line {lines[0]}: symbol {found!r} is not {symbol}"
            + (f" (also lines {', '.join(map(str, lines[1:]))})" if len(lines) > 1 else "")
            + "; nothing was written",
            hint="split the file per symbol, or pass the symbol it holds with --symbol",
        )
    return bars.drop(columns=["file_symbol", "line"])


def ingest_market_csv(
    engine: Engine,
    path: str | Path,
    symbol: str,
    *,
    no_header: bool = False,
    ts_column: str | None = None,
    adjust: bool = True,
) -> IngestResult:
    """Check the whole file, then upsert its bars for `symbol` in one transaction."""
    from sqlalchemy.exc import DBAPIError

    started = time.perf_counter()
    symbol = normalize_symbol(symbol)
    read = read_market_file(path, no_header=no_header, ts_column=ts_column, adjust=adjust)
    where = "stdin" if str(path) == STDIN else str(path)
    bars = _refuse_other_symbols(where, read.bars, symbol)
    try:
        with engine.begin() as conn:
            counts = upsert_bars(conn, symbol, bars)
    except DBAPIError as exc:
        raise explain_db_error(exc, engine.url) from None
    return IngestResult(
        symbol=symbol,
        file=where,
        rows=counts["rows"],
        new=counts["new"],
        updated=counts["existing"],
        first_ts=bars["ts"].iloc[0].to_pydatetime(),
        last_ts=bars["ts"].iloc[-1].to_pydatetime(),
        columns=read.columns,
        seconds=time.perf_counter() - started,
        layout=read.layout,
        adjusted=read.adjusted,
    )


def ingest_market_file(engine: Engine, path: str | Path, symbol: str, **options) -> IngestResult:
    """`mlkit ingest market`: the schema created where missing, then `ingest_market_csv`
    (`options`: no_header, ts_column, adjust)."""
    from ..db import init_schema

    init_schema(engine)
    return ingest_market_csv(engine, path, symbol, **options)
