"""What the e-shop's users do: which products they look at (by affinity to their tastes),
how far down the funnel they go, when, and the frames of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy.special import expit, ndtri

from .params import DemoParams
from .shop_catalog import (
    CATEGORIES,
    CATEGORY_NAMES,
    COLORS,
    GENDERS,
    MATERIALS,
    REVIEW_TEMPLATES,
    _choose,
)

if TYPE_CHECKING:
    from .shop import ShopState

# Affinity weights: the hidden model every interaction is drawn from.
CATEGORY_WEIGHT = 2.0
COLOR_WEIGHT = 1.2
MATERIAL_WEIGHT = 0.9
PRICE_WEIGHT = 1.0  # per unit of |log(price / the price the user wants)|
POPULARITY_WEIGHT = 0.6  # per sd of a product's latent appeal
# Row: the user's gender preference; column: the product's gender line.
GENDER_AFFINITY = np.array([[0.0, -4.0, -0.3], [-4.0, 0.0, -0.3], [-0.5, -0.5, 0.0]])


ROWS_PER_VIEWED_PRODUCT = 1.7  # views, carts, purchases and rates per distinct product seen
REPEAT_VIEWS = 0.4  # mean extra views of a product a user has looked at
PRODUCTS_SEEN_PER_SESSION = 4.0
CART_WINDOW_DAYS = 3  # carts older than this are abandoned, not kept in cart_items
SCORE_CHUNK_CELLS = 4_000_000  # users x products scored at once: ~32 MB per float array


# ---------------------------------------------------------------- interactions


@dataclass
class _Seen:
    """Distinct (user, product) pairs a user looked at this period, by row index."""

    user: np.ndarray  # index into users
    product: np.ndarray  # index into the catalogue
    affinity: np.ndarray
    per_user: np.ndarray  # pairs per user


@dataclass
class _Funnel:
    carted: np.ndarray
    bought: np.ndarray
    rated: np.ndarray
    rating: np.ndarray
    extra_views: np.ndarray


@dataclass
class _Timeline:
    """Seconds from the period's first whole second, and session of every event."""

    view_pair: np.ndarray
    view_time: np.ndarray
    view_spent: np.ndarray
    view_session: np.ndarray
    pair_session: np.ndarray
    cart_time: np.ndarray
    purchase_time: np.ndarray
    checkout_spent: np.ndarray
    rate_time: np.ndarray
    session_user: np.ndarray
    session_number: np.ndarray


