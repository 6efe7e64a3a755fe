"""PostgreSQL's binary COPY, built column-wise with numpy.

The server takes binary values as they are stored (no number or time to parse, which is
most of a text COPY's cost on its side), and the rows are built a column at a time: each
field is a fixed-width slot of bytes per row (its length word, then its value, padded to
the column's widest), and one boolean mask drops the padding and NULLs' empty values in
row order. Text is encoded once per distinct value, so a column of a few labels costs
what a number does.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import sqlalchemy as sa

if TYPE_CHECKING:
    import pandas as pd

HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)
# Microseconds from the Unix epoch to PostgreSQL's, 2000-01-01.
PG_EPOCH_US = 946_684_800_000_000
CHUNK_ROWS = 200_000
# Each server type this writes, as the numpy type of its binary form.
FIXED = {
    "bigint": ">i8",
    "integer": ">i4",
    "smallint": ">i2",
    "double precision": ">f8",
    "real": ">f4",
    "boolean": "u1",
    "timestamp without time zone": ">i8",
}
TEXT = ("character varying", "text", "character")


def column_types(conn: sa.Connection, table: sa.Table) -> dict[str, str]:
    """The server's type of each column of `table`, as format_type names it (no modifier)."""
    name = conn.dialect.identifier_preparer.format_table(table)
    rows = conn.execute(
        sa.text(
            "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute "
            "WHERE attrelid = CAST(:name AS regclass) AND attnum > 0 AND NOT attisdropped"
        ),
        {"name": name},
    )
    return dict(rows.all())


def _slot(kind: str, values, rows: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """One field of every row: a byte block of (length word, value, padding) per row, or
    one row for every row, or a table of distinct values with each row's code (None: not a
    table); and each row's used bytes (None: every row uses the whole width)."""
    _check(kind, values)
    return _fixed(kind, values, rows) if kind in FIXED else _text(values, rows)


def _check(kind: str, values) -> None:
    """A ValueError unless this writes `values` to a column of server type `kind`."""
    if kind not in FIXED and kind not in TEXT:
        raise ValueError(f"binary COPY does not write {kind} columns")
    integer = kind in ("bigint", "integer", "smallint")
    if integer and np.asarray(values).dtype.kind not in "iub":
        raise ValueError(
            f"binary COPY needs {kind} values as integers, not {np.asarray(values).dtype}"
        )


def _fixed(kind: str, values, rows: int):
    array = np.asarray(values)
    if kind == "timestamp without time zone":
        if isinstance(values, datetime):
            moment = values.astimezone(UTC).replace(tzinfo=None) if values.tzinfo else values
            array = np.asarray(moment, dtype="datetime64[us]")
        missing = np.isnat(array.astype("datetime64[us]"))
        array = array.astype("datetime64[us]").astype("int64") - PG_EPOCH_US
    elif kind in ("double precision", "real"):
        array = array.astype("float64")
        missing = np.isnan(array)  # NaN is NULL, as the CSV path writes it
    else:
        missing = np.zeros(array.shape, dtype=bool)
    dtype = np.dtype(FIXED[kind])
    count = 1 if array.ndim == 0 else rows
    block = np.empty((count, 4 + dtype.itemsize), dtype="u1")
    block[:, :4] = np.array(dtype.itemsize, dtype=">i4").reshape(1).view("u1")
    # (arithmetic on a 0-d array gives a native-order scalar: made an array again first)
    block[:, 4:] = np.asarray(array).astype(dtype).reshape(count).view("u1").reshape(count, -1)
    if not missing.any():
        return block, None, None
    block[missing.reshape(count), :4] = np.array(-1, dtype=">i4").reshape(1).view("u1")
    return block, None, np.where(np.broadcast_to(missing, (rows,)), 4, 4 + dtype.itemsize)


def _text(values, rows: int):
    """Each distinct value encoded once; a pandas Categorical's codes are used as they are."""
    import pandas as pd

    if values is None or isinstance(values, str):
        codes, uniques = None, [values]
    else:
        if isinstance(values, pd.Categorical):
            codes, found = values.codes, values.categories
        else:
            codes, found = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=True)
        uniques = found.tolist()
        if (codes < 0).any():
            uniques.append(None)  # code -1 (a missing value) reads the last
    encoded = [None if u is None else str(u).encode() for u in uniques]
    width = 4 + max((len(e) for e in encoded if e is not None), default=0)
    table = np.zeros((len(encoded), width), dtype="u1")
    used = np.empty(len(encoded), dtype="int64")
    for i, value in enumerate(encoded):
        size = -1 if value is None else len(value)
        table[i, :4] = np.frombuffer(struct.pack(">i", size), dtype="u1")
        if value:
            table[i, 4 : 4 + len(value)] = np.frombuffer(value, dtype="u1")
        used[i] = 4 + max(size, 0)
    if (used == width).all():
        return table, codes, None
    return table, codes, np.broadcast_to(used, (rows,)) if codes is None else used[codes]


