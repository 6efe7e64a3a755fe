"""Wallet histories in Redis for online scoring, written set-based and incrementally.

A wallet's key (`features:wallet:<id>`) holds what `online._decode` reads: per table the
columns and the rows touching the wallet. The rows of a chunk of wallets are read in one
query per table, rendered to JSON by pandas once per table (not once per wallet), and
grouped by wallet as text. A run after the first writes only the wallets with activity at
or after the previous run's high-water marks (new or completed orders, transfers, labels,
new wallets), and keeps every other key alive with EXPIRE; a key found missing (expired,
Redis flushed) is rebuilt. `full` rebuilds every key.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import schema
from ..clock import utcnow
from ..db import read_frame
from .labels import label_query
from .online import (
    MATERIALIZE_CHUNK,
    TIME_COLUMNS,
    WALLET_KEY,
    _orders_select,
    wallet_histories,
)

JOB = "wallet_state"
# Each table's columns naming the wallets a row belongs to.
OWNERS = {
    "orders": ("buyer_wallet_id", "seller_wallet_id"),
    "wallets": ("wallet_id",),
    "transfers": ("from_wallet_id", "to_wallet_id"),
    "labels": ("wallet_id",),
}


@dataclass(frozen=True)
class Materialized:
    wallets: int  # every wallet known
    written: int  # keys (re)written
    kept: int  # keys whose TTL was renewed, unchanged
    seconds: float
    mode: str  # "full" or "incremental"


def _activity() -> dict[str, tuple[sa.ColumnElement, sa.Select]]:
    """Per source of activity: its time column and the (wallet_id, time) rows it has."""
    o, t, w = schema.orders, schema.ticket_transfers, schema.wallets
    labels = label_query().subquery()
    sources = {
        "buyer": (o.c.created_at, o.c.buyer_wallet_id),
        "seller": (o.c.created_at, o.c.seller_wallet_id),
        "completed_buyer": (o.c.completed_at, o.c.buyer_wallet_id),
        "completed_seller": (o.c.completed_at, o.c.seller_wallet_id),
        "from": (t.c.transferred_at, t.c.from_wallet_id),
        "to": (t.c.transferred_at, t.c.to_wallet_id),
        "wallets": (w.c.created_at, w.c.wallet_id),
        "labels": (labels.c.label_available_at, labels.c.wallet_id),
    }
    return {
        name: (ts, sa.select(who.label("wallet_id"), ts)) for name, (ts, who) in sources.items()
    }


def _marks(conn: sa.Connection) -> dict[str, datetime]:
    """The previous run's high-water mark per activity source."""
    table = schema.etl_watermarks
    rows = conn.execute(
        sa.select(table.c.job, table.c.watermark).where(table.c.job.like(f"{JOB}:%"))
    ).all()
    return {job.split(":", 1)[1]: mark for job, mark in rows}


def _changed(conn: sa.Connection, marks: dict[str, datetime]) -> tuple[set[int], dict]:
    """Wallets with activity at or after the marks (one UNION query; none on a first run),
    and the new marks."""
    parts, newest = [], {}
    for name, (ts, rows) in _activity().items():
        sub = rows.subquery()
        newest[name] = conn.execute(sa.select(sa.func.max(sub.c[ts.name]))).scalar()
        if marks:  # a source without a mark had no times last run: any time it has is new
            moment = sub.c[ts.name]
            since = moment >= marks[name] if name in marks else moment.is_not(None)
            parts.append(sa.select(sub.c.wallet_id).where(since))
    ids = set()
    if parts:
        ids = {int(w) for w in conn.execute(sa.union(*parts)).scalars() if w is not None}
    return ids, newest


def _save_marks(conn: sa.Connection, newest: dict) -> None:
    table = schema.etl_watermarks
    now = utcnow()
    for name, mark in newest.items():
        if mark is None:
            continue
        job = f"{JOB}:{name}"
        conn.execute(table.delete().where(table.c.job == job))
        conn.execute(table.insert().values(job=job, watermark=mark, updated_at=now))


def _row_texts(frame: pd.DataFrame) -> pd.Series:
    """Each row as a JSON array text (times as epoch seconds), rendered by pandas at once."""
    out = frame.copy()
    for column in TIME_COLUMNS.intersection(out.columns):
        seconds = out[column].astype("datetime64[s]").astype("int64")
        out[column] = seconds.where(out[column].notna()).astype("Int64")
    if out.empty:
        return pd.Series([], dtype=object, index=out.index)
    text = out.to_json(orient="values")
    rows = text[2:-2].split("],[")
    if len(rows) != len(out):  # a string value holding "],[": render row by row
        rows = [json.dumps(r)[1:-1] for r in json.loads(text)]
    return pd.Series(rows, index=out.index, dtype=object)


def _by_wallet(frame: pd.DataFrame, owners: tuple[str, ...]) -> pd.Series:
    """Each wallet's rows of `frame` as the text of a JSON list of arrays: the (wallet, row
    text) pairs sorted once, each wallet's run joined."""
    import numpy as np

    texts = _row_texts(frame).to_numpy()
    wallets, rows = [], []
    for i, column in enumerate(owners):
        keep = frame[column].notna()
        for other in owners[:i]:  # a row owned twice by one wallet appears once
            keep &= frame[column] != frame[other]
        keep = keep.to_numpy()
        wallets.append(frame[column].to_numpy()[keep].astype("int64"))
        rows.append(texts[keep])
    wallet, text = np.concatenate(wallets), np.concatenate(rows)
    order = np.argsort(wallet, kind="stable")
    wallet, text = wallet[order], text[order]
    starts = np.flatnonzero(np.r_[True, wallet[1:] != wallet[:-1]]) if len(wallet) else wallet
    ends = np.r_[starts[1:], len(wallet)] if len(wallet) else starts
    values = [
        "[[" + "],[".join(text[a:b].tolist()) + "]]" for a, b in zip(starts, ends, strict=True)
    ]
    return pd.Series(values, index=pd.Index(wallet[starts], dtype="int64"), dtype=object)