def _sample_seen_products(
    rng: np.random.Generator,
    users: pd.DataFrame,
    catalogue: pd.DataFrame,
    target_rows: int,
    seed: int,
) -> _Seen:
    """Which products each user looks at: Gumbel-top-k over exp(affinity), so the first
    pick is drawn with probability ∝ exp(affinity), the next from the rest, and so on."""
    n_users, n_products = len(users), len(catalogue)
    category_mask = _taste_mask(users["categories"], CATEGORY_NAMES)
    color_mask = _taste_mask(users["colors"], COLORS)
    material_mask = _taste_mask(users["materials"], MATERIALS)
    user_gender = _codes(users["gender"], GENDERS)
    wanted_price = np.log(users["price_level"].to_numpy(float))
    product_category = _codes(catalogue["category"], CATEGORY_NAMES)
    product_color = _codes(catalogue["color"], COLORS)
    product_material = _codes(catalogue["material"], MATERIALS)
    product_gender = _codes(catalogue["gender"], GENDERS)
    median = np.array([c.median_price for c in CATEGORIES])[product_category]
    relative_price = np.log(catalogue["price"].to_numpy(float) / median)
    appeal = _product_latent(catalogue, seed, salt=1)

    # Heavy-tailed activity; nobody looks at more than a third of the catalogue.
    activity = users["activity"].to_numpy(float)
    per_user = rng.multinomial(
        round(target_rows / ROWS_PER_VIEWED_PRODUCT), activity / activity.sum()
    )
    per_user = np.minimum(per_user, max(1, n_products // 3))

    # Per-user weights and per-product terms in float32: the users x products blocks are
    # the bulk of the work, and argpartition runs several times faster on float32.
    f32 = np.float32
    category_weight = (CATEGORY_WEIGHT * category_mask).astype(f32)
    color_weight = (COLOR_WEIGHT * color_mask).astype(f32)
    material_weight = (MATERIAL_WEIGHT * material_mask).astype(f32)
    gender_weight = GENDER_AFFINITY.astype(f32)[user_gender]
    relative_price = relative_price.astype(f32)
    wanted_price = wanted_price.astype(f32)
    appeal_term = (POPULARITY_WEIGHT * appeal).astype(f32)

    chunk = max(1, SCORE_CHUNK_CELLS // max(n_products, 1))
    picked_user, picked_product, picked_affinity = [], [], []
    for first in range(0, n_users, chunk):
        block = slice(first, min(first + chunk, n_users))
        wanted = per_user[block]
        k = int(wanted.max(initial=0))
        if k == 0:
            continue
        affinity = category_weight[block][:, product_category]
        affinity += color_weight[block][:, product_color]
        affinity += material_weight[block][:, product_material]
        affinity += gender_weight[block][:, product_gender]
        affinity -= f32(PRICE_WEIGHT) * np.abs(relative_price[None, :] - wanted_price[block, None])
        affinity += appeal_term[None, :]
        # Gumbel noise from float32 uniforms; a uniform of exactly 0 just never wins.
        with np.errstate(divide="ignore"):
            score = affinity - np.log(-np.log(rng.random(affinity.shape, dtype=f32)))
        top = np.argpartition(-score, k - 1, axis=1)[:, :k]
        # argpartition leaves the top k unordered; a user who wants fewer than k takes a
        # prefix, which must be their best picks, not whatever the partition put first.
        order = np.argsort(-np.take_along_axis(score, top, axis=1), axis=1)
        top = np.take_along_axis(top, order, axis=1)
        keep = np.arange(k)[None, :] < wanted[:, None]
        picked_user.append(
            np.broadcast_to(np.arange(block.start, block.stop)[:, None], top.shape)[keep]
        )
        picked_product.append(top[keep])
        picked_affinity.append(np.take_along_axis(affinity, top, axis=1)[keep].astype(float))
    if not picked_user:
        empty = np.zeros(0, dtype=np.int64)
        return _Seen(empty, empty, np.zeros(0), per_user)
    return _Seen(
        np.concatenate(picked_user),
        np.concatenate(picked_product),
        np.concatenate(picked_affinity),
        per_user,
    )


def _run_funnel(
    rng: np.random.Generator, seen: _Seen, catalogue: pd.DataFrame, seed: int
) -> _Funnel:
    """Every step after a view is likelier the better the product fits the user's taste."""
    n = len(seen.user)
    affinity = seen.affinity
    carted = rng.random(n) < expit(-3.3 + 0.75 * affinity)
    bought = carted & (rng.random(n) < expit(-1.2 + 0.45 * affinity))
    rated = bought & (rng.random(n) < expit(-1.5 + 0.3 * affinity))
    quality = _product_latent(catalogue, seed, salt=2)[seen.product]
    latent_rating = 3.0 + 0.45 * (affinity - 2.0) + 0.6 * quality + rng.normal(0.0, 0.7, n)
    return _Funnel(
        carted=carted,
        bought=bought,
        rated=rated,
        rating=np.clip(np.round(latent_rating), 1, 5).astype(np.int64),
        extra_views=rng.poisson(REPEAT_VIEWS, n),
    )


def _schedule(
    rng: np.random.Generator, seen: _Seen, funnel: _Funnel, n_users: int, window_seconds: int
) -> _Timeline:
    """Sessions and times. A product's first view, its cart and its purchase share one
    session; views run one after another, the cart follows its view, everything bought in a
    session is checked out together after its last view, and a review comes days later."""
    n = len(seen.user)
    sessions_per_user = np.ceil(seen.per_user / PRODUCTS_SEEN_PER_SESSION).astype(np.int64)
    session_offset = np.concatenate([[0], np.cumsum(sessions_per_user)])
    n_sessions = int(session_offset[-1])
    session_user = np.repeat(np.arange(n_users), sessions_per_user)
    session_number = np.arange(n_sessions) - session_offset[session_user]
    session_start = _session_starts(rng, n_sessions, window_seconds)

    def some_session_of(user: np.ndarray) -> np.ndarray:
        pick = np.floor(rng.random(len(user)) * sessions_per_user[user]).astype(np.int64)
        return session_offset[user] + pick

    pair_session = some_session_of(seen.user)
    # A product's first view is in its pair's session; repeat views in any of the user's.
    view_pair = np.repeat(np.arange(n), 1 + funnel.extra_views)
    first_view = np.zeros(len(view_pair), dtype=bool)
    first_view[np.cumsum(1 + funnel.extra_views) - 1 - funnel.extra_views] = True
    view_session = np.where(
        first_view, pair_session[view_pair], some_session_of(seen.user[view_pair])
    )
    view_spent = np.round(
        np.exp(rng.normal(np.log(25.0) + 0.15 * seen.affinity[view_pair], 0.8))
    ).astype(np.int64)
    step = view_spent + rng.integers(3, 40, len(view_pair))
    # Lay the views of a session end to end, in random order.
    order = np.lexsort((rng.random(len(view_pair)), view_session))
    ends = np.cumsum(step[order])
    first_of_session = np.searchsorted(view_session[order], np.arange(n_sessions))
    before_session = np.concatenate([[0], ends])[first_of_session]
    view_time = np.empty(len(view_pair), dtype=np.int64)
    view_time[order] = session_start[view_session[order]] + ends - step[order]
    view_time[order] -= before_session[view_session[order]]

    first_time = np.empty(n, dtype=np.int64)
    first_time[view_pair[first_view]] = view_time[first_view] + view_spent[first_view]
    cart_time = first_time + rng.integers(5, 60, n)
    session_end = session_start.copy()
    np.maximum.at(session_end, view_session, view_time + view_spent)
    np.maximum.at(session_end, pair_session[funnel.carted], cart_time[funnel.carted])
    checkout_spent = rng.integers(60, 300, n_sessions)
    purchase_time = session_end[pair_session] + checkout_spent[pair_session]
    delivery = np.round(np.exp(rng.normal(np.log(4 * 86400), 0.5, n))).astype(np.int64)
    return _Timeline(
        view_pair=view_pair,
        view_time=view_time,
        view_spent=view_spent,
        view_session=view_session,
        pair_session=pair_session,
        cart_time=cart_time,
        purchase_time=purchase_time,
        checkout_spent=checkout_spent[pair_session],
        rate_time=purchase_time + delivery,
        session_user=session_user,
        session_number=session_number,
    )


def _activity_frames(
    rng: np.random.Generator,
    params: DemoParams,
    base: pd.Timestamp,
    window_seconds: int,
    users: pd.DataFrame,
    catalogue: pd.DataFrame,
    sale_price: np.ndarray,
    seen: _Seen,
    funnel: _Funnel,
    timeline: _Timeline,
    state: ShopState,
) -> dict[str, pd.DataFrame]:
    n = len(seen.user)
    quantity = 1 + (rng.random(n) < 0.12) + (rng.random(n) < 0.03)
    discount = np.where(rng.random(n) < 0.2, rng.choice([0.7, 0.8, 0.9], n), 1.0)
    cart_spent = rng.integers(2, 15, n)
    rate_spent = rng.integers(20, 180, n)
    review_pick = rng.integers(0, 3, n)
    log = _EventLog.of(funnel, timeline, window_seconds, cart_spent, rate_spent, base)
    user_id = users["user_id"].to_numpy(np.int64)[seen.user]  # per pair
    product_id = catalogue["product_id"].to_numpy(np.int64)[seen.product]

    kinds = pa.array(["view", "add_to_cart", "purchase", "rate"])
    is_rate = log.kind == 3
    interactions = pd.DataFrame(
        {
            "id": state.max_interaction_id + np.arange(1, len(log.pair) + 1, dtype=np.int64),
            "user_id": user_id[log.pair],
            "product_id": product_id[log.pair],
            "interaction_type": pd.array(kinds.take(pa.array(log.kind)), dtype="str"),
            # NULL except on rate rows: float, so the gaps are NaN.
            "rating": np.where(is_rate, funnel.rating[log.pair], np.nan),
            "session_id": _session_ids(params.period, user_id[log.pair], log.session, timeline),
            "time_spent_seconds": log.spent.astype(np.int64),
            "created_at": log.created_at,
        }
    )

    review_pair = log.pair[is_rate]
    review_rating = funnel.rating[review_pair]
    reviews = pd.DataFrame(
        {
            "review_id": state.max_review_id + np.arange(1, len(review_pair) + 1, dtype=np.int64),
            "user_id": user_id[review_pair],
            "product_id": product_id[review_pair],
            "rating": review_rating,
            "comment": _review_comments(
                review_rating,
                review_pick[review_pair],
                catalogue["category"].to_numpy(object)[seen.product[review_pair]],
            ),
            "created_at": log.created_at[is_rate],
        }
    )

    is_purchase = log.kind == 2
    purchase_pair = log.pair[is_purchase]
    # One shop order per session with purchases.
    shop_order = pd.factorize(log.session[is_purchase])[0].astype(np.int64)
    order_frame = pd.DataFrame(
        {
            "item_id": state.max_order_item_id
            + np.arange(1, len(purchase_pair) + 1, dtype=np.int64),
            "shop_order_id": state.max_shop_order_id + 1 + shop_order,
            "user_id": user_id[purchase_pair],
            "product_id": product_id[purchase_pair],
            "quantity": quantity[purchase_pair].astype(np.int64),
            "purchase_price": np.round(
                sale_price[seen.product[purchase_pair]] * discount[purchase_pair], 2
            ),
            "created_at": log.created_at[is_purchase],
        }
    )

    # Open carts: added in the last few days and not bought; older ones were abandoned.
    open_cart = (
        (log.kind == 1)
        & ~funnel.bought[log.pair]
        & (log.offset >= window_seconds - CART_WINDOW_DAYS * 86400)
    )
    cart_pair = log.pair[open_cart]
    cart_frame = pd.DataFrame(
        {
            "item_id": state.max_cart_item_id + np.arange(1, len(cart_pair) + 1, dtype=np.int64),
            "user_id": user_id[cart_pair],
            "product_id": product_id[cart_pair],
            "quantity": quantity[cart_pair].astype(np.int64),
            "added_at": log.created_at[open_cart],
        }
    )
    return {
        "product_interactions": interactions,
        "product_reviews": reviews,
        "order_items": order_frame,
        "cart_items": cart_frame,
    }


@dataclass
class _EventLog:
    """Every view, cart, purchase and rating of the period, in time order, by pair index."""

    pair: np.ndarray
    kind: np.ndarray  # 0 view, 1 add_to_cart, 2 purchase, 3 rate
    session: np.ndarray  # session index; a review is a visit of its own, -1 - its pair
    spent: np.ndarray
    offset: np.ndarray  # seconds from the period's first whole second
    created_at: np.ndarray

    @classmethod
    def of(
        cls,
        funnel: _Funnel,
        timeline: _Timeline,
        window_seconds: int,
        cart_spent: np.ndarray,
        rate_spent: np.ndarray,
        base: pd.Timestamp,
    ) -> _EventLog:
        # Reviews not written by the end of the period never are.
        rated = funnel.rated & (timeline.rate_time < window_seconds)
        carted, bought = funnel.carted, funnel.bought
        pair = np.concatenate(
            [
                timeline.view_pair,
                np.flatnonzero(carted),
                np.flatnonzero(bought),
                np.flatnonzero(rated),
            ]
        )
        kind = np.repeat(
            np.arange(4), [len(timeline.view_pair), carted.sum(), bought.sum(), rated.sum()]
        )
        session = np.concatenate(
            [
                timeline.view_session,
                timeline.pair_session[carted],
                timeline.pair_session[bought],
                -1 - np.flatnonzero(rated),
            ]
        )
        spent = np.concatenate(
            [
                timeline.view_spent,
                cart_spent[carted],
                timeline.checkout_spent[bought],
                rate_spent[rated],
            ]
        )
        # A session running past the end of a very short window is cut there.
        offset = np.minimum(
            np.concatenate(
                [
                    timeline.view_time,
                    timeline.cart_time[carted],
                    timeline.purchase_time[bought],
                    timeline.rate_time[rated],
                ]
            ),
            window_seconds - 1,
        )
        # Ids follow time, as they would in a live database.
        order = np.lexsort((kind, pair, offset))
        pair, kind, session, spent, offset = (
            a[order] for a in (pair, kind, session, spent, offset)
        )
        created_at = (base + pd.to_timedelta(offset, unit="s")).astype("datetime64[us]")
        return cls(pair, kind, session, spent, offset, created_at)


def _session_ids(
    period: int, user_id: np.ndarray, session: np.ndarray, timeline: _Timeline
) -> pd.Series:
    """Readable ids unique across periods: p<period>-u<user>-s<n> for the user's n-th
    session, p<period>-u<user>-r<k> for a review visit. Built by Arrow compute, since a Python
    string per row costs too much memory at millions of rows."""
    is_review = session < 0
    number = np.where(is_review, -1 - session, timeline.session_number[np.maximum(session, 0)])
    ids = pc.binary_join_element_wise(
        f"p{period}-u",
        pc.cast(pa.array(user_id), pa.string()),
        pc.if_else(pa.array(is_review), "-r", "-s"),
        pc.cast(pa.array(number), pa.string()),
        "",
    )
    return pd.array(ids, dtype="str")


def _session_starts(rng: np.random.Generator, n: int, window_seconds: int) -> np.ndarray:
    """Session start offsets, uniform over the days and busier in the evening (UTC)."""
    # Leave room for the session itself before the end of the window.
    span = max(60, window_seconds - 2 * 3600)
    hour_weight = 1.0 + 0.8 * np.exp(-0.5 * ((np.arange(24) - 20) / 3.0) ** 2)
    hour_weight[1:7] *= 0.35  # night
    day = rng.integers(0, span // 86400 + 1, n)
    hour = _choose(rng, hour_weight, n)
    second = rng.integers(0, 3600, n)
    return np.mod(day * 86400 + hour * 3600 + second, span).astype(np.int64)


def _review_comments(ratings: np.ndarray, pick: np.ndarray, categories: np.ndarray) -> np.ndarray:
    item_by_category = {c.name: c.item for c in CATEGORIES}
    item = pd.Series(categories).map(item_by_category).to_numpy(object)
    before = np.empty(len(ratings), dtype=object)
    after = np.empty(len(ratings), dtype=object)
    for stars, templates in REVIEW_TEMPLATES.items():
        split = np.array([template.split("{}") for template in templates], dtype=object)
        mask = ratings == stars
        before[mask] = split[pick[mask], 0]
        after[mask] = split[pick[mask], 1]
    return pd.array(before + item + after, dtype="str")


def _taste_mask(names: pd.Series, vocabulary: tuple[str, ...]) -> np.ndarray:
    """Users x vocabulary booleans from comma-separated truth strings."""
    exploded = names.astype(str).reset_index(drop=True).str.split(",").explode()
    codes = pd.Categorical(exploded.str.strip().to_numpy(), categories=vocabulary).codes
    mask = np.zeros((len(names), len(vocabulary)), dtype=bool)
    known = codes >= 0
    mask[exploded.index.to_numpy()[known], codes[known]] = True
    return mask


def _codes(values: pd.Series, names: tuple[str, ...]) -> np.ndarray:
    codes = pd.Categorical(values.astype(str).to_numpy(), categories=names).codes
    return np.maximum(codes, 0).astype(np.int64)


def _product_latent(catalogue: pd.DataFrame, seed: int, salt: int) -> np.ndarray:
    """A standard-normal trait per product (appeal, quality) that stays the same in every
    period, so it is hashed from (seed, product id) rather than drawn from the period's rng."""
    x = catalogue["product_id"].to_numpy(np.int64).astype(np.uint64)
    x = x + np.uint64((seed * 1_000_003 + salt * 7919) % 2**63)
    with np.errstate(over="ignore"):  # splitmix64 relies on wrap-around
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return ndtri(((x >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53)
