"""Wallet histories in Redis for online scoring, written set-based and incrementally.

A wallet's key (`features:wallet:<id>`) holds what `online._decode` reads: per table the
columns and the rows touching the wallet. The rows of a chunk of wallets are read in one
query per table, rendered to JSON by pandas once per table (not once per wallet), and
grouped by wallet as text. A run after the first writes only the wallets with activity at
or after the previous run's high-water marks (new or completed orders, transfers, labels,
new wallets), found by one query, and keeps every other key alive with EXPIRE; a key found
missing (expired, Redis flushed) is rebuilt. `full` rebuilds every key.

Redis is written through scripts whose commands are packed here (redis-py's packing costs
microseconds per argument, more than Redis takes to run the command), in batches that keep
each script call short, since Redis runs nothing else meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import schema
from ..clock import utcnow
from ..db import read_frame
from .labels import label_query
from .online import TIME_COLUMNS, WALLET_KEY, _orders_select, wallet_histories

JOB = "wallet_state"
# Each table's columns naming the wallets a row belongs to.
OWNERS = {
    "orders": ("buyer_wallet_id", "seller_wallet_id"),
    "wallets": ("wallet_id",),
    "transfers": ("from_wallet_id", "to_wallet_id"),
    "labels": ("wallet_id",),
}
# Wallets whose histories are read and rendered together: a row whose owners fall in two
# chunks is rendered twice, so larger chunks do less work, at the cost of memory.
READ_CHUNK = 10_000
# Keys per script call: about 10 ms of Redis time each.
WRITE_BATCH = 5_000
RENEW_BATCH = 20_000
# Lua's numbers are doubles: ids past 2**53 are passed one by one, as text.
EXACT_IDS = 2**53


@dataclass(frozen=True)
class Materialized:
    wallets: int  # every wallet known
    written: int  # keys (re)written
    kept: int  # keys whose TTL was renewed, unchanged
    seconds: float
    mode: str  # "full" or "incremental"


def _activity() -> dict[str, tuple[sa.ColumnElement, tuple[sa.ColumnElement, ...]]]:
    """Per source of activity: its time column and the columns naming its wallets."""
    o, t, w = schema.orders, schema.ticket_transfers, schema.wallets
    labels = label_query().subquery()
    return {
        "orders": (o.c.created_at, (o.c.buyer_wallet_id, o.c.seller_wallet_id)),
        "completed": (o.c.completed_at, (o.c.buyer_wallet_id, o.c.seller_wallet_id)),
        "transfers": (t.c.transferred_at, (t.c.from_wallet_id, t.c.to_wallet_id)),
        "wallets": (w.c.created_at, (w.c.wallet_id,)),
        "labels": (labels.c.label_available_at, (labels.c.wallet_id,)),
    }


def _marks(conn: sa.Connection) -> dict[str, datetime]:
    """The previous run's high-water mark per activity source."""
    table = schema.etl_watermarks
    rows = conn.execute(
        sa.select(table.c.job, table.c.watermark).where(table.c.job.like(f"{JOB}:%"))
    ).all()
    return {job.split(":", 1)[1]: mark for job, mark in rows}


def _newest(conn: sa.Connection) -> dict[str, datetime | None]:
    """Every source's latest time (a first or full run)."""
    return {
        name: conn.execute(sa.select(sa.func.max(moment))).scalar()
        for name, (moment, _) in _activity().items()
    }


def _changed(conn: sa.Connection, marks: dict[str, datetime]) -> tuple[set[int], dict]:
    """Wallets with activity at or after the marks, and the new marks, from one UNION ALL
    of each source's rows since its mark (a source without a mark had no times last run:
    any time it has is new). A new mark is the latest time read, or the old one."""
    parts = []
    for name, (moment, owners) in _activity().items():
        since = moment >= marks[name] if name in marks else moment.is_not(None)
        second = owners[1] if len(owners) > 1 else sa.cast(sa.null(), sa.BigInteger)
        parts.append(
            sa.select(
                sa.literal_column(f"'{name}'").label("source"),
                sa.type_coerce(moment, sa.DateTime).label("moment"),
                sa.type_coerce(owners[0], sa.BigInteger).label("first"),
                sa.type_coerce(second, sa.BigInteger).label("second"),
            ).where(since)
        )
    newest = {name: marks.get(name) for name in _activity()}
    ids = set()
    for source, moment, first, second in conn.execute(sa.union_all(*parts)):
        if newest[source] is None or moment > newest[source]:
            newest[source] = moment
        ids.update(w for w in (first, second) if w is not None)
    return {int(w) for w in ids}, newest


def _save_marks(conn: sa.Connection, newest: dict) -> None:
    """The marks replace the previous run's (sources an older mlkit named go with them)."""
    table = schema.etl_watermarks
    now = utcnow()
    conn.execute(table.delete().where(table.c.job.like(f"{JOB}:%")))
    rows = [
        {"job": f"{JOB}:{name}", "watermark": mark, "updated_at": now}
        for name, mark in newest.items()
        if mark is not None
    ]
    if rows:
        conn.execute(table.insert(), rows)