def _histories(conn: sa.Connection, ids: list[int]) -> dict[str, pd.DataFrame]:
    """The history rows of these wallets (sorted ids): for a dense run of ids, a range
    predicate per table (rows of ids in the range but not listed are dropped later), which
    reads as fast as a scan and sends no list of literals; else the ids themselves."""
    lo, hi = ids[0], ids[-1]
    if hi - lo + 1 > 2 * len(ids):
        return wallet_histories(conn, ids)
    o, w, t = schema.orders, schema.wallets, schema.ticket_transfers
    labels = label_query().subquery()
    return {
        "orders": read_frame(
            conn,
            _orders_select().where(
                sa.or_(o.c.buyer_wallet_id.between(lo, hi), o.c.seller_wallet_id.between(lo, hi))
            ),
        ),
        "wallets": read_frame(
            conn, sa.select(w.c.wallet_id, w.c.created_at).where(w.c.wallet_id.between(lo, hi))
        ),
        "transfers": read_frame(
            conn,
            sa.select(t.c.from_wallet_id, t.c.to_wallet_id, t.c.transferred_at).where(
                sa.or_(t.c.from_wallet_id.between(lo, hi), t.c.to_wallet_id.between(lo, hi))
            ),
        ),
        "labels": read_frame(
            conn,
            sa.select(labels.c.order_id, labels.c.wallet_id, labels.c.label_available_at).where(
                labels.c.wallet_id.between(lo, hi)
            ),
        ),
    }


def wallet_states(conn: sa.Connection, wallet_ids: list[int]) -> pd.Series:
    """The Redis value of each wallet, by wallet id: four set-based reads for all of them."""
    ids = pd.Index(sorted({int(w) for w in wallet_ids}), dtype="int64")
    history = _histories(conn, ids.tolist())
    state = pd.Series("{", index=ids, dtype=object)
    for n, (name, frame) in enumerate(history.items()):
        head = json.dumps({"columns": list(frame.columns)}, separators=(",", ":"))[:-1]
        data = _by_wallet(frame, OWNERS[name]).reindex(ids).fillna("[]")
        state = state + ("," if n else "") + f'"{name}":' + head + ',"data":' + data + "}"
    return state + "}"


# One round trip per chunk of keys, not one command each (the client's per-command cost
# is most of a pipeline's): SET with a TTL, and EXPIRE reporting the keys that are gone.
_SET_ALL = """
local ttl = ARGV[#KEYS + 1]
for i = 1, #KEYS do redis.call('SET', KEYS[i], ARGV[i], 'EX', ttl) end
return #KEYS
"""
_RENEW_ALL = """
local missing = {}
for i = 1, #KEYS do
  if redis.call('EXPIRE', KEYS[i], ARGV[1]) == 0 then missing[#missing + 1] = i end
end
return missing
"""


def _set_all(client, states: pd.Series, ttl: int) -> None:
    keys = [WALLET_KEY.format(w) for w in states.index]
    client.eval(_SET_ALL, len(keys), *keys, *states.tolist(), ttl)


def _missing(client, wallet_ids: list[int], ttl: int) -> list[int]:
    """Renew the TTL of these wallets' keys; the wallets whose key is gone."""
    gone = []
    for start in range(0, len(wallet_ids), MATERIALIZE_CHUNK):
        chunk = wallet_ids[start : start + MATERIALIZE_CHUNK]
        keys = [WALLET_KEY.format(w) for w in chunk]
        gone += [chunk[i - 1] for i in client.eval(_RENEW_ALL, len(keys), *keys, ttl)]
    return gone


def materialize_wallets(
    engine: Engine, client, ttl_seconds: int, *, full: bool = False, progress=None
) -> Materialized:
    """Write the wallets that changed since the last run (every wallet on the first run or
    with `full`) to Redis with the TTL, renewing the TTL of the others."""
    report = progress or (lambda label, done, total: None)
    started = time.perf_counter()
    w = schema.wallets
    with engine.begin() as conn:
        every = read_frame(conn, sa.select(w.c.wallet_id).order_by(w.c.wallet_id))
        every = every["wallet_id"].astype("int64").tolist()
        marks = {} if full else _marks(conn)
        changed, newest = _changed(conn, marks)
        changed.intersection_update(every)  # a seller id without a wallet row has no key
        kept = 0
        if marks:
            rest = [wid for wid in every if wid not in changed]
            gone = _missing(client, rest, ttl_seconds)
            kept = len(rest) - len(gone)
            todo = sorted(changed.union(gone))
        else:
            todo = list(every)
        for start in range(0, len(todo), MATERIALIZE_CHUNK):
            states = wallet_states(conn, todo[start : start + MATERIALIZE_CHUNK])
            _set_all(client, states, ttl_seconds)
            report("materialize", start + len(states), len(todo))
        _save_marks(conn, newest)
    mode = "incremental" if marks else "full"
    return Materialized(len(every), len(todo), kept, time.perf_counter() - started, mode)
