"""Confirmed fraud labels and when each became usable: one query for the batch ETL, the
training set and the online path alike."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from .. import schema


def label_query(
    available_before: datetime | None = None,
    wallet_ids: list[int] | None = None,
    order_ids: sa.Select | None = None,
    *,
    available_at_or_before: datetime | None = None,
) -> sa.Select:
    """Confirmed fraud labels (alerts and bot detections) with the time each became usable.
    Filters go into both branches of the union, where the indexes are."""
    a, b = schema.security_alerts, schema.bot_detection
    alerts = sa.select(a.c.order_id, a.c.wallet_id, a.c.label_available_at).where(
        a.c.confirmed_fraud.is_(True), a.c.order_id.is_not(None)
    )
    bots = sa.select(b.c.order_id, b.c.wallet_id, b.c.label_available_at).where(
        b.c.is_bot.is_(True), b.c.order_id.is_not(None)
    )
    if available_before is not None:
        alerts = alerts.where(a.c.label_available_at < available_before)
        bots = bots.where(b.c.label_available_at < available_before)
    if available_at_or_before is not None:
        alerts = alerts.where(a.c.label_available_at <= available_at_or_before)
        bots = bots.where(b.c.label_available_at <= available_at_or_before)
    if wallet_ids is not None:
        alerts = alerts.where(a.c.wallet_id.in_(wallet_ids))
        bots = bots.where(b.c.wallet_id.in_(wallet_ids))
    if order_ids is not None:
        alerts = alerts.where(a.c.order_id.in_(order_ids))
        bots = bots.where(b.c.order_id.in_(order_ids))
    union = sa.union_all(alerts, bots).subquery("labels")
    return sa.select(union.c.order_id, union.c.wallet_id, union.c.label_available_at)


def own_labels(labels, order_ids):
    """When each order's own fraud label first became available (NaT: none yet), from a
    frame of `label_query` rows."""
    first = labels.groupby("order_id")["label_available_at"].min()
    # reindex, not map: map of an empty datetime Series casts to float under pandas 3.
    return first.reindex(order_ids).astype("datetime64[us]").to_numpy()