def _row_texts(frame: pd.DataFrame) -> np.ndarray:
    """Each row as a JSON array text without its brackets (times as epoch seconds),
    rendered by pandas at once."""
    times = {
        column: frame[column].astype("datetime64[s]").astype("int64").where(frame[column].notna())
        for column in TIME_COLUMNS.intersection(frame.columns)
    }
    out = frame.assign(**{column: seconds.astype("Int64") for column, seconds in times.items()})
    if out.empty:
        return np.array([], dtype=object)
    text = out.to_json(orient="values")
    rows = text[2:-2].split("],[")
    if len(rows) != len(out):  # a string value holding "],[": render row by row
        rows = [json.dumps(r)[1:-1] for r in json.loads(text)]
    return np.array(rows, dtype=object)


def _by_wallet(frame: pd.DataFrame, owners: tuple[str, ...], ids: np.ndarray) -> np.ndarray:
    """Each wallet of `ids` (sorted) its rows of `frame` as the text of a JSON list of
    arrays ("[]" for none). The (wallet, row text) pairs are sorted once and joined in one
    string, each wallet's run ending in a newline, which JSON text never holds raw."""
    out = np.full(len(ids), "[]", dtype=object)
    if frame.empty:
        return out
    texts = _row_texts(frame)
    wallets, rows = [], []
    for i, column in enumerate(owners):
        keep = frame[column].notna()
        for other in owners[:i]:  # a row owned twice by one wallet appears once
            keep &= frame[column] != frame[other]
        keep = keep.to_numpy(dtype=bool)
        wallets.append(frame[column].to_numpy()[keep].astype("int64"))
        rows.append(texts[keep])
    wallet, text = np.concatenate(wallets), np.concatenate(rows)
    at = np.searchsorted(ids, wallet).clip(max=len(ids) - 1)
    listed = ids[at] == wallet  # a range read brings rows of wallets not asked for
    wallet, text, at = wallet[listed], text[listed], at[listed]
    if not len(wallet):
        return out
    order = np.argsort(wallet, kind="stable")
    wallet, text, at = wallet[order], text[order], at[order]
    last = np.r_[wallet[1:] != wallet[:-1], True]
    pieces = np.empty(2 * len(text), dtype=object)
    pieces[0::2] = text
    pieces[1::2] = np.where(last, "]]\n[[", "],[")
    runs = ("[[" + "".join(pieces.tolist())[:-3]).split("\n")
    out[at[last]] = runs
    return out


def _histories(conn: sa.Connection, ids: np.ndarray) -> dict[str, pd.DataFrame]:
    """The history rows of these wallets (sorted ids): for a dense run of ids, a range
    predicate per table (rows of ids in the range but not listed are dropped later), which
    reads as fast as a scan and sends no list of literals; else the ids themselves."""
    lo, hi = int(ids[0]), int(ids[-1])
    if hi - lo + 1 > 2 * len(ids):
        return wallet_histories(conn, ids.tolist())
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


def wallet_states(conn: sa.Connection, wallet_ids) -> tuple[np.ndarray, list[str]]:
    """The Redis value of each wallet (sorted, distinct ids, returned with the values):
    four set-based reads for all of them."""
    ids = np.unique(np.asarray(wallet_ids, dtype="int64"))
    history = _histories(conn, ids)
    template, tables = [], []
    for name, frame in history.items():
        columns = json.dumps(list(frame.columns), separators=(",", ":")).replace("%", "%%")
        template.append(f'"{name}":{{"columns":{columns},"data":%s}}')
        tables.append(_by_wallet(frame, OWNERS[name], ids).tolist())
    pattern = "{" + ",".join(template) + "}"
    return ids, [pattern % parts for parts in zip(*tables, strict=True)]


# Set each key with the TTL (KEYS: the keys, ARGV: their values, then the TTL).
_SET_ALL = """
local ttl = ARGV[#KEYS + 1]
for i = 1, #KEYS do redis.call('SET', KEYS[i], ARGV[i], 'EX', ttl) end
return #KEYS
"""
# Renew the TTL of the keys of runs of consecutive ids, given as first and last id; returns
# the ids whose key is gone. Keys are built here, so a call sends a few numbers, not 20,000
# keys (ARGV: the key's prefix, the TTL, then the runs).
_RENEW_RUNS = """
local prefix, ttl, missing = ARGV[1], ARGV[2], {}
for r = 3, #ARGV, 2 do
  if ARGV[r] == ARGV[r + 1] then
    if redis.call('EXPIRE', prefix .. ARGV[r], ttl) == 0 then missing[#missing + 1] = ARGV[r] end
  else
    for id = tonumber(ARGV[r]), tonumber(ARGV[r + 1]) do
      local text = string.format('%d', id)
      if redis.call('EXPIRE', prefix .. text, ttl) == 0 then missing[#missing + 1] = text end
    end
  end
end
return missing
"""


