"""`mlkit ingest market`: OHLCV bars from a CSV file into `market_data`, upserted on
(symbol, ts) in one transaction; a file with any bad row writes nothing and the error names
its lines (the row rules live in `toolkit.inputs`)."""

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
SYMBOL_NAMES = ("symbol", "ticker", "pair", "instrument")
MAX_LISTED = 5  # bad lines named in the error; the rest are counted


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

    def as_dict(self) -> dict:
        return asdict(self) | {
            "first_ts": self.first_ts.isoformat() if self.first_ts is not None else None,
            "last_ts": self.last_ts.isoformat() if self.last_ts is not None else None,
            "seconds": round(self.seconds, 3),
        }


def _normal(name: str) -> str:
    return re.sub(r"[\s\-/]+", "_", str(name).strip().lower().strip("<>\"'"))


def map_columns(headers: list[str], where: str) -> dict[str, str]:
    """Our column -> the file's header; raises naming every missing one."""
    by_normal: dict[str, str] = {}
    for header in headers:
        by_normal.setdefault(_normal(header), header)
    mapping: dict[str, str] = {}
    for column, variants in COLUMN_NAMES.items():
        for variant in variants:
            if variant in by_normal and by_normal[variant] not in mapping.values():
                mapping[column] = by_normal[variant]
                break
    # A date column and a time column side by side: the timestamp is both.
    if _normal(mapping.get("ts", "")) == "date" and "time" in by_normal:
        mapping["time"] = by_normal["time"]
    missing = [c for c in COLUMN_NAMES if c not in mapping]
    if missing:
        shown = ", ".join(repr(h) for h in headers) or "none"
        wanted = "; ".join(
            f"{'date' if c == 'ts' else c}: {'/'.join(COLUMN_NAMES[c][:4])}" for c in missing
        )
        raise MlkitError(
            f"{where}: missing column(s) {', '.join('date' if c == 'ts' else c for c in missing)}"
            f" (header has {shown})",
            hint=f"name them like {wanted} (any case)",
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


def _delimiter(path: Path) -> str:
    """Comma unless the header line is plainly separated by semicolons or tabs."""
    with path.open(encoding="utf-8-sig", errors="replace") as handle:
        header = handle.readline()
    for candidate in (",", ";", "\t"):
        if candidate in header:
            return candidate
    return ","


def read_market_csv(path: str | Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """The file's bars (ts, open, high, low, close, volume; time-ordered, plus the file's
    symbol column when it has one) and the header each came from, once every check passed."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise MlkitError(f"{where}: no such file", hint="check the --csv path")
    try:
        raw = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            sep=_delimiter(path),
            encoding="utf-8-sig",
        )
    except pd.errors.EmptyDataError:
        raise MlkitError(f"{where}: the file is empty", hint="expect a header line") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        detail = " ".join(str(exc).split())
        raise MlkitError(f"{where}: not a readable CSV file: {detail}") from None
    mapping = map_columns(list(raw.columns), where)
    line_numbers = np.arange(len(raw)) + 2  # the header is line 1
    cells = raw.apply(lambda column: column.str.strip())
    blank = (cells == "").all(axis=1).to_numpy()
    cells, line_numbers = cells.loc[~blank].reset_index(drop=True), line_numbers[~blank]
    if cells.empty:
        raise MlkitError(f"{where}: no data rows after the header")
    problems = LineProblems(line_numbers, MAX_LISTED)

    ts_text = cells[mapping["ts"]]
    if "time" in mapping:
        ts_text = ts_text + " " + cells[mapping["time"]]
    ts_text = ts_text.str.strip()
    ts, units = parse_timestamps(ts_text.where(ts_text != ""))
    check_epoch_units(problems, units)
    texts = {column: cells[mapping[column]].to_numpy() for column in PRICE_COLUMNS}
    values = {
        column: pd.to_numeric(
            cells[mapping[column]].where(cells[mapping[column]] != ""), errors="coerce"
        ).to_numpy(dtype=float)
        for column in PRICE_COLUMNS
    }
    check_market_rows(problems, ts, ts_text.to_numpy(), texts, values, now=utcnow())

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
    symbol_header = next((h for h in raw.columns if _normal(h) in SYMBOL_NAMES), None)
    if symbol_header is not None:
        mapping["symbol"] = symbol_header
        bars["file_symbol"] = cells[symbol_header].str.upper().to_numpy()
        bars["line"] = line_numbers
    return bars.sort_values("ts", kind="stable", ignore_index=True), mapping


def ingest_market_csv(engine: Engine, path: str | Path, symbol: str) -> IngestResult:
    """Check the whole file, then upsert its bars for `symbol` in one transaction."""
    from sqlalchemy.exc import DBAPIError

    started = time.perf_counter()
    symbol = normalize_symbol(symbol)
    bars, mapping = read_market_csv(path)
    if "file_symbol" in bars:
        other = bars["file_symbol"] != symbol
        if other.any():
            lines = sorted(int(n) for n in bars.loc[other, "line"])[:MAX_LISTED]
            found = bars.loc[other, "file_symbol"].iloc[0]
            raise MlkitError(
                f"{path}: line {lines[0]}: symbol {found!r} is not {symbol}"
                + (f" (also lines {', '.join(map(str, lines[1:]))})" if len(lines) > 1 else "")
                + "; nothing was written",
                hint="split the file per symbol, or pass the symbol it holds with --symbol",
            )
        bars = bars.drop(columns=["file_symbol", "line"])
    try:
        with engine.begin() as conn:
            counts = upsert_bars(conn, symbol, bars)
    except DBAPIError as exc:
        raise explain_db_error(exc, engine.url) from None
    return IngestResult(
        symbol=symbol,
        file=str(path),
        rows=counts["rows"],
        new=counts["new"],
        updated=counts["existing"],
        first_ts=bars["ts"].iloc[0].to_pydatetime(),
        last_ts=bars["ts"].iloc[-1].to_pydatetime(),
        columns={k: str(v) for k, v in mapping.items()},
        seconds=time.perf_counter() - started,
    )


def ingest_market_file(engine: Engine, path: str | Path, symbol: str) -> IngestResult:
    """`mlkit ingest market`: the schema created where missing, then `ingest_market_csv`."""
    from ..db import init_schema

    init_schema(engine)
    return ingest_market_csv(engine, path, symbol)
