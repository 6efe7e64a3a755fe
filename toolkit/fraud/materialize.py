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
from .labels import label_query
from .online import MATERIALIZE_CHUNK, TIME_COLUMNS, WALLET_KEY, wallet_histories

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
    """Wallets with activity at or after the marks (one UNION query), and the new marks."""
    parts, newest = [], {}
    for name, (ts, rows) in _activity().items():
        sub = rows.subquery()
        newest[name] = conn.execute(sa.select(sa.func.max(sub.c[ts.name]))).scalar()
        if name in marks:
            parts.append(sa.select(sub.c.wallet_id).where(sub.c[ts.name] >= marks[name]))
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
    """Each wallet's rows of `frame` as the text of a JSON list of arrays."""
    texts = _row_texts(frame)
    pairs = []
    for i, column in enumerate(owners):
        keep = frame[column].notna()
        for other in owners[:i]:  # a row owned twice by one wallet appears once
            keep &= frame[column] != frame[other]
        pairs.append(pd.DataFrame({"wallet": frame.loc[keep, column], "text": texts[keep]}))
    joined = pd.concat(pairs).groupby("wallet")["text"].agg("],[".join)
    joined.index = joined.index.astype("int64")
    return "[[" + joined + "]]"


def wallet_states(conn: sa.Connection, wallet_ids: list[int]) -> pd.Series:
    """The Redis value of each wallet, by wallet id: four set-based reads for all of them."""
    history = wallet_histories(conn, wallet_ids)
    ids = pd.Index(sorted({int(w) for w in wallet_ids}), dtype="int64")
    state = pd.Series("{", index=ids, dtype=object)
    for n, (name, frame) in enumerate(history.items()):
        head = json.dumps({"columns": list(frame.columns)}, separators=(",", ":"))[:-1]
        data = _by_wallet(frame, OWNERS[name]).reindex(ids).fillna("[]")
        state = state + ("," if n else "") + f'"{name}":' + head + ',"data":' + data + "}"
    return state + "}"


def materialize_wallets(
    engine: Engine, client, ttl_seconds: int, *, full: bool = False, progress=None
) -> Materialized:
    """Write the wallets that changed since the last run (every wallet on the first run or
    with `full`) to Redis with the TTL, renewing the TTL of the others."""
    report = progress or (lambda label, done, total: None)
    started = time.perf_counter()
    w = schema.wallets
    with engine.begin() as conn:
        every = conn.execute(sa.select(w.c.wallet_id).order_by(w.c.wallet_id)).scalars().all()
        marks = {} if full else _marks(conn)
        changed, newest = _changed(conn, marks)
        changed.intersection_update(every)  # a seller id without a wallet row has no key
        kept = 0
        if marks:
            rest = [wid for wid in every if wid not in changed]
            pipe = client.pipeline(transaction=False)
            for wid in rest:
                pipe.expire(WALLET_KEY.format(wid), ttl_seconds)
            alive = pipe.execute()
            kept = sum(1 for ok in alive if ok)
            todo = sorted(changed.union(w for w, ok in zip(rest, alive, strict=True) if not ok))
        else:
            todo = list(every)
        for start in range(0, len(todo), MATERIALIZE_CHUNK):
            states = wallet_states(conn, todo[start : start + MATERIALIZE_CHUNK])
            pipe = client.pipeline(transaction=False)
            for wid, value in states.items():
                pipe.set(WALLET_KEY.format(wid), value, ex=ttl_seconds)
            pipe.execute()
            report("materialize", start + len(states), len(todo))
        _save_marks(conn, newest)
    mode = "incremental" if marks else "full"
    return Materialized(len(every), len(todo), kept, time.perf_counter() - started, mode)
