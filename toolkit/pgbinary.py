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

import numpy as np
import sqlalchemy as sa

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


def _slot(kind: str, values, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """One field of every row: an (rows, width) byte block (length word, value, padding)
    and each row's used bytes."""
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


def _fixed(kind: str, values, rows: int) -> tuple[np.ndarray, np.ndarray]:
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
    block = np.zeros((rows, 4 + dtype.itemsize), dtype="u1")
    missing = np.broadcast_to(missing, (rows,))
    lengths = np.where(missing, -1, dtype.itemsize).astype(">i4")
    block[:, :4] = lengths.view("u1").reshape(rows, 4)
    value = np.empty(rows, dtype=dtype)
    value[:] = array.astype(dtype)  # one value for every row, or each row's
    block[:, 4:] = value.view("u1").reshape(rows, -1)
    return block, np.where(missing, 4, 4 + dtype.itemsize)


def _text(values, rows: int) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    if values is None or isinstance(values, str):
        codes, uniques = np.zeros(rows, dtype="int64"), [values]
    else:
        codes, found = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=True)
        uniques = [*found.tolist(), None]  # code -1 (a missing value) reads the last
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
    return table[codes], used[codes]


def encode_rows(types: list[str], columns: list, rows: int) -> bytes:
    """The binary rows (no header) of `rows` rows: column i's values (an array, or one
    value for every row) of server type types[i]."""
    count = np.zeros((rows, 2), dtype="u1")
    count[:] = np.frombuffer(struct.pack(">h", len(columns)), dtype="u1")
    blocks, keep = [count], [np.ones((rows, 2), dtype=bool)]
    for kind, values in zip(types, columns, strict=True):
        block, used = _slot(kind, values, rows)
        blocks.append(block)
        keep.append(np.arange(block.shape[1]) < used[:, None])
    return np.hstack(blocks)[np.hstack(keep)].tobytes()


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