def _packed(*args: str) -> bytes:
    """One command in Redis' protocol. JSON from pandas is ASCII (non-ASCII escaped), so
    the lengths of the text are the lengths of its bytes; otherwise each is encoded."""
    text = f"*{len(args)}\r\n" + "".join([f"${len(a)}\r\n{a}\r\n" for a in args])
    if text.isascii():
        return text.encode("ascii")
    encoded = [a.encode() for a in args]
    return f"*{len(args)}\r\n".encode() + b"".join(
        [b"$%d\r\n%s\r\n" % (len(a), a) for a in encoded]
    )


class _Scripts:
    """The two scripts, called by their SHA1 with commands packed here, every batch of a
    call pipelined in one round trip."""

    def __init__(self, client):
        self.client = client

    def run(self, script: str, batches: list[list[str]]) -> list:
        """EVALSHA of `script` once per batch of arguments; a script Redis does not hold
        (restarted, flushed) is loaded and the batches are sent again: each is
        idempotent."""
        from redis.exceptions import NoScriptError

        sha = hashlib.sha1(script.encode()).hexdigest()
        commands = b"".join(_packed("EVALSHA", sha, *args) for args in batches)
        try:
            return self._send(commands, len(batches))
        except NoScriptError:
            self.client.script_load(script)
            return self._send(commands, len(batches))

    def _send(self, commands: bytes, count: int) -> list:
        from redis.exceptions import ResponseError

        pool = self.client.connection_pool
        connection = pool.get_connection()
        try:
            connection.send_packed_command([commands])
            replies, error = [], None
            for _ in range(count):  # every reply is read, so the connection stays in step
                try:
                    replies.append(connection.read_response())
                except ResponseError as exc:
                    error = error or exc
            if error is not None:
                raise error
            return replies
        finally:
            pool.release(connection)

    def set_all(self, wallet_ids: np.ndarray, values: list[str], ttl: int) -> None:
        keys = [WALLET_KEY.format(w) for w in wallet_ids.tolist()]
        batches = []
        for start in range(0, len(keys), WRITE_BATCH):
            names = keys[start : start + WRITE_BATCH]
            batches.append([str(len(names)), *names, *values[start : start + WRITE_BATCH]])
            batches[-1].append(str(ttl))
        if batches:
            self.run(_SET_ALL, batches)

    def missing(self, wallet_ids: np.ndarray, ttl: int) -> list[int]:
        """Renew the TTL of these wallets' keys (sorted ids); the wallets whose key is
        gone."""
        prefix = WALLET_KEY.format("")
        batches = []
        for start in range(0, len(wallet_ids), RENEW_BATCH):
            ids = wallet_ids[start : start + RENEW_BATCH]
            inexact = ids >= EXACT_IDS
            split = np.r_[True, np.diff(ids) != 1] | inexact
            split[1:] |= inexact[:-1]
            starts = np.flatnonzero(split)
            ends = np.r_[starts[1:], len(ids)] - 1
            runs = np.column_stack([ids[starts], ids[ends]]).ravel().astype(str).tolist()
            batches.append(["0", prefix, str(ttl), *runs])
        found = self.run(_RENEW_RUNS, batches) if batches else []
        return [int(w) for reply in found for w in reply]


def materialize_wallets(
    engine: Engine, client, ttl_seconds: int, *, full: bool = False, progress=None
) -> Materialized:
    """Write the wallets that changed since the last run (every wallet on the first run or
    with `full`) to Redis with the TTL, renewing the TTL of the others."""
    report = progress or (lambda label, done, total: None)
    started = time.perf_counter()
    scripts = _Scripts(client)
    w = schema.wallets
    with engine.begin() as conn:
        every = read_frame(conn, sa.select(w.c.wallet_id).order_by(w.c.wallet_id))
        every = every["wallet_id"].to_numpy(dtype="int64")
        marks = {} if full else _marks(conn)
        if not marks.keys() & _activity().keys():  # an older mlkit's sources: a full run
            marks = {}
        kept = 0
        if marks:
            changed, newest = _changed(conn, marks)
            is_changed = np.isin(every, np.fromiter(changed, dtype="int64", count=len(changed)))
            rest = every[~is_changed]
            gone = scripts.missing(rest, ttl_seconds)
            kept = len(rest) - len(gone)
            # a seller id without a wallet row has no key
            todo = np.union1d(every[is_changed], np.asarray(gone, dtype="int64"))
        else:
            newest = _newest(conn)
            todo = every
        # Redis is written by a second thread, so a chunk is sent while the next is read and
        # rendered (the socket waits release the GIL); one chunk in flight at a time.
        with ThreadPoolExecutor(max_workers=1) as writer:
            sending = None
            for start in range(0, len(todo), READ_CHUNK):
                ids, values = wallet_states(conn, todo[start : start + READ_CHUNK])
                if sending is not None:
                    sending.result()
                    report("materialize", start, len(todo))
                sending = writer.submit(scripts.set_all, ids, values, ttl_seconds)
            if sending is not None:
                sending.result()
                report("materialize", len(todo), len(todo))
        _save_marks(conn, newest)
    mode = "incremental" if marks else "full"
    return Materialized(len(every), len(todo), kept, time.perf_counter() - started, mode)
