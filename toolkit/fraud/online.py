"""Features of a new, not-yet-stored order, with the batch path's own definitions.

A wallet's history (its orders as buyer or seller, its transfers, the labels on it) is
read from Redis (`features:wallet:<id>`, written by `materialize`) when present, else
from the database; the event's history always comes from the database. The new order is
appended to those rows and `compute_features` runs on them, so online and batch can never
disagree on what a feature means.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import schema
from ..db import read_frame
from .etl import label_query
from .features import FraudSources, compute_features

WALLET_KEY = "features:wallet:{}"
ORDER_COLUMNS = ("order_id", "buyer_wallet_id", "seller_wallet_id", "event_id", "ticket_id",
                 "price", "payment_method", "is_resale", "status", "geo_lat", "geo_lon",
                 "created_at")  # fmt: skip
TIME_COLUMNS = {"created_at", "transferred_at", "label_available_at"}
MATERIALIZE_CHUNK = 5_000


def _orders_select():
    o = schema.orders
    return sa.select(*[o.c[name] for name in ORDER_COLUMNS])


def wallet_histories(conn: sa.Connection, wallet_ids: Iterable[int]) -> dict[str, pd.DataFrame]:
    """Set-based: every history row of these wallets, in one query per table."""
    ids = sorted({int(w) for w in wallet_ids})
    o, w, t = schema.orders, schema.wallets, schema.ticket_transfers
    orders = read_frame(
        conn,
        _orders_select().where(sa.or_(o.c.buyer_wallet_id.in_(ids), o.c.seller_wallet_id.in_(ids))),
    )
    wallets = read_frame(
        conn, sa.select(w.c.wallet_id, w.c.created_at).where(w.c.wallet_id.in_(ids))
    )
    transfers = read_frame(
        conn,
        sa.select(t.c.from_wallet_id, t.c.to_wallet_id, t.c.transferred_at).where(
            sa.or_(t.c.from_wallet_id.in_(ids), t.c.to_wallet_id.in_(ids))
        ),
    )
    wallet_labels = read_frame(conn, label_query(wallet_ids=ids))
    return {"orders": orders, "wallets": wallets, "transfers": transfers, "labels": wallet_labels}


def _event_history(conn: sa.Connection, event_id: int) -> dict[str, pd.DataFrame]:
    o, e = schema.orders, schema.events
    orders = read_frame(conn, _orders_select().where(o.c.event_id == event_id))
    events = read_frame(
        conn, sa.select(e.c.event_id, e.c.base_price, e.c.capacity).where(e.c.event_id == event_id)
    )
    event_orders = sa.select(o.c.order_id).where(o.c.event_id == event_id)
    event_labels = read_frame(conn, label_query(order_ids=event_orders))
    return {"orders": orders, "events": events, "labels": event_labels}


def _encode(frames: dict[str, pd.DataFrame]) -> str:
    document = {}
    for name, frame in frames.items():
        out = frame.copy()
        for column in out.columns:
            if column in TIME_COLUMNS:
                out[column] = out[column].astype("datetime64[s]").astype("int64")
        document[name] = json.loads(out.to_json(orient="split", index=False))
    return json.dumps(document, separators=(",", ":"))


def _decode(text: str) -> dict[str, pd.DataFrame]:
    frames = {}
    for name, part in json.loads(text).items():
        frame = pd.DataFrame(part["data"], columns=part["columns"])
        for column in frame.columns:
            if column in TIME_COLUMNS:
                frame[column] = pd.to_datetime(frame[column], unit="s").astype("datetime64[us]")
        frames[name] = frame
    return frames


def _split_by_wallet(history: dict[str, pd.DataFrame], wallet_id: int) -> dict[str, pd.DataFrame]:
    o, t = history["orders"], history["transfers"]
    return {
        "orders": o[(o.buyer_wallet_id == wallet_id) | (o.seller_wallet_id == wallet_id)],
        "wallets": history["wallets"][history["wallets"].wallet_id == wallet_id],
        "transfers": t[(t.from_wallet_id == wallet_id) | (t.to_wallet_id == wallet_id)],
        "labels": history["labels"][history["labels"].wallet_id == wallet_id],
    }


def materialize(engine: Engine, client, ttl_seconds: int, progress=None) -> int:
    """Write every wallet's history to Redis with a TTL, in chunks of wallets; returns count."""
    report = progress or (lambda label, done, total: None)
    with engine.connect() as conn:
        wallet_ids = (
            conn.execute(sa.select(schema.wallets.c.wallet_id).order_by(schema.wallets.c.wallet_id))
            .scalars()
            .all()
        )
        for start in range(0, len(wallet_ids), MATERIALIZE_CHUNK):
            chunk = wallet_ids[start : start + MATERIALIZE_CHUNK]
            history = wallet_histories(conn, chunk)
            pipe = client.pipeline(transaction=False)
            for wallet_id in chunk:
                state = _encode(_split_by_wallet(history, wallet_id))
                pipe.set(WALLET_KEY.format(wallet_id), state, ex=ttl_seconds)
            pipe.execute()
            report("materialize", start + len(chunk), len(wallet_ids))
    return len(wallet_ids)


def online_features(engine: Engine, order: dict, client=None) -> tuple[dict, str]:
    """The features of `order` (a mapping of ORDER_COLUMNS; order_id may be missing) and
    where the wallet's history came from: "redis" or "database"."""
    wallet_id = int(order["buyer_wallet_id"])
    cached = None
    if client is not None:
        try:
            cached = client.get(WALLET_KEY.format(wallet_id))
        except Exception:  # an unreachable cache only costs the database read
            cached = None
    with engine.connect() as conn:
        if cached is not None:
            wallet = _decode(cached.decode() if isinstance(cached, bytes) else cached)
            source = "redis"
        else:
            wallet = _split_by_wallet(wallet_histories(conn, [wallet_id]), wallet_id)
            source = "database"
        event = _event_history(conn, int(order["event_id"]))
    moment = pd.Timestamp(order["created_at"]).to_datetime64()
    new = dict(order)
    new.setdefault("order_id", None)
    # A not-yet-stored order gets an id below every real one; rows at or after its moment
    # are dropped, since no feature may see them.
    new_id = -1 if new["order_id"] is None else int(new["order_id"])
    new["order_id"] = new_id
    history = pd.concat([wallet["orders"], event["orders"]], ignore_index=True)
    history = history[(history.created_at < moment) & (history.order_id != new_id)]
    history = history.drop_duplicates("order_id")
    orders = pd.concat([history, pd.DataFrame([new], columns=list(ORDER_COLUMNS))],
                       ignore_index=True)  # fmt: skip
    orders["created_at"] = pd.to_datetime(orders["created_at"]).astype("datetime64[us]")
    orders["is_resale"] = orders["is_resale"].astype(bool)
    labels = pd.concat([wallet["labels"], event["labels"]], ignore_index=True).drop_duplicates()
    sources = FraudSources(
        orders=orders,
        wallets=wallet["wallets"],
        events=event["events"],
        transfers=wallet["transfers"],
        labels=labels[labels.label_available_at < moment],
    )
    row = compute_features(sources, target_ids=np.array([new_id])).iloc[0].to_dict()
    if order.get("order_id") is None:
        row["order_id"] = None
    return row, source