def encode_rows(types: list[str], columns: list, rows: int) -> bytes:
    """The binary rows (no header) of `rows` rows: column i's values (an array, or one
    value for every row) of server type types[i]. The fields are written side by side into
    one byte matrix; a mask drops what rows leave unused, in row order."""
    slots = [_slot(kind, values, rows) for kind, values in zip(types, columns, strict=True)]
    width = 2 + sum(block.shape[1] for block, _, _ in slots)
    matrix = np.empty((rows, width), dtype="u1")
    matrix[:, :2] = np.array(len(columns), dtype=">i2").reshape(1).view("u1")
    keep, at = None, 2
    for block, codes, used in slots:
        end = at + block.shape[1]
        matrix[:, at:end] = block if codes is None else block[codes]
        if used is not None:
            keep = np.ones((rows, width), dtype=bool) if keep is None else keep
            keep[:, at:end] = np.arange(block.shape[1]) < used[:, None]
        at = end
    return (matrix if keep is None else matrix[keep]).tobytes()


class _Stream:
    """A file whose reads are the COPY's chunks, built as the server asks for them, so it
    parses one chunk while the next is built."""

    def __init__(self, chunks: Iterator[bytes]):
        self.chunks = chunks

    def read(self, _size: int = -1) -> bytes:
        return next(self.chunks, b"")


def copy_binary(conn: sa.Connection, table: sa.Table, columns: dict[str, object]) -> int:
    """Append rows to `table` by binary COPY inside the caller's transaction (PostgreSQL
    through psycopg2): `columns` maps a column to its values (a numpy array or sequence,
    or one value for every row). Integers must not be missing; NaN and NaT are NULL."""
    lengths = {len(v) for v in columns.values() if not _is_scalar(v)}
    if len(lengths) != 1:
        raise ValueError(f"columns of different lengths or none as arrays: {sorted(lengths)}")
    (rows,) = lengths
    server = column_types(conn, table)
    unknown = [name for name in columns if name not in server]
    if unknown:
        raise ValueError(f"{table.name} has no column(s) {unknown}")
    names = list(columns)
    types = [server[name] for name in names]
    for kind, values in zip(types, columns.values(), strict=True):
        _check(kind, values)  # here, not as the server reads: that failure would be its own

    def chunks() -> Iterator[bytes]:
        yield HEADER
        for start in range(0, rows, CHUNK_ROWS):
            part = [
                v if _is_scalar(v) else np.asarray(v)[start : start + CHUNK_ROWS]
                for v in columns.values()
            ]
            yield encode_rows(types, part, min(CHUNK_ROWS, rows - start))
        yield TRAILER

    quoted = conn.dialect.identifier_preparer
    target = f"{quoted.format_table(table)} ({', '.join(quoted.quote(n) for n in names)})"
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.copy_expert(f"COPY {target} FROM STDIN WITH (FORMAT binary)", _Stream(chunks()))
    finally:
        cursor.close()
    return rows


def _is_scalar(value) -> bool:
    return value is None or isinstance(value, (str, bytes, int, float, datetime, np.generic))


# ---------------------------------------------------------------- reads


