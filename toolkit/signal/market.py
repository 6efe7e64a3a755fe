"""Market data in the database: symbols, reading bars, and the idempotent bulk upsert."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..db import bulk_insert, read_frame, relation_names
from ..errors import MlkitError
from ..schema import market_data, signal_state, signals, training_runs

if TYPE_CHECKING:
    import pandas as pd

_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9._-]{0,19}")
PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
UPSERT_CHUNK_ROWS = 5_000


def normalize_symbol(symbol: str) -> str:
    """Upper case, checked: what `market_data.symbol` and the model names hold."""
    text = (symbol or "").strip().upper()
    if not _SYMBOL.fullmatch(text):
        raise MlkitError(
            f"invalid symbol {symbol!r}",
            hint="use up to 20 letters, digits, '.', '_' or '-', e.g. BTCUSDT",
        )
    return text


def model_name(symbol: str) -> str:
    """The registry name of a symbol's signal model, e.g. signal-BTCUSDT."""
    return f"signal-{normalize_symbol(symbol)}"


def ensure_tables(engine: Engine) -> None:
    """The schema must exist; `signal_state` came after `signals`, so it is created in
    databases initialised before it."""
    with engine.connect() as conn:
        tables = relation_names(conn)  # a mapped market_data is a view
    missing = [t.name for t in (market_data, signals, training_runs) if t.name not in tables]
    if missing:
        raise MlkitError(
            f"table(s) {', '.join(missing)} missing in this database",
            hint="create them with `mlkit db init`",
        )
    if signal_state.name not in tables:
        signal_state.create(engine, checkfirst=True)


def count_bars(engine: Engine, symbol: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(market_data)
                .where(market_data.c.symbol == symbol)
            ).scalar_one()
        )


def load_bars(engine: Engine, symbol: str, *, last: int | None = None) -> pd.DataFrame:
    """A symbol's bars in time order (ts, open, high, low, close, volume); with `last`, only
    the newest `last` of them."""
    t = market_data
    columns = [t.c.ts, *[t.c[name] for name in PRICE_COLUMNS]]
    query = sa.select(*columns).where(t.c.symbol == symbol)
    if last is not None:
        query = query.order_by(t.c.ts.desc()).limit(int(last))
    else:
        query = query.order_by(t.c.ts)
    with engine.connect() as conn:
        frame = read_frame(conn, query)
    return frame.sort_values("ts", ignore_index=True) if last is not None else frame


def symbols_overview(engine: Engine) -> dict[str, dict]:
    """Bars, first and last bar time per symbol: one grouped query."""
    t = market_data
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.c.symbol, sa.func.count(), sa.func.min(t.c.ts), sa.func.max(t.c.ts))
            .group_by(t.c.symbol)
            .order_by(t.c.symbol)
        ).all()
    return {row[0]: {"bars": int(row[1]), "first_ts": row[2], "last_ts": row[3]} for row in rows}


def upsert_statement(conn: sa.Connection, table: sa.Table, keys: list[str], updates: dict):
    """INSERT ... that updates `updates` (column -> expression over the proposed row, given
    as a function of it) when a row with the same `keys` exists, in each dialect's words."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert

        stmt = insert(table)
        return stmt.on_conflict_do_update(
            index_elements=keys, set_={c: f(stmt.excluded) for c, f in updates.items()}
        )
    if dialect == "mysql":
        from sqlalchemy.dialects.mysql import insert

        stmt = insert(table)
        return stmt.on_duplicate_key_update({c: f(stmt.inserted) for c, f in updates.items()})
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert

        stmt = insert(table)
        return stmt.on_conflict_do_update(
            index_elements=keys, set_={c: f(stmt.excluded) for c, f in updates.items()}
        )
    raise MlkitError(f"no upsert for dialect {dialect!r}")  # pragma: no cover


def upsert_bars(conn: sa.Connection, symbol: str, bars: pd.DataFrame) -> dict[str, int]:
    """Insert or update one symbol's bars on (symbol, ts) inside the caller's transaction;
    returns (new, existing). PostgreSQL goes through COPY into a temporary table, since
    psycopg2's executemany sends a statement per row."""
    import numpy as np
    import pandas as pd

    if bars.empty:
        return {"rows": 0, "new": 0, "existing": 0}
    ts = pd.to_datetime(bars["ts"]).astype("datetime64[us]")
    existing = conn.execute(
        sa.select(market_data.c.ts).where(
            market_data.c.symbol == symbol,
            market_data.c.ts >= ts.min().to_pydatetime(),
            market_data.c.ts <= ts.max().to_pydatetime(),
        )
    ).scalars()
    known = pd.to_datetime(pd.Series(list(existing), dtype="datetime64[us]"))
    n_existing = int(ts.isin(known).sum())
    stmt = upsert_statement(
        conn,
        market_data,
        ["symbol", "ts"],
        {name: (lambda proposed, name=name: proposed[name]) for name in PRICE_COLUMNS},
    )
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg2":
        _upsert_by_copy(conn, symbol, bars.assign(ts=ts))
        return {"rows": len(bars), "new": len(bars) - n_existing, "existing": n_existing}
    timestamps = [t.to_pydatetime() for t in ts]
    values = {name: bars[name].to_numpy(dtype=np.float64).tolist() for name in PRICE_COLUMNS}
    for start in range(0, len(bars), UPSERT_CHUNK_ROWS):
        stop = start + UPSERT_CHUNK_ROWS
        records = [
            {"symbol": symbol, "ts": moment, **dict(zip(PRICE_COLUMNS, row, strict=True))}
            for moment, *row in zip(
                timestamps[start:stop],
                *(values[name][start:stop] for name in PRICE_COLUMNS),
                strict=True,
            )
        ]
        conn.execute(stmt, records)
    return {"rows": len(bars), "new": len(bars) - n_existing, "existing": n_existing}


def _upsert_by_copy(conn: sa.Connection, symbol: str, bars: pd.DataFrame) -> None:
    from sqlalchemy.dialects.postgresql import insert

    staging = sa.Table(
        "mlkit_market_data_load",
        sa.MetaData(),
        *[sa.Column(c.name, c.type) for c in market_data.columns],
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DROP",
    )
    staging.create(conn)
    frame = bars[["ts", *PRICE_COLUMNS]].assign(symbol=symbol)
    bulk_insert(conn, staging, frame[["symbol", "ts", *PRICE_COLUMNS]])
    names = ["symbol", "ts", *PRICE_COLUMNS]
    stmt = insert(market_data).from_select(names, sa.select(*[staging.c[n] for n in names]))
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["symbol", "ts"],
            set_={name: stmt.excluded[name] for name in PRICE_COLUMNS},
        )
    )
    staging.drop(conn)
