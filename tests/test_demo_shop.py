"""The e-shop demo world: catalogue, users with hidden tastes and their interactions,
frames only (no database)."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from mlkit.toolkit.demo import shop, shop_activity, shop_catalog
from mlkit.toolkit.demo.params import DemoParams
from mlkit.toolkit.demo.shop import ShopState

START = datetime(2026, 1, 1)
DAYS = 30
ORDERS = 200_000
ID_COLUMNS = {
    "products": "product_id",
    "demo_truth_users": "user_id",
    "product_interactions": "id",
    "product_reviews": "review_id",
    "order_items": "item_id",
    "cart_items": "item_id",
}
TIME_COLUMNS = {
    "product_interactions": "created_at",
    "product_reviews": "created_at",
    "order_items": "created_at",
    "cart_items": "added_at",
}


PARAMS = DemoParams(seed=5, orders=ORDERS, days=DAYS, start=START, world_orders=ORDERS)


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    """Period 0 of the shop world: catalogue, users and their activity."""
    return shop.generate(PARAMS, None)


def state_after(frames: dict[str, pd.DataFrame]) -> ShopState:
    """What read_state would return once these (period-0) frames were loaded."""
    return ShopState(
        users=frames["demo_truth_users"],
        products=frames["products"][shop.CATALOGUE_COLUMNS],
        max_interaction_id=int(frames["product_interactions"]["id"].max()),
        max_review_id=int(frames["product_reviews"]["review_id"].max()),
        max_order_item_id=int(frames["order_items"]["item_id"].max()),
        max_shop_order_id=int(frames["order_items"]["shop_order_id"].max()),
        max_cart_item_id=int(frames["cart_items"]["item_id"].max()),
    )


def hit_rates(frames: dict[str, pd.DataFrame], k: int = 10) -> tuple[float, float, int]:
    """HitRate@k of each user's last purchase, for an attribute-match ranking and for
    global popularity, both from what happened before the session of that purchase."""
    events = frames["product_interactions"]
    catalogue = frames["products"].reset_index(drop=True)
    position = pd.Series(np.arange(len(catalogue)), index=catalogue["product_id"])
    attribute_codes = [
        pd.factorize(catalogue[a])[0] for a in ("category", "color", "material", "gender")
    ]
    product_pos = position.loc[events["product_id"]].to_numpy()
    times = events["created_at"].to_numpy()
    is_purchase = (events["interaction_type"] == "purchase").to_numpy()

    purchases = events[is_purchase].sort_values(["created_at", "id"])
    last = purchases.groupby("user_id").tail(1)
    session_start = events.groupby("session_id")["created_at"].min()
    cutoffs = session_start.loc[last["session_id"]].to_numpy()
    rows_of_user = events.groupby("user_id").indices

    content_hits = popularity_hits = evaluated = 0
    for user, product, cutoff in zip(last["user_id"], last["product_id"], cutoffs, strict=True):
        rows = rows_of_user[user]
        history = rows[times[rows] < cutoff]
        if len(history) == 0:
            continue
        evaluated += 1
        seen = product_pos[history]
        content = np.zeros(len(catalogue))
        for codes in attribute_codes:
            content += np.bincount(codes[seen], minlength=codes.max() + 1)[codes]
        popularity = np.bincount(product_pos[times < cutoff], minlength=len(catalogue))
        popularity = popularity.astype(float)
        bought = product_pos[history[is_purchase[history]]]
        content[bought] = popularity[bought] = -np.inf
        content += 1e-6 * popularity  # ties between equal matches go to the more popular
        target = position.loc[product]
        content_hits += target in np.argsort(-content, kind="stable")[:k]
        popularity_hits += target in np.argsort(-popularity, kind="stable")[:k]
    return content_hits / evaluated, popularity_hits / evaluated, evaluated


def test_same_params_give_the_same_frames_and_another_seed_does_not(frames):
    again = shop.generate(PARAMS, None)
    assert set(again) == set(frames)
    for name, frame in frames.items():
        pd.testing.assert_frame_equal(frame, again[name])
    other = shop.generate(replace(PARAMS, seed=6), None)
    assert not frames["products"]["name"].equals(other["products"]["name"])
    assert len(other["product_interactions"]) != len(frames["product_interactions"])


def test_ids_are_unique_ints_and_texts_never_empty(frames):
    # Their columns against the schema: test_demo_schema.py.
    assert set(frames) == set(ID_COLUMNS)
    for name, frame in frames.items():
        assert frame[ID_COLUMNS[name]].dtype == np.int64, name
        assert frame[ID_COLUMNS[name]].is_unique, name
        for column in frame.columns:
            if frame[column].dtype == object or str(frame[column].dtype) == "str":
                assert not (frame[column] == "").any(), (name, column)  # NULL, never ""


def test_timestamps_are_whole_seconds_inside_the_window(frames):
    end = START + timedelta(days=DAYS)
    for name, column in TIME_COLUMNS.items():
        ts = frames[name][column]
        assert ts.dtype == "datetime64[us]", name
        assert ts.min() >= START and ts.max() < end, name
        assert (ts == ts.dt.floor("s")).all(), name
    assert (frames["products"]["created_at"] < START).all()


def test_every_row_points_at_a_real_user_and_product(frames):
    product_ids = set(frames["products"]["product_id"])
    user_ids = set(frames["demo_truth_users"]["user_id"])
    for name in TIME_COLUMNS:
        assert set(frames[name]["product_id"]) <= product_ids, name
        assert set(frames[name]["user_id"]) <= user_ids, name


def test_catalogue_is_consistent_and_sized_by_the_world(frames):
    products = frames["products"]
    assert len(products) == 2000  # clamp(200_000 // 100, 200, 3000)
    assert set(products["category"]) == set(shop_catalog.CATEGORY_NAMES)
    assert set(products["gender"]) == {"M", "F", "U"}
    women_only = products["category"].isin(["Dresses", "Skirts"])
    assert (products.loc[women_only, "gender"] == "F").all()
    one_size = products["category"].isin(["Bags", "Accessories"])
    assert (products.loc[one_size, "size"] == "One Size").all()
    shoes = products["category"].isin(["Shoes", "Sneakers"])
    assert products.loc[shoes, "size"].astype(int).between(36, 46).all()
    assert products.loc[~shoes & ~one_size, "size"].isin(["S", "M", "L", "XL"]).all()
    assert (products["price"] > 0).all()
    median = products.groupby("category")["price"].median()
    assert median["Jackets"] > 3 * median["T-Shirts"]
    for row in products.head(50).itertuples():
        assert row.name.startswith(f"{row.color} {row.material} ")
        assert row.color.lower() in row.description
    assert products["name"].nunique() > 0.5 * len(products)


def test_users_have_tastes_their_gender_allows(frames):
    users = frames["demo_truth_users"]
    assert len(users) == 1000  # max(200, 200_000 // 200)
    categories = users["categories"].str.split(",")
    assert categories.str.len().between(2, 3).all()
    assert (users["colors"].str.split(",").str.len() == 2).all()
    assert users["materials"].str.split(",").str.len().between(1, 2).all()
    men = users["gender"] == "M"
    assert not categories[men].apply(lambda c: "Dresses" in c or "Skirts" in c).any()
    assert (users["price_level"] > 0).all() and (users["activity"] > 0).all()


def test_interactions_follow_the_funnel(frames):
    interactions = frames["product_interactions"]
    assert len(interactions) == pytest.approx(0.3 * ORDERS, rel=0.15)
    kinds = interactions["interaction_type"].value_counts()
    assert set(kinds.index) == {"view", "add_to_cart", "purchase", "rate"}
    assert kinds["view"] > kinds["add_to_cart"] > kinds["purchase"] > kinds["rate"]
    is_rate = interactions["interaction_type"] == "rate"
    assert interactions.loc[~is_rate, "rating"].isna().all()
    assert interactions.loc[is_rate, "rating"].between(1, 5).all()
    assert (interactions["time_spent_seconds"] >= 0).all()
    # Heterogeneous users: the busiest tenth makes well over a tenth of the interactions.
    per_user = interactions.groupby("user_id").size().sort_values(ascending=False)
    assert per_user.iloc[: len(per_user) // 10].sum() > 0.25 * per_user.sum()

    orders = frames["order_items"]
    assert len(orders) == kinds["purchase"]
    assert len(frames["product_reviews"]) == kinds["rate"]
    assert orders.groupby("shop_order_id")["user_id"].nunique().max() == 1
    assert (orders["quantity"] >= 1).all() and (orders["purchase_price"] > 0).all()
    # Every purchase was put in the cart first, in the same session.
    carts = interactions[interactions["interaction_type"] == "add_to_cart"]
    purchases = interactions[interactions["interaction_type"] == "purchase"]
    matched = purchases.merge(carts, on=["user_id", "product_id", "session_id"])
    assert len(matched) == len(purchases)
    assert (matched["created_at_x"] > matched["created_at_y"]).all()


def test_sessions_last_under_an_hour_or_so(frames):
    interactions = frames["product_interactions"]
    browsing = interactions[interactions["interaction_type"] != "rate"]
    span = browsing.groupby("session_id")["created_at"].agg(lambda t: t.max() - t.min())
    assert span.quantile(0.99) < pd.Timedelta(hours=1)
    assert span.max() < pd.Timedelta(hours=3)
    assert browsing.groupby("session_id")["user_id"].nunique().max() == 1


def test_open_carts_are_recent_and_never_bought(frames):
    carts = frames["cart_items"]
    assert len(carts) > 0
    end = START + timedelta(days=DAYS)
    assert carts["added_at"].min() >= end - timedelta(days=shop_activity.CART_WINDOW_DAYS)
    bought = frames["order_items"][["user_id", "product_id"]].drop_duplicates()
    assert carts.merge(bought, on=["user_id", "product_id"]).empty


def test_purchases_and_ratings_follow_the_hidden_tastes(frames):
    users = frames["demo_truth_users"].set_index("user_id")
    products = frames["products"].set_index("product_id")
    orders = frames["order_items"]
    category = products.loc[orders["product_id"], "category"].to_numpy()
    liked = users.loc[orders["user_id"], "categories"].str.split(",").to_numpy()
    in_taste = np.array([c in taste for c, taste in zip(category, liked, strict=True)])
    assert in_taste.mean() > 0.7
    reviews = frames["product_reviews"]
    color = products.loc[reviews["product_id"], "color"].to_numpy()
    liked_colors = users.loc[reviews["user_id"], "colors"].str.split(",").to_numpy()
    matches = np.array([c in taste for c, taste in zip(color, liked_colors, strict=True)])
    ratings = reviews["rating"].to_numpy()
    assert ratings[matches].mean() > ratings[~matches].mean()
    assert set(np.unique(ratings)) >= {2, 3, 4, 5}


def test_content_beats_popularity_but_is_not_perfect(frames):
    content, popularity, evaluated = hit_rates(frames)
    print(f"HitRate@10 content {content:.3f} popularity {popularity:.3f} ({evaluated} users)")
    assert evaluated > 300
    assert content >= 1.5 * popularity
    assert 0.05 < content < 0.5


def test_append_continues_with_the_same_users_and_catalogue(frames):
    state = state_after(frames)
    start = START + timedelta(days=DAYS, seconds=1)
    after = shop.generate(
        replace(PARAMS, period=1, start=start, days=10, orders=60_000, shift={"price": 2.0}), state
    )
    assert after["demo_truth_users"].empty  # the users are the world's own
    new_products = after["products"]
    assert new_products["product_id"].min() > state.max_product_id
    assert (new_products["created_at"] < start).all()
    assert new_products["created_at"].min() > frames["products"]["created_at"].min()
    for name, key in ID_COLUMNS.items():
        if name in TIME_COLUMNS:
            assert after[name][key].min() > frames[name][key].max(), name
            ts = after[name][TIME_COLUMNS[name]]
            assert ts.min() >= start and ts.max() < start + timedelta(days=10), name
    events = after["product_interactions"]
    assert set(events["user_id"]) <= set(frames["demo_truth_users"]["user_id"])
    known = set(frames["products"]["product_id"]) | set(new_products["product_id"])
    assert set(events["product_id"]) <= known
    assert events["product_id"].isin(frames["products"]["product_id"]).mean() > 0.8
    assert after["order_items"]["shop_order_id"].min() > state.max_shop_order_id
    assert not set(events["session_id"]) & set(frames["product_interactions"]["session_id"])
    # The price shift: new products list at about twice the old prices, and old ones sell so.
    category_median = frames["products"].groupby("category")["price"].median()
    relative = new_products["price"] / category_median.loc[new_products["category"]].to_numpy()
    assert 1.5 < relative.median() < 2.7
    list_price = frames["products"].set_index("product_id")["price"]
    old_sales = after["order_items"][after["order_items"]["product_id"] <= state.max_product_id]
    ratio = old_sales["purchase_price"] / list_price.loc[old_sales["product_id"]].to_numpy()
    assert ratio.between(1.3, 2.01).all() and ratio.median() == pytest.approx(2.0, abs=0.01)


def test_interactions_scale_with_orders_not_the_world():
    small = shop.generate(replace(PARAMS, orders=50_000), None)["product_interactions"]
    assert len(small) == pytest.approx(0.3 * 50_000, rel=0.15)
    tiny = shop.generate(replace(PARAMS, orders=1_000, world_orders=1_000, days=3), None)
    assert len(tiny["products"]) == 200 and len(tiny["demo_truth_users"]) == 200
    assert len(tiny["product_interactions"]) >= 0.85 * shop.MIN_INTERACTIONS


def test_generation_at_a_million_orders_takes_a_few_seconds():
    started = time.perf_counter()
    frames = shop.generate(replace(PARAMS, orders=1_000_000, world_orders=1_000_000, days=90), None)
    elapsed = time.perf_counter() - started
    rows = len(frames["product_interactions"])
    print(f"shop: {rows} interactions in {elapsed:.2f}s")
    assert len(frames["products"]) == 3000 and len(frames["demo_truth_users"]) == 5000
    assert rows == pytest.approx(300_000, rel=0.15)
    assert elapsed < 10.0
