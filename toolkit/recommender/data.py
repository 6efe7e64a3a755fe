"""What the recommender reads: the catalogue with its stats and a window of interactions.

Windows count back from the clock (`--as-of` / MLKIT_NOW move it); later interactions are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import schema
from ..clock import utcnow
from ..db import read_frame
from ..errors import MlkitError
from ..inputs import MAX_DURATION_DAYS


@dataclass
class ShopData:
    products: pd.DataFrame  # catalogue + avg_rating, review_count, interaction_count
    interactions: pd.DataFrame  # user_id, product_id, interaction_type, rating, created_at
    reviews: pd.DataFrame  # product_id, rating, created_at (written by now)
    window_start: datetime
    window_end: datetime  # now when loaded
    days: float


def load_shop_data(engine: Engine, days: float, now: datetime | None = None) -> ShopData:
    """The catalogue, the interactions of (now - days, now] and the reviews written by now."""
    if not 0 < days <= MAX_DURATION_DAYS:  # NaN fails too
        raise MlkitError(
            f"--days must be positive and at most {MAX_DURATION_DAYS}, not {days}",
            hint="give the window in days, e.g. --days 90",
        )
    now = utcnow() if now is None else now
    start = now - timedelta(days=days)
    p, i, r = schema.products, schema.product_interactions, schema.product_reviews
    with engine.connect() as conn:
        products = read_frame(
            conn,
            sa.select(
                p.c.product_id,
                p.c.name,
                p.c.category,
                p.c.gender,
                p.c.color,
                p.c.material,
                p.c.size,
                p.c.price,
            ).order_by(p.c.product_id),
        )
        query = (
            sa.select(i.c.user_id, i.c.product_id, i.c.interaction_type, i.c.rating, i.c.created_at)
            .where(i.c.created_at > start, i.c.created_at <= now)
            .order_by(i.c.created_at, i.c.id)
        )
        interactions = read_frame(conn, query)
        reviews = read_frame(
            conn,
            sa.select(r.c.product_id, r.c.rating, r.c.created_at).where(r.c.created_at <= now),
        )
    stats = reviews.groupby("product_id")["rating"].agg(avg_rating="mean", review_count="count")
    counts = interactions.groupby("product_id").size().rename("interaction_count")
    products = products.join(stats, on="product_id").join(counts, on="product_id")
    products["review_count"] = products["review_count"].fillna(0).astype("int64")
    products["interaction_count"] = products["interaction_count"].fillna(0).astype("int64")
    products["avg_rating"] = products["avg_rating"].round(2)
    return ShopData(products, interactions, reviews, start, now, days)


def export_document(data: ShopData, generated_at: datetime) -> dict:
    """The shape of the shop's own training-data endpoint."""
    products = data.products.rename(columns={"product_id": "id", "category": "category__name"})
    products = products.astype(object).where(products.notna(), None)
    interactions = data.interactions.copy()
    interactions["created_at"] = pd.to_datetime(interactions["created_at"]).dt.strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    interactions = interactions.astype(object).where(interactions.notna(), None)
    return {
        "products": products.to_dict("records"),
        "interactions": interactions.to_dict("records"),
        "metadata": metadata(data, generated_at),
    }


def metadata(data: ShopData, generated_at: datetime) -> dict:
    return {
        "total_products": len(data.products),
        "total_interactions": len(data.interactions),
        "date_range_days": data.days,
        "window_start": _iso(data.window_start),
        "window_end": _iso(data.window_end),
        "generated_at": _iso(generated_at),
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else pd.Timestamp(moment).strftime("%Y-%m-%dT%H:%M:%SZ")
