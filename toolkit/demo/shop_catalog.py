"""The e-shop's catalogue and users: categories, colours and materials, the products made
from them and the users' hidden tastes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

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


# Per category: its name, what one item is called in a product name and in a review, its
# median price, the share of its men's, women's and unisex lines, its sizing and its share
# of the catalogue.
_CATEGORY_TABLE = """
T-Shirts    | T-Shirt   | t-shirt          | 22  | 0.40 0.40 0.20 | clothing | 0.13
Shirts      | Shirt     | shirt            | 45  | 0.50 0.40 0.10 | clothing | 0.10
Jeans       | Jeans     | pair of jeans    | 65  | 0.45 0.45 0.10 | clothing | 0.09
Trousers    | Trousers  | pair of trousers | 55  | 0.50 0.45 0.05 | clothing | 0.08
Dresses     | Dress     | dress            | 75  | 0.00 1.00 0.00 | clothing | 0.09
Skirts      | Skirt     | skirt            | 45  | 0.00 1.00 0.00 | clothing | 0.06
Jackets     | Jacket    | jacket           | 130 | 0.45 0.45 0.10 | clothing | 0.08
Sweaters    | Sweater   | sweater          | 60  | 0.40 0.40 0.20 | clothing | 0.08
Shoes       | Shoes     | pair of shoes    | 95  | 0.50 0.50 0.00 | shoes    | 0.08
Sneakers    | Sneakers  | pair of sneakers | 85  | 0.30 0.30 0.40 | shoes    | 0.08
Bags        | Bag       | bag              | 70  | 0.00 0.60 0.40 | one_size | 0.06
Accessories | Accessory | accessory        | 25  | 0.25 0.25 0.50 | one_size | 0.07
"""
# Material -> share within the category.
_CATEGORY_MATERIALS = {
    "T-Shirts": {"Cotton": 0.6, "Linen": 0.15, "Polyester": 0.15, "Viscose": 0.1},
    "Shirts": {"Cotton": 0.55, "Linen": 0.25, "Silk": 0.1, "Viscose": 0.1},
    "Jeans": {"Denim": 0.85, "Cotton": 0.15},
    "Trousers": {"Cotton": 0.4, "Wool": 0.25, "Linen": 0.2, "Polyester": 0.15},
    "Dresses": {"Cotton": 0.3, "Silk": 0.2, "Viscose": 0.3, "Linen": 0.2},
    "Skirts": {"Cotton": 0.3, "Denim": 0.25, "Wool": 0.2, "Viscose": 0.25},
    "Jackets": {"Leather": 0.25, "Denim": 0.2, "Nylon": 0.25, "Wool": 0.2, "Polyester": 0.1},
    "Sweaters": {"Wool": 0.45, "Cashmere": 0.2, "Cotton": 0.35},
    "Shoes": {"Leather": 0.7, "Suede": 0.3},
    "Sneakers": {"Canvas": 0.35, "Leather": 0.35, "Mesh": 0.3},
    "Bags": {"Leather": 0.5, "Canvas": 0.3, "Nylon": 0.2},
    "Accessories": {"Leather": 0.4, "Wool": 0.2, "Cotton": 0.2, "Silk": 0.2},
}
CATEGORIES = tuple(
    Category(
        name,
        noun,
        item,
        float(price),
        tuple(float(x) for x in genders.split()),
        _CATEGORY_MATERIALS[name],
        sizing,
        float(share),
    )
    for name, noun, item, price, genders, sizing, share in (
        [cell.strip() for cell in line.split("|")] for line in _CATEGORY_TABLE.strip().splitlines()
    )
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
