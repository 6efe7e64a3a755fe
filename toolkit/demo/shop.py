"""Demo world for the recommender family: a fashion catalogue and users with hidden tastes.

Users look at and buy products more often the more attributes match their tastes, so a content-based
model can beat plain popularity; the tastes go to `demo_truth_users`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa

from ..schema import (
    cart_items,
    demo_truth_users,
    order_items,
    product_interactions,
    product_reviews,
    products,
)
from .params import DemoParams
from .shop_activity import _activity_frames, _run_funnel, _sample_seen_products, _schedule
from .shop_catalog import _make_products, _make_users

INTERACTIONS_PER_ORDER = 0.3
MIN_INTERACTIONS = 5000
NEW_PRODUCTS_PER_DAY = 0.001  # catalogue growth on an append, as a share of the catalogue
NEW_PRODUCT_LEAD_DAYS = 7.0  # an append's new products were listed within the week before


@dataclass
class ShopState:
    """The world an append continues: the users with their tastes, the catalogue, max ids."""

    users: pd.DataFrame  # the demo_truth_users columns
    products: pd.DataFrame  # product_id, category, gender, color, material, price
    max_interaction_id: int = 0
    max_review_id: int = 0
    max_order_item_id: int = 0
    max_shop_order_id: int = 0
    max_cart_item_id: int = 0

    @property
    def max_product_id(self) -> int:
        return int(self.products["product_id"].max()) if len(self.products) else 0


CATALOGUE_COLUMNS = ["product_id", "category", "gender", "color", "material", "price"]


def read_state(conn: sa.Connection) -> ShopState:
    """Users with their tastes, the catalogue's attributes and the max id of every table."""
    users = pd.DataFrame(
        conn.execute(sa.select(demo_truth_users)).mappings().all(),
        columns=[c.name for c in demo_truth_users.columns],
    )
    catalogue = pd.DataFrame(
        conn.execute(sa.select(*(products.c[name] for name in CATALOGUE_COLUMNS))).mappings().all(),
        columns=CATALOGUE_COLUMNS,
    )
    max_ids = conn.execute(
        sa.select(
            sa.select(sa.func.max(product_interactions.c.id)).scalar_subquery().label("i"),
            sa.select(sa.func.max(product_reviews.c.review_id)).scalar_subquery().label("r"),
            sa.select(sa.func.max(order_items.c.item_id)).scalar_subquery().label("o"),
            sa.select(sa.func.max(order_items.c.shop_order_id)).scalar_subquery().label("s"),
            sa.select(sa.func.max(cart_items.c.item_id)).scalar_subquery().label("c"),
        )
    ).one()
    return ShopState(
        users=users,
        products=catalogue,
        max_interaction_id=int(max_ids.i or 0),
        max_review_id=int(max_ids.r or 0),
        max_order_item_id=int(max_ids.o or 0),
        max_shop_order_id=int(max_ids.s or 0),
        max_cart_item_id=int(max_ids.c or 0),
    )


def generate(params: DemoParams, state: ShopState | None) -> dict[str, pd.DataFrame]:
    """Catalogue and users (period 0; an append only adds a few products) and the
    interactions, reviews, order items and open carts of [start, end)."""
    rng = params.rng("shop")
    # Whole seconds inside [start, end): offsets count from the first whole second.
    base = pd.Timestamp(params.start).ceil("s")
    window_seconds = int(np.ceil((pd.Timestamp(params.end) - base).total_seconds()))
    price_factor = params.factor("price")

    world_orders = params.world_orders or params.orders
    if state is None or state.products.empty:
        n_products = int(np.clip(world_orders // 100, 200, 3000))
        new_products = _make_products(rng, n_products, 1, base, (0.5, 365.0), price_factor)
        state = ShopState(users=pd.DataFrame(), products=new_products.iloc[:0])
    else:
        n_new = round(len(state.products) * NEW_PRODUCTS_PER_DAY * params.days)
        new_products = _make_products(
            rng, n_new, state.max_product_id + 1, base, (0.01, NEW_PRODUCT_LEAD_DAYS), price_factor
        )
    if state.users.empty:  # period 0, or a catalogue loaded without its demo users
        new_users = _make_users(rng, max(200, world_orders // 200))
        users = new_users
    else:
        users = state.users.sort_values("user_id", ignore_index=True)
        new_users = _make_users(rng, 0)
    catalogue = pd.concat(
        [state.products[CATALOGUE_COLUMNS], new_products[CATALOGUE_COLUMNS]], ignore_index=True
    )
    # Products listed before this period sell at its prices; new ones were listed at them.
    is_old = catalogue["product_id"].to_numpy() <= state.max_product_id
    sale_price = catalogue["price"].to_numpy(float) * np.where(is_old, price_factor, 1.0)

    # params.orders already carries the volume shift (the seed plan scales it, as the
    # ticketing world relies on), so applying factor("volume") here would square it.
    target_rows = max(MIN_INTERACTIONS, round(INTERACTIONS_PER_ORDER * params.orders))
    seen = _sample_seen_products(rng, users, catalogue, target_rows, params.seed)
    funnel = _run_funnel(rng, seen, catalogue, params.seed)
    timeline = _schedule(rng, seen, funnel, len(users), window_seconds)
    activity = _activity_frames(
        rng,
        params,
        base,
        window_seconds,
        users,
        catalogue,
        sale_price,
        seen,
        funnel,
        timeline,
        state,
    )
    return {
        "products": new_products,
        "demo_truth_users": new_users[[c.name for c in demo_truth_users.columns]],
        **activity,
    }
