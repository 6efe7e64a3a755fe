"""The demo worlds' ground truth, read only to grade models: training never sees it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import schema
from ..errors import MlkitError

if TYPE_CHECKING:
    import pandas as pd


# Order ids per statement when reading the truth of some orders: within every dialect's limit
# on bound parameters (SQLite's is 32,766).
TRUTH_IDS_PER_READ = 5_000


def fraud_probabilities(engine: Engine, order_ids) -> pd.DataFrame | None:
    """The generator's true fraud probability of each of `order_ids` (ordered by id), on a
    demo database (else None). Read for those orders only, a batch of ids per statement:
    the whole table was 20 million rows, and 5 GB of a training's peak, at 20M orders."""
    import pandas as pd

    t = schema.demo_truth_orders
    ids = sorted({int(i) for i in order_ids})
    rows = []
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(t.name):
            return None
        for at in range(0, len(ids), TRUTH_IDS_PER_READ):
            batch = ids[at : at + TRUTH_IDS_PER_READ]
            query = sa.select(t.c.order_id, t.c.fraud_probability).where(t.c.order_id.in_(batch))
            rows += conn.execute(query).all()
    if not rows:
        return None
    frame = pd.DataFrame(rows, columns=["order_id", "fraud_probability"])
    return frame.sort_values("order_id", ignore_index=True)


def best_pricing_arm(engine: Engine, frame: pd.DataFrame) -> str | None:
    """The arm with the best true expected revenue over the window's mix of event types
    (what the bandit should find), on a demo database (else None)."""
    import pandas as pd

    t, e = schema.demo_truth_pricing, schema.events
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(t.name):
            return None
        truth = pd.DataFrame(
            conn.execute(sa.select(t.c.event_type, t.c.arm, t.c.expected_revenue_ratio)).all()
        )
        types = pd.DataFrame(
            conn.execute(sa.select(e.c.event_type, e.c.event_id)).all(),
            columns=["event_type", "event_id"],
        )
    if truth.empty:
        return None
    mix = frame[["event_id"]].merge(types, on="event_id")["event_type"].value_counts(normalize=True)
    table = truth.pivot(index="event_type", columns="arm", values="expected_revenue_ratio")
    expected = table.reindex(mix.index).mul(mix, axis=0).sum()
    return str(expected.idxmax())


def pricing_arms(engine: Engine, arms: tuple[str, ...]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The true arms for a simulation: conversion averaged over event types, and each arm's
    mean price ratio scaled so the best-paying conversion is worth 1."""
    t = schema.demo_truth_pricing
    with engine.connect() as conn:
        rows = (
            conn.execute(sa.select(t.c.arm, t.c.conversion, t.c.mean_price_ratio)).all()
            if sa.inspect(conn).has_table(t.name)
            else []
        )
    if not rows:
        raise MlkitError(
            "this database holds no demo truth for pricing", hint="seed one with: mlkit demo seed"
        )
    conversion: dict[str, list[float]] = {arm: [] for arm in arms}
    ratio = {}
    for arm, conv, price_ratio in rows:
        conversion[arm].append(conv)
        ratio[arm] = price_ratio
    rates = np.array([np.mean(conversion[a]) for a in arms])
    scale = np.array([ratio[a] for a in arms])
    return list(arms), rates, scale / scale.max()
