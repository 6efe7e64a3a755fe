"""Pricing history: each primary order as one pull of the strategy that priced it.

The strategy follows from price / base price; the reward is scaled by its high quantile over the
training history (kept with the trained state) and clipped, so the policies learn from rewards in
[0, 1].
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import sqlalchemy as sa

from .. import schema
from ..db import read_frame
from .state import ARMS

if TYPE_CHECKING:
    import pandas as pd

REWARD_QUANTILE = 0.999
_CENT = 0.005  # a price within half a cent of the base price is the base price


# surge_pricing above `surge` x base price, early_bird below `early` x, baseline at it, else
# ml_pricing.
def infer_arms(price: np.ndarray, base: np.ndarray, surge: float, early: float) -> np.ndarray:
    """Arm index (into ARMS) per order from its price and the event's base price."""
    ratio = price / base
    return np.select(
        [ratio > surge, ratio < early, np.abs(price - base) < _CENT],
        [ARMS.index("surge_pricing"), ARMS.index("early_bird"), ARMS.index("baseline")],
        ARMS.index("ml_pricing"),
    )


# Revenue relative to the base price (comparable across events) x conversion (1 COMPLETED,
# 0 FAILED or REFUNDED) x (1 + the event's completed primary sales before the order / capacity).
def combined_reward(
    price: np.ndarray, base: np.ndarray, converted: np.ndarray, popularity: np.ndarray
) -> np.ndarray:
    return (price / base) * converted * (1.0 + np.clip(popularity, 0.0, 1.0))


def reward_scale(combined: np.ndarray) -> float:
    positive = combined[combined > 0]
    return float(np.quantile(positive, REWARD_QUANTILE)) if len(positive) else 1.0


def normalised_reward(combined: np.ndarray, scale: float) -> np.ndarray:
    return np.clip(combined / scale, 0.0, 1.0)


def history_query(since: datetime | None, until: datetime | None = None) -> sa.Select:
    """Primary orders with an outcome in [since, until), their event's base price and
    capacity and the event's completed sales before each order (a window over the whole
    history of the events concerned, so popularity is right at the window's start)."""
    o, e = schema.orders, schema.events
    primary = o.c.is_resale == sa.false()
    completed = sa.case((o.c.status == "COMPLETED", 1), else_=0)
    sold_before = sa.func.sum(completed).over(
        partition_by=o.c.event_id, order_by=(o.c.created_at, o.c.order_id), rows=(None, -1)
    )
    events_in_window = sa.select(o.c.event_id).where(primary)
    if since is not None:
        events_in_window = events_in_window.where(o.c.created_at >= since)
    if until is not None:
        events_in_window = events_in_window.where(o.c.created_at < until)
    inner = (
        sa.select(
            o.c.order_id,
            o.c.event_id,
            o.c.created_at,
            o.c.price,
            o.c.status,
            sa.func.coalesce(sold_before, 0).label("sold_before"),
        )
        .where(primary, o.c.event_id.in_(events_in_window.distinct()))
        .subquery()
    )
    query = (
        sa.select(
            inner.c.order_id,
            inner.c.event_id,
            inner.c.created_at,
            inner.c.price,
            inner.c.status,
            inner.c.sold_before,
            e.c.base_price,
            e.c.capacity,
            e.c.event_type,
        )
        .join(e, e.c.event_id == inner.c.event_id)
        .where(inner.c.status.in_(("COMPLETED", "FAILED", "REFUNDED")), e.c.base_price > 0)
        .order_by(inner.c.created_at, inner.c.order_id)
    )
    if since is not None:
        query = query.where(inner.c.created_at >= since)
    if until is not None:
        query = query.where(inner.c.created_at < until)
    return query


def load_history(
    conn: sa.Connection,
    since: datetime | None,
    *,
    surge: float,
    early: float,
    until: datetime | None = None,
) -> pd.DataFrame:
    """One row per pull, time-ordered: arm, revenue, conversion, popularity, combined."""
    import pandas as pd

    frame = read_frame(conn, history_query(since, until))
    frame["created_at"] = pd.to_datetime(frame["created_at"])
    frame["event_type"] = frame["event_type"].fillna("").astype(str)
    price = frame["price"].to_numpy(dtype=float)
    base = frame["base_price"].to_numpy(dtype=float)
    capacity = frame["capacity"].to_numpy(dtype=float)
    frame["arm"] = infer_arms(price, base, surge, early)
    frame["revenue"] = price / base
    frame["conversion"] = (frame["status"] == "COMPLETED").to_numpy(dtype=float)
    frame["popularity"] = np.divide(
        frame["sold_before"].to_numpy(dtype=float),
        capacity,
        out=np.zeros(len(frame)),
        where=capacity > 0,
    ).clip(0.0, 1.0)
    frame["combined"] = combined_reward(
        price, base, frame["conversion"].to_numpy(), frame["popularity"].to_numpy()
    )
    return frame
