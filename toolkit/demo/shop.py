"""Demo world for the recommender family: a fashion catalogue and users with hidden tastes.

Each user prefers a gender line, two or three categories, two colours, one or two
materials and a price level. What they look at is drawn with probability proportional to
exp(affinity), where affinity counts those attribute matches (plus a little popularity),
and the funnel view -> add_to_cart -> purchase -> rate gets likelier with affinity. So a
content-based model that reads product attributes can beat plain popularity, which is the
point of the demo; the tastes go to `demo_truth_users`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from scipy.special import expit, ndtri

from ..schema import (
    cart_items,
    demo_truth_users,
    order_items,
    product_interactions,
    product_reviews,
    products,
)
from .params import DemoParams

GENDERS = ("M", "F", "U")


@dataclass(frozen=True)
class Category:
    name: str
    noun: str  # what one item is called in a name: "T-Shirt"
    item: str  # how a review calls it: "pair of jeans"
    median_price: float
    gender_share: tuple[float, float, float]  # M, F, U
    materials: dict[str, float]  # material -> share within the category
    sizing: str  # clothing | shoes | one_size
    share: float  # share of the catalogue


CATEGORIES = (
    Category(
        "T-Shirts",
        "T-Shirt",
        "t-shirt",
        22,
        (0.4, 0.4, 0.2),
        {"Cotton": 0.6, "Linen": 0.15, "Polyester": 0.15, "Viscose": 0.1},
        "clothing",
        0.13,
    ),
    Category(
        "Shirts",
        "Shirt",
        "shirt",
        45,
        (0.5, 0.4, 0.1),
        {"Cotton": 0.55, "Linen": 0.25, "Silk": 0.1, "Viscose": 0.1},
        "clothing",
        0.10,
    ),
    Category(
        "Jeans",
        "Jeans",
        "pair of jeans",
        65,
        (0.45, 0.45, 0.1),
        {"Denim": 0.85, "Cotton": 0.15},
        "clothing",
        0.09,
    ),
    Category(
        "Trousers",
        "Trousers",
        "pair of trousers",
        55,
        (0.5, 0.45, 0.05),
        {"Cotton": 0.4, "Wool": 0.25, "Linen": 0.2, "Polyester": 0.15},
        "clothing",
        0.08,
    ),
    Category(
        "Dresses",
        "Dress",
        "dress",
        75,
        (0.0, 1.0, 0.0),
        {"Cotton": 0.3, "Silk": 0.2, "Viscose": 0.3, "Linen": 0.2},
        "clothing",
        0.09,
    ),
    Category(
        "Skirts",
        "Skirt",
        "skirt",
        45,
        (0.0, 1.0, 0.0),
        {"Cotton": 0.3, "Denim": 0.25, "Wool": 0.2, "Viscose": 0.25},
        "clothing",
        0.06,
    ),
    Category(
        "Jackets",
        "Jacket",
        "jacket",
        130,
        (0.45, 0.45, 0.1),
        {"Leather": 0.25, "Denim": 0.2, "Nylon": 0.25, "Wool": 0.2, "Polyester": 0.1},
        "clothing",
        0.08,
    ),
    Category(
        "Sweaters",
        "Sweater",
        "sweater",
        60,
        (0.4, 0.4, 0.2),
        {"Wool": 0.45, "Cashmere": 0.2, "Cotton": 0.35},
        "clothing",
        0.08,
    ),
    Category(
        "Shoes",
        "Shoes",
        "pair of shoes",
        95,
        (0.5, 0.5, 0.0),
        {"Leather": 0.7, "Suede": 0.3},
        "shoes",
        0.08,
    ),
    Category(
        "Sneakers",
        "Sneakers",
        "pair of sneakers",
        85,
        (0.3, 0.3, 0.4),
        {"Canvas": 0.35, "Leather": 0.35, "Mesh": 0.3},
        "shoes",
        0.08,
    ),
    Category(
        "Bags",
        "Bag",
        "bag",
        70,
        (0.0, 0.6, 0.4),
        {"Leather": 0.5, "Canvas": 0.3, "Nylon": 0.2},
        "one_size",
        0.06,
    ),
    Category(
        "Accessories",
        "Accessory",
        "accessory",
        25,
        (0.25, 0.25, 0.5),
        {"Leather": 0.4, "Wool": 0.2, "Cotton": 0.2, "Silk": 0.2},
        "one_size",
        0.07,
    ),
)
CATEGORY_NAMES = tuple(category.name for category in CATEGORIES)

COLORS = (
    "Black",
    "White",
    "Navy",
    "Blue",
    "Grey",
    "Beige",
    "Brown",
    "Green",
    "Red",
    "Pink",
    "Olive",
    "Burgundy",
)
COLOR_SHARE = np.array([0.16, 0.12, 0.11, 0.10, 0.10, 0.08, 0.07, 0.06, 0.06, 0.05, 0.05, 0.04])

# Material -> price multiplier: what a cashmere sweater costs over a cotton one.
MATERIAL_PRICE = {
    "Cotton": 1.0,
    "Linen": 1.1,
    "Denim": 1.0,
    "Wool": 1.25,
    "Cashmere": 2.0,
    "Silk": 1.6,
    "Polyester": 0.85,
    "Viscose": 0.9,
    "Leather": 1.5,
    "Suede": 1.4,
    "Canvas": 0.85,
    "Nylon": 0.95,
    "Mesh": 0.9,
}
MATERIALS = tuple(MATERIAL_PRICE)
# Accessories are named after what they are made of: a leather belt, a wool scarf.
ACCESSORY_NOUNS = {
    "Leather": ("Belt", "Wallet"),
    "Wool": ("Scarf", "Beanie"),
    "Cotton": ("Cap", "Tote"),
    "Silk": ("Scarf", "Tie"),
}
STYLES = (
    "Classic",
    "Slim",
    "Relaxed",
    "Vintage",
    "Essential",
    "Oversized",
    "Tailored",
    "Everyday",
    "Urban",
    "Premium",
    "Lightweight",
    "Heritage",
    "Minimal",
    "Sport",
)
CLOTHING_SIZES = ("S", "M", "L", "XL")
CLOTHING_SIZE_SHARE = np.array([0.2, 0.35, 0.3, 0.15])
SHOE_SIZE_RANGE = {"M": (40, 46), "F": (36, 41), "U": (37, 45)}  # EU sizes, inclusive
AUDIENCE = {"M": "men", "F": "women", "U": "everyone"}
DETAILS = (
    "Machine washable.",
    "Made to last season after season.",
    "Easy to pair with anything.",
    "A wardrobe staple.",
    "Soft to the touch.",
    "Finished with care in small batches.",
    "Comfortable from morning to night.",
    "Responsibly sourced.",
)

# Review comments by rating; "{}" is where the item goes.
REVIEW_TEMPLATES = {
    1: (
        "Disappointed with this {}. Returned it.",
        "The {} fell apart after a week.",
        "Would not buy this {} again.",
    ),
    2: (
        "The {} looks cheaper than in the photos.",
        "Not great: the {} runs small.",
        "Expected more from this {}.",
    ),
    3: (
        "The {} is okay for the price.",
        "Decent {}, nothing special.",
        "Average {}; the colour is slightly off.",
    ),
    4: (
        "Nice {}, fits well.",
        "Good quality {}, would buy again.",
        "Happy with this {}, arrived quickly.",
    ),
    5: (
        "Love this {}! Perfect fit.",
        "Best {} I have owned.",
        "Excellent {}, great quality and colour.",
    ),
}

# Affinity weights: the hidden model every interaction is drawn from.
CATEGORY_WEIGHT = 2.0
COLOR_WEIGHT = 1.2
MATERIAL_WEIGHT = 0.9
PRICE_WEIGHT = 1.0  # per unit of |log(price / the price the user wants)|
POPULARITY_WEIGHT = 0.6  # per sd of a product's latent appeal
# Row: the user's gender preference; column: the product's gender line.
GENDER_AFFINITY = np.array([[0.0, -4.0, -0.3], [-4.0, 0.0, -0.3], [-0.5, -0.5, 0.0]])

INTERACTIONS_PER_ORDER = 0.3
MIN_INTERACTIONS = 5000
ROWS_PER_VIEWED_PRODUCT = 1.7  # views, carts, purchases and rates per distinct product seen
REPEAT_VIEWS = 0.4  # mean extra views of a product a user has looked at
PRODUCTS_SEEN_PER_SESSION = 4.0
CART_WINDOW_DAYS = 3  # carts older than this are abandoned, not kept in cart_items
NEW_PRODUCTS_PER_DAY = 0.001  # catalogue growth on an append, as a share of the catalogue
NEW_PRODUCT_LEAD_DAYS = 7.0  # an append's new products were listed within the week before
SCORE_CHUNK_CELLS = 4_000_000  # users x products scored at once: ~32 MB per float array


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


# ---------------------------------------------------------------- catalogue and users


def _make_products(
    rng: np.random.Generator,
    n: int,
    first_id: int,
    listed_before: pd.Timestamp,
    listed_days_ago: tuple[float, float],
    price_factor: float,
) -> pd.DataFrame:
    category = _choose(rng, np.array([c.share for c in CATEGORIES]), n)
    gender = _choose_rows(rng, np.array([c.gender_share for c in CATEGORIES])[category])
    material = _choose_rows(rng, _material_share()[category])
    color = _choose(rng, COLOR_SHARE, n)
    style = rng.integers(0, len(STYLES), n)
    noun_pick = rng.integers(0, 2, n)
    detail = rng.integers(0, len(DETAILS), n)
    price_noise = rng.normal(0.0, 0.35, n)
    size_pick = rng.random(n)
    days_ago = rng.uniform(*listed_days_ago, n)

    category_names = np.array(CATEGORY_NAMES, dtype=object)[category]
    gender_codes = np.array(GENDERS, dtype=object)[gender]
    material_names = np.array(MATERIALS, dtype=object)[material]
    color_names = np.array(COLORS, dtype=object)[color]
    style_names = np.array(STYLES, dtype=object)[style]
    nouns = np.array([c.noun for c in CATEGORIES], dtype=object)[category]
    for material_name, choices in ACCESSORY_NOUNS.items():
        mask = (category_names == "Accessories") & (material_names == material_name)
        nouns[mask] = np.array(choices, dtype=object)[noun_pick[mask]]

    sizing = np.array([c.sizing for c in CATEGORIES], dtype=object)[category]
    size = np.full(n, "One Size", dtype=object)
    clothing = sizing == "clothing"
    size_index = np.searchsorted(np.cumsum(CLOTHING_SIZE_SHARE), size_pick[clothing], side="right")
    size[clothing] = np.array(CLOTHING_SIZES, dtype=object)[np.minimum(size_index, 3)]
    for code, (low, high) in SHOE_SIZE_RANGE.items():
        mask = (sizing == "shoes") & (gender_codes == code)
        size[mask] = (low + np.floor(size_pick[mask] * (high - low + 1))).astype(int).astype(str)

    median = np.array([c.median_price for c in CATEGORIES])[category]
    material_price = np.array([MATERIAL_PRICE[m] for m in MATERIALS])[material]
    price = median * material_price * np.exp(price_noise) * price_factor
    price = np.maximum(np.round(price) - 0.01, 4.99)  # shop prices end in .99

    color_words = pd.Series(color_names)
    material_words = pd.Series(material_names)
    name = color_words + " " + material_words + " " + style_names + " " + nouns
    description = (
        pd.Series(style_names)
        + " "
        + pd.Series(nouns).str.lower()
        + " for "
        + pd.Series(gender_codes).map(AUDIENCE)
        + " in "
        + color_words.str.lower()
        + " "
        + material_words.str.lower()
        + ". "
        + np.array(DETAILS, dtype=object)[detail]
    )
    created_at = listed_before - pd.to_timedelta(np.round(days_ago * 86400), unit="s")
    return pd.DataFrame(
        {
            "product_id": np.arange(first_id, first_id + n, dtype=np.int64),
            "name": pd.array(name, dtype="str"),
            "category": pd.array(category_names, dtype="str"),
            "gender": pd.array(gender_codes, dtype="str"),
            "color": pd.array(color_names, dtype="str"),
            "material": pd.array(material_names, dtype="str"),
            "size": pd.array(size, dtype="str"),
            "price": price,
            "description": pd.array(description, dtype="str"),
            "created_at": created_at.astype("datetime64[us]"),
        }
    )


def _make_users(rng: np.random.Generator, n: int) -> pd.DataFrame:
    gender = _choose(rng, np.array([0.42, 0.50, 0.08]), n)
    # A user only prefers categories with a line for them or a unisex line (men do not
    # prefer dresses); a unisex-leaning user only those with a unisex line.
    line = np.array([c.gender_share for c in CATEGORIES])  # category x gender
    fits = np.where(gender[:, None] == 2, line[:, 2][None, :], line[:, gender].T + line[:, 2])
    share = np.array([c.share for c in CATEGORIES])
    rows = np.arange(n)[:, None]
    categories = _top_k(rng, np.where(fits > 0, np.log(share)[None, :], -np.inf), 3)
    n_categories = 2 + (rng.random(n) < 0.5)
    category_mask = np.zeros((n, len(CATEGORIES)), dtype=bool)
    category_mask[rows, categories] = np.arange(3)[None, :] < n_categories[:, None]

    colors = _top_k(rng, np.broadcast_to(np.log(COLOR_SHARE), (n, len(COLORS))), 2)
    color_mask = np.zeros((n, len(COLORS)), dtype=bool)
    color_mask[rows, colors] = True

    # Materials come from what the preferred categories are made of, so a taste for them
    # can show in what the user buys.
    with np.errstate(divide="ignore"):
        material_logit = np.log(category_mask.astype(float) @ _material_share())
    materials = _top_k(rng, material_logit, 2)
    n_materials = 1 + (rng.random(n) < 0.5)
    material_mask = np.zeros((n, len(MATERIALS)), dtype=bool)
    material_mask[rows, materials] = np.arange(2)[None, :] < n_materials[:, None]

    return pd.DataFrame(
        {
            "user_id": np.arange(1, n + 1, dtype=np.int64),
            "gender": pd.array(np.array(GENDERS, dtype=object)[gender], dtype="str"),
            "categories": _join_names(category_mask, CATEGORY_NAMES),
            "colors": _join_names(color_mask, COLORS),
            "materials": _join_names(material_mask, MATERIALS),
            "price_level": np.round(np.exp(rng.normal(0.0, 0.35, n)), 3),
            "activity": np.round(np.exp(rng.normal(0.0, 0.9, n)), 4),
        }
    )


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
    # Reviews not written by the end of the period never are.
    rated = funnel.rated & (timeline.rate_time < window_seconds)
    carted, bought = funnel.carted, funnel.bought
    quantity = 1 + (rng.random(n) < 0.12) + (rng.random(n) < 0.03)
    discount = np.where(rng.random(n) < 0.2, rng.choice([0.7, 0.8, 0.9], n), 1.0)
    cart_spent = rng.integers(2, 15, n)
    rate_spent = rng.integers(20, 180, n)
    review_pick = rng.integers(0, 3, n)

    user_ids = users["user_id"].to_numpy(np.int64)
    product_ids = catalogue["product_id"].to_numpy(np.int64)
    kinds = pa.array(["view", "add_to_cart", "purchase", "rate"])
    pair = np.concatenate(
        [timeline.view_pair, np.flatnonzero(carted), np.flatnonzero(bought), np.flatnonzero(rated)]
    )
    kind = np.repeat(
        np.arange(4), [len(timeline.view_pair), carted.sum(), bought.sum(), rated.sum()]
    )
    # Session index of each event; a review is a visit of its own, keyed by its pair.
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
    pair, kind, session, spent, offset = (a[order] for a in (pair, kind, session, spent, offset))
    created_at = (base + pd.to_timedelta(offset, unit="s")).astype("datetime64[us]")
    is_rate = kind == 3
    interactions = pd.DataFrame(
        {
            "id": state.max_interaction_id + np.arange(1, len(pair) + 1, dtype=np.int64),
            "user_id": user_ids[seen.user[pair]],
            "product_id": product_ids[seen.product[pair]],
            "interaction_type": pd.array(kinds.take(pa.array(kind)), dtype="str"),
            # NULL except on rate rows: float, so the gaps are NaN.
            "rating": np.where(is_rate, funnel.rating[pair], np.nan),
            "session_id": _session_ids(params.period, user_ids[seen.user[pair]], session, timeline),
            "time_spent_seconds": spent.astype(np.int64),
            "created_at": created_at,
        }
    )

    review_pair = pair[is_rate]
    review_rating = funnel.rating[review_pair]
    reviews = pd.DataFrame(
        {
            "review_id": state.max_review_id + np.arange(1, len(review_pair) + 1, dtype=np.int64),
            "user_id": user_ids[seen.user[review_pair]],
            "product_id": product_ids[seen.product[review_pair]],
            "rating": review_rating,
            "comment": _review_comments(
                review_rating,
                review_pick[review_pair],
                catalogue["category"].to_numpy(object)[seen.product[review_pair]],
            ),
            "created_at": created_at[is_rate],
        }
    )

    is_purchase = kind == 2
    purchase_pair = pair[is_purchase]
    # One shop order per session with purchases.
    shop_order = pd.factorize(session[is_purchase])[0].astype(np.int64)
    order_frame = pd.DataFrame(
        {
            "item_id": state.max_order_item_id
            + np.arange(1, len(purchase_pair) + 1, dtype=np.int64),
            "shop_order_id": state.max_shop_order_id + 1 + shop_order,
            "user_id": user_ids[seen.user[purchase_pair]],
            "product_id": product_ids[seen.product[purchase_pair]],
            "quantity": quantity[purchase_pair].astype(np.int64),
            "purchase_price": np.round(
                sale_price[seen.product[purchase_pair]] * discount[purchase_pair], 2
            ),
            "created_at": created_at[is_purchase],
        }
    )

    # Open carts: added in the last few days and not bought; older ones were abandoned.
    is_cart = kind == 1
    open_cart = is_cart & ~bought[pair] & (offset >= window_seconds - CART_WINDOW_DAYS * 86400)
    cart_pair = pair[open_cart]
    cart_frame = pd.DataFrame(
        {
            "item_id": state.max_cart_item_id + np.arange(1, len(cart_pair) + 1, dtype=np.int64),
            "user_id": user_ids[seen.user[cart_pair]],
            "product_id": product_ids[seen.product[cart_pair]],
            "quantity": quantity[cart_pair].astype(np.int64),
            "added_at": created_at[open_cart],
        }
    )
    return {
        "product_interactions": interactions,
        "product_reviews": reviews,
        "order_items": order_frame,
        "cart_items": cart_frame,
    }


def _session_ids(
    period: int, user_id: np.ndarray, session: np.ndarray, timeline: _Timeline
) -> pd.Series:
    """Readable ids unique across periods: p<period>-u<user>-s<n> for the user's n-th
    session, p<period>-u<user>-r<k> for a review visit. Built by Arrow compute: a Python
    string per row would cost hundreds of MB at a few million rows."""
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


# ---------------------------------------------------------------- helpers


def _choose(rng: np.random.Generator, weight: np.ndarray, n: int) -> np.ndarray:
    """n indices drawn ∝ weight (inverse CDF)."""
    cumulative = np.cumsum(weight / weight.sum())
    return np.minimum(np.searchsorted(cumulative, rng.random(n), side="right"), len(weight) - 1)


def _choose_rows(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One index per row, drawn ∝ that row's weights (inverse CDF)."""
    cumulative = np.cumsum(weights, axis=1)
    draws = rng.random(len(weights))[:, None] * cumulative[:, -1:]
    return np.minimum((draws >= cumulative).sum(axis=1), weights.shape[1] - 1)


def _top_k(rng: np.random.Generator, logits: np.ndarray, k: int) -> np.ndarray:
    """k distinct indices per row drawn without replacement ∝ exp(logit) (Gumbel-top-k)."""
    score = logits + rng.gumbel(size=logits.shape)
    return np.argsort(-score, axis=1, kind="stable")[:, :k]


def _material_share() -> np.ndarray:
    """Category x material shares."""
    return np.array([[c.materials.get(m, 0.0) for m in MATERIALS] for c in CATEGORIES])


def _join_names(mask: np.ndarray, names: tuple[str, ...]) -> pd.Series:
    """Comma-separated names of the True columns of each row."""
    joined = pd.Series("", index=range(len(mask)), dtype="str")
    for column, name in enumerate(names):  # a dozen names at most
        joined = joined.where(~mask[:, column], joined + name + ",")
    return joined.str.removesuffix(",")


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
