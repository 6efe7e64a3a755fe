"""The recommender beside its references on the demo shop world, for `bench_models.py`.

Per seed: `mlkit demo seed --orders 200000` (the shop only), then the holdout of
`mlkit train recommender` (a global time cut, the blend's mix tuned on an inner cut of the
training part): HitRate@10 of the blend, content alone, popularity and item co-occurrence on
the same users with 90 % bootstrap intervals, and the oracle's: the ten products with the
highest true affinity (the generator's taste model from `demo_truth_users`) among those the
user had not touched. Target: the blend at least 1.15x the better of popularity and
co-occurrence on every seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import sqlalchemy as sa
from _common import fresh_home

from mlkit.toolkit import schema
from mlkit.toolkit.demo.seed import seed_demo
from mlkit.toolkit.gate import resample_indices
from mlkit.toolkit.recommender.data import load_shop_data
from mlkit.toolkit.recommender.evaluate import (
    BlendSettings,
    evaluate,
    hits,
    top_k,
    touched_matrix,
)

ORDERS = 200_000
TARGET = 1.15
SHOWN = ("model", "content", "popularity", "cooccurrence", "oracle")


def interval(found: np.ndarray) -> tuple[float, float]:
    """90 % bootstrap interval of a hit rate over users."""
    means = found[resample_indices(len(found))].mean(axis=1)
    low, high = np.quantile(means, [0.05, 0.95])
    return float(low), float(high)


def true_affinity(engine, seed: int, product_ids: np.ndarray, users: np.ndarray) -> np.ndarray:
    """(products, users): the affinity the demo generator drew each user's products from
    (taste matches, gender line, price against the user's level, the product's appeal)."""
    from mlkit.toolkit.demo import shop_activity as world
    from mlkit.toolkit.demo.shop_catalog import (
        CATEGORIES,
        CATEGORY_NAMES,
        COLORS,
        GENDERS,
        MATERIALS,
    )

    p, t = schema.products, schema.demo_truth_users
    with engine.connect() as conn:
        catalogue = pd.DataFrame(
            conn.execute(sa.select(p).order_by(p.c.product_id)).mappings().all()
        ).set_index("product_id")
        truth = pd.DataFrame(conn.execute(sa.select(t)).mappings().all()).set_index("user_id")
    catalogue = catalogue.loc[product_ids].reset_index()
    truth = truth.loc[users].reset_index()
    category = world._codes(catalogue["category"], CATEGORY_NAMES)
    median = np.array([c.median_price for c in CATEGORIES])[category]
    relative_price = np.log(catalogue["price"].to_numpy(float) / median)
    affinity = (
        world.CATEGORY_WEIGHT * world._taste_mask(truth["categories"], CATEGORY_NAMES)[:, category]
        + world.COLOR_WEIGHT
        * world._taste_mask(truth["colors"], COLORS)[:, world._codes(catalogue["color"], COLORS)]
        + world.MATERIAL_WEIGHT
        * world._taste_mask(truth["materials"], MATERIALS)[
            :, world._codes(catalogue["material"], MATERIALS)
        ]
        + world.GENDER_AFFINITY[world._codes(truth["gender"], GENDERS)][
            :, world._codes(catalogue["gender"], GENDERS)
        ]
        - world.PRICE_WEIGHT
        * np.abs(relative_price[None, :] - np.log(truth["price_level"].to_numpy(float))[:, None])
        + world.POPULARITY_WEIGHT * world._product_latent(catalogue, seed, salt=1)[None, :]
    )
    return affinity.T


def one_seed(seed: int) -> tuple[str, float]:
    _, engine = fresh_home()
    seed_demo(engine, orders=ORDERS, seed=seed, families=("recommender",))
    with engine.connect() as conn:
        end = conn.execute(sa.select(sa.func.max(schema.demo_worlds.c.end_ts))).scalar()
    data = load_shop_data(engine, 90, now=end)
    evaluation = evaluate(data, BlendSettings.default())
    holdout = evaluation.holdout
    ids = np.sort(data.products["product_id"].to_numpy(np.int64))
    exclude = touched_matrix(holdout.train, ids, holdout.users)
    oracle = top_k(true_affinity(engine, seed, ids, holdout.users), exclude)
    found = {**evaluation.hits, "oracle": hits(ids, oracle, holdout.targets)}
    best = max(found["popularity"].mean(), found["cooccurrence"].mean())
    ratio = found["model"].mean() / best
    figures = ", ".join(
        "{} {:.3f} [{:.3f}, {:.3f}]".format(name, found[name].mean(), *interval(found[name]))
        for name in SHOWN
    )
    cut = f"{holdout.cut:%Y-%m-%d %H:%M}"
    line = (
        f"seed {seed}: HitRate@10 over {len(holdout.users)} users (cut {cut}, mix "
        f"{evaluation.mix}): {figures}; blend / best baseline {ratio:.2f}x "
        f"(target >= {TARGET}x) {'ok' if ratio >= TARGET else 'MISSED'}"
    )
    return line, ratio


def measure(seeds: list[int]) -> list[str]:
    lines, ratios = [], []
    for seed in seeds:
        line, ratio = one_seed(seed)
        lines.append(line)
        ratios.append(ratio)
    met = all(r >= TARGET for r in ratios)
    lines.append(
        f"recommender target (>= {TARGET}x the better of popularity and co-occurrence on every "
        f"seed): {'met' if met else 'MISSED'}, lowest {min(ratios):.2f}x"
    )
    return lines


if __name__ == "__main__":
    for text in measure([0, 1, 2]):
        print(text)
