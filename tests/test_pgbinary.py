"""PostgreSQL's binary COPY (toolkit.pgbinary) stores what the CSV COPY of bulk_insert
stores, value for value and bit for bit, NULLs and edge values included."""

from __future__ import annotations

import math
import struct
import uuid
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from mlkit.toolkit.db import bulk_insert, read_frame
from mlkit.toolkit.pgbinary import CHUNK_ROWS, copy_binary
from mlkit.toolkit.pgbinary import read_frame as read_binary


@pytest.fixture(scope="module", params=["postgresql"])
def database_url(request, tmp_path_factory):
    """Binary COPY is PostgreSQL's own: this module runs there only."""
    from conftest import drop_database, make_database

    url = make_database(request.param, tmp_path_factory.mktemp(request.param))
    yield url
    drop_database(url)


def _table(engine) -> sa.Table:
    metadata = sa.MetaData()
    table = sa.Table(
        f"binary_{uuid.uuid4().hex[:8]}",
        metadata,
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("big", sa.BigInteger),
        sa.Column("small", sa.SmallInteger),
        sa.Column("number", sa.Integer),
        sa.Column("score", sa.Double),
        sa.Column("ratio", sa.REAL),
        sa.Column("flag", sa.Boolean),
        sa.Column("label", sa.String(32)),
        sa.Column("note", sa.Text),
        sa.Column("moment", sa.DateTime),
    )
    metadata.create_all(engine)
    return table


EDGE_DOUBLES = [0.1 + 0.2, -0.0, 5e-324, 1.7976931348623157e308, 1e-300, 0.00091, 2.5, math.nan]
COLUMNS = {
    "big": np.array([2**62, -(2**62), 0, 1, 7, 8, 9, 10], dtype=np.int64),
    "small": np.array([32767, -32768, 0, 1, 2, 3, 4, 5], dtype=np.int64),
    "number": np.array([2**31 - 1, -(2**31), 0, 1, 2, 3, 4, 5], dtype=np.int64),
    "score": np.array(EDGE_DOUBLES),
    "ratio": np.array([0.5, 1.25, -3.0, 0.0, math.nan, 1e-3, 7.0, 8.0]),
    "flag": np.array([True, False, True, True, False, False, True, False]),
    "label": np.array(["APPROVED", "BLOCKED", None, "", "é ünï ✓", "APPROVED", "a\tb\nc", "\\N"]),
    "note": "the same text for every row",
    "moment": np.array(
        [
            "2026-12-07T09:44:17.123456",
            "1999-12-31T23:59:59.999999",
            "1969-07-20T20:17:40",
            "NaT",
            "2000-01-01T00:00:00",
            "2038-01-19T03:14:08",
            "2026-02-28T12:00:00.5",
            "1900-01-01T00:00:00",
        ],
        dtype="datetime64[us]",
    ),
}


def _stored(engine, table: sa.Table) -> list[tuple]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table).order_by(table.c.id)).all()
    # Doubles as their bits: -0.0 and 0.0, or two NaNs, are told apart.
    return [
        tuple(struct.pack(">d", v) if isinstance(v, float) else v for v in row[1:]) for row in rows
    ]


def test_binary_copy_stores_what_the_csv_copy_stores(engine):
    binary, csv = _table(engine), _table(engine)
    with engine.begin() as conn:
        assert copy_binary(conn, binary, COLUMNS) == 8
        frame = pd.DataFrame({k: v for k, v in COLUMNS.items()})
        frame["flag"] = frame["flag"].astype("boolean")
        bulk_insert(conn, csv, frame)
    assert _stored(engine, binary) == _stored(engine, csv)
    stored = _stored(engine, binary)
    assert stored[3][-1] is None and stored[2][6] is None  # NaT and None are NULL
    assert stored[7][3] is None  # NaN is NULL, as the CSV path writes it
    assert stored[1][3] == struct.pack(">d", -0.0)
    assert stored[0][-1] == datetime(2026, 12, 7, 9, 44, 17, 123456)


def test_binary_copy_in_chunks_keeps_the_row_order(engine):
    table = _table(engine)
    rows = CHUNK_ROWS + 3
    order = np.arange(rows, dtype=np.int64)[::-1].copy()
    with engine.begin() as conn:
        copy_binary(
            conn,
            table,
            {"big": order, "label": np.where(order % 2 == 0, "even", "odd"), "score": 0.25},
        )
    with engine.connect() as conn:
        got = conn.execute(sa.select(table.c.big, table.c.label).order_by(table.c.id)).all()
    assert [r.big for r in got] == order.tolist()
    assert [r.label for r in got[:3]] == ["even" if b % 2 == 0 else "odd" for b in order[:3]]


def test_binary_copy_refuses_what_it_cannot_write(engine):
    table = _table(engine)
    with engine.begin() as conn, pytest.raises(ValueError, match="no column"):
        copy_binary(conn, table, {"nothing": np.arange(3)})
    with engine.begin() as conn, pytest.raises(ValueError, match="as integers"):
        copy_binary(conn, table, {"big": np.array([1.0, math.nan])})
    with engine.begin() as conn, pytest.raises(ValueError, match="different lengths"):
        copy_binary(conn, table, {"big": np.arange(3), "small": np.arange(4)})


def test_binary_read_gives_the_frame_read_frame_gives(engine):
    table = _table(engine)
    with engine.begin() as conn:
        copy_binary(conn, table, COLUMNS | {"moment": COLUMNS["moment"][0]})
        copy_binary(conn, table, {"big": np.arange(4), "number": np.arange(4), "flag": True})
    with engine.connect() as conn:  # one value for every row: a scalar, stored as given
        moments = set(conn.execute(sa.select(table.c.moment).distinct()).scalars())
        flags = conn.execute(sa.select(table.c.flag).where(table.c.id > 8)).scalars().all()
    assert moments == {datetime(2026, 12, 7, 9, 44, 17, 123456), None}
    assert flags == [True] * 4
    selects = [
        sa.select(table.c.id, table.c.big, table.c.small, table.c.score, table.c.ratio),
        sa.select(table.c.number, table.c.flag, table.c.label, table.c.note),
        sa.select(table.c.big, table.c.label).where(table.c.flag.is_(True)),
        sa.select(table.c.label).where(table.c.id < 0),  # no rows
    ]
    with engine.connect() as conn:
        for query in selects:
            expected = read_frame(conn, query.order_by(table.c.id))
            got = read_binary(conn, query.order_by(table.c.id))
            pd.testing.assert_frame_equal(got, expected, check_exact=True)
    with engine.connect() as conn, pytest.raises(ValueError, match="fixed-width"):
        read_binary(conn, sa.select(table.c.moment))


def test_binary_read_of_a_text_value_it_did_not_know_reads_again(engine, monkeypatch):
    from mlkit.toolkit import pgbinary

    table = _table(engine)
    with engine.begin() as conn:
        copy_binary(conn, table, {"big": np.arange(3), "label": np.array(["a", "b", None])})
    seen = []
    real = pgbinary._read_columns

    def late(column, categories):  # the first read misses "b", as if committed meanwhile
        seen.append(list(categories or []))
        return real(column, [c for c in categories if c != "b"] if len(seen) == 2 else categories)

    monkeypatch.setattr(pgbinary, "_read_columns", late)
    query = sa.select(table.c.big, table.c.label).order_by(table.c.id)
    with engine.connect() as conn:
        got = read_binary(conn, query)
        pd.testing.assert_frame_equal(got, read_frame(conn, query), check_exact=True)
    assert len(seen) == 4  # two columns, read twice
