"""Rows for a driver's executemany, converted column by column from a frame: SQLite's and
MySQL's bulk path in `db.bulk_insert` (PostgreSQL's is COPY)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    import pandas as pd


def insert_sql(conn: sa.Connection, table: sa.Table, columns: list[str]) -> str:
    """A positional INSERT of `columns` in the driver's own placeholders."""
    quote = conn.dialect.identifier_preparer
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    names = ", ".join(quote.quote(c) for c in columns)
    marks = ", ".join([mark] * len(columns))
    return f"INSERT INTO {quote.format_table(table)} ({names}) VALUES ({marks})"


def driver_rows(table: sa.Table, chunk: pd.DataFrame) -> list[tuple] | None:
    """The chunk's rows as the driver takes them, converted column by column (SQLAlchemy's
    per-row parameter processing is most of an executemany's time otherwise): naive times
    as the text SQLite's DateTime stores (MySQL parses it alike), booleans as 0/1, NULL as
    None. None when a column's type is not one of these (the caller processes it per row)."""
    import pandas as pd

    columns = []
    for name in chunk.columns:
        series, kind = chunk[name], table.c[name].type
        missing = series.isna()
        if isinstance(kind, sa.DateTime) and pd.api.types.is_datetime64_dtype(series):
            values = series.dt.strftime("%Y-%m-%d %H:%M:%S.%f")
        elif isinstance(kind, sa.Boolean) and pd.api.types.is_bool_dtype(series):
            values = series.astype("Int64")
        elif isinstance(kind, (sa.Integer, sa.Float, sa.Numeric)) and (
            pd.api.types.is_integer_dtype(series) or pd.api.types.is_float_dtype(series)
        ):
            values = series
        elif isinstance(kind, (sa.String, sa.Text)) and not isinstance(kind, sa.Enum):
            if not all(isinstance(v, str) for v in series[~missing]):
                return None
            values = series
        else:
            return None
        columns.append(values.astype(object).where(~missing, None).tolist())
    return list(zip(*columns, strict=True))