def _read_columns(column: sa.ColumnElement, categories: list | None) -> list[tuple]:
    """The fixed-width expressions `column` is read as, each with its binary numpy type:
    NULL becomes NaN, a flag or a code, so every row has the same width."""
    kind = column.type
    if isinstance(kind, sa.Boolean):
        code = sa.case((column.is_(True), 1), (column.is_(False), 0), else_=2)
        return [(sa.cast(code, sa.Integer), ">i4")]
    if isinstance(kind, sa.Integer):
        value = sa.func.coalesce(sa.cast(column, sa.BigInteger), 0)
        missing = sa.cast(sa.case((column.is_(None), 1), else_=0), sa.Integer)
        return [(value, ">i8"), (missing, ">i4")]
    if isinstance(kind, (sa.Float, sa.Numeric)):
        # A REAL or NUMERIC as the double of its text, as the text COPY reads it (a float4's
        # 0.001 is 0.0010000000474974513 cast directly).
        number = column if isinstance(kind, sa.Double) else sa.cast(column, sa.Text)
        nan = sa.literal_column("'NaN'::float8")
        return [(sa.func.coalesce(sa.cast(number, sa.Double), nan), ">f8")]
    if isinstance(kind, (sa.String, sa.Text)) and categories is not None:
        whens = [(column == value, i) for i, value in enumerate(categories)]
        # -1: NULL; -2: a value that came after the categories were read.
        code = (
            sa.case(*whens, (column.is_(None), -1), else_=-2)
            if whens
            else sa.case((column.is_(None), -1), else_=-2)
        )
        return [(sa.cast(code, sa.Integer), ">i4")]
    raise ValueError(f"no fixed-width binary read for {column.name} ({kind})")


def read_frame(conn: sa.Connection, query: sa.Select, *, tries: int = 2) -> pd.DataFrame:
    """The rows of `query` as `db.read_frame` gives them (the same columns, dtypes and
    values), read by binary COPY on PostgreSQL through psycopg2 and parsed by numpy in one
    view: for queries of numbers, booleans and text columns of few distinct values (read
    first, then sent as codes). The server formats no number as text and the client parses
    none. A text value committed between the two reads makes it read again (`tries`
    times in all), then by `db.read_frame`."""
    import io

    import pandas as pd

    columns = list(query.selected_columns)
    texts = [c for c in columns if isinstance(c.type, (sa.String, sa.Text))]
    unordered = query.order_by(None).subquery()
    categories = {
        c.name: sorted(
            v
            for v in conn.execute(sa.select(unordered.c[c.name]).distinct()).scalars()
            if v is not None
        )
        for c in texts
    }
    parts = [_read_columns(c, categories.get(c.name)) for c in columns]
    exprs = [expr for part in parts for expr, _ in part]
    fixed = query.with_only_columns(*exprs, maintain_column_froms=True)
    sql = str(fixed.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    buffer = io.BytesIO()
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.copy_expert(f"COPY ({sql}) TO STDOUT WITH (FORMAT binary)", buffer, size=1 << 20)
    finally:
        cursor.close()
    formats = [fmt for part in parts for _, fmt in part]
    fields = [("count", ">i2")]
    for i, fmt in enumerate(formats):
        fields += [(f"size{i}", ">i4"), (f"value{i}", fmt)]
    row = np.dtype(fields)
    data = buffer.getbuffer()
    body = data[len(HEADER) : len(data) - len(TRAILER)]
    if bytes(data[: len(HEADER)]) != HEADER or len(body) % row.itemsize:
        raise ValueError("binary COPY sent rows of another shape than asked for")
    rows = np.frombuffer(body, dtype=row)
    sizes = [np.dtype(fmt).itemsize for fmt in formats]
    if any((rows[f"size{i}"] != size).any() for i, size in enumerate(sizes)):
        raise ValueError("binary COPY sent a NULL or a value of another width")
    values = iter(rows[f"value{i}"] for i in range(len(formats)))
    frame = {}
    for column in columns:
        kind, value = column.type, next(values)
        if isinstance(kind, sa.Boolean):
            frame[column.name] = pd.arrays.BooleanArray(value == 1, value == 2)
        elif isinstance(kind, sa.Integer):
            missing = next(values) == 1
            number = value.astype("int64")
            frame[column.name] = np.where(missing, np.nan, number) if missing.any() else number
        elif isinstance(kind, (sa.Float, sa.Numeric)):
            frame[column.name] = value.astype("float64")
        else:
            if (value == -2).any():  # a value committed between the two reads
                if tries > 1:
                    return read_frame(conn, query, tries=tries - 1)
                from .db import read_frame as read_text

                return read_text(conn, query)
            labels = np.array([*categories[column.name], None], dtype=object)
            frame[column.name] = pd.array(
                labels[value], dtype=pd.StringDtype("pyarrow", na_value=np.nan)
            )
    return pd.DataFrame(frame)
