"""Recommender quality on demo data, training time at scale, `recommend user` latency.

1. Quality: `mlkit demo seed --orders 200000 --seed 3` (the shop family), then the
   training pipeline: HitRate@10 on the global time cut beside the popularity baseline
   on the same holdout (target: >= 1.5x); models_recommender.py has the full comparison.
2. Scale: 50,000 products and 1,000,000 interactions (synthetic frames, no database):
   the holdout evaluation plus the final fit, as `mlkit train recommender` runs them
   (target <= 60 s), beside a popularity count over the same interactions; peak memory and
   the artifact's size.
3. `recommend user` p99 in-process with the warm 50,000-product model (target <= 20 ms).

Run: python benchmarks/bench_recommender.py
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import fresh_home, latency_ms

from mlkit.toolkit.demo.seed import seed_demo
from mlkit.toolkit.recommender.data import ShopData
from mlkit.toolkit.recommender.evaluate import BlendSettings, evaluate
from mlkit.toolkit.recommender.model import NEIGHBOURS, fit
from mlkit.toolkit.recommender.serve import Recommender
from mlkit.toolkit.recommender.train import train_recommender

WEIGHTS = (0.7, 0.2, 0.1)


def quality() -> None:
    config, engine = fresh_home()
    seed_demo(engine, orders=200_000, seed=3, families=("recommender",))
    result = train_recommender(engine, config, days=90)
    m = result["metrics"]
    ratio = m["hit_rate_at_10"] / m["popular_hit_rate_at_10"]
    print(
        f"demo ({result['products']:,} products, {result['interactions']:,} interactions, "
        f"{m['eval_users']:,} holdout users): HitRate@10 {m['hit_rate_at_10']:.4f} beside "
        f"popular {m['popular_hit_rate_at_10']:.4f}: {ratio:.2f}x (target >= 1.5x) "
        f"{'ok' if ratio >= 1.5 else 'MISSED'}; co-occurrence "
        f"{m['baselines']['cooccurrence']:.4f}; NDCG@10 {m['ndcg_at_10']:.4f}, coverage "
        f"{m['catalog_coverage']:.1%}"
    )


def synthetic(n_products: int, n_interactions: int, seed: int = 0) -> ShopData:
    rng = np.random.default_rng(seed)
    words = np.array(["Classic", "Urban", "Slim", "Vintage", "Sport", "Everyday", "Relaxed"])
    colors = np.array(["Black", "White", "Blue", "Red", "Green", "Grey", "Beige", "Navy"])
    materials = np.array(["Cotton", "Wool", "Denim", "Linen", "Silk", "Leather", "Polyester"])
    categories = np.array([f"Category{i}" for i in range(30)])
    color = colors[rng.integers(0, len(colors), n_products)]
    material = materials[rng.integers(0, len(materials), n_products)]
    category = categories[rng.integers(0, len(categories), n_products)]
    word = words[rng.integers(0, len(words), n_products)]
    products = pd.DataFrame(
        {
            "product_id": np.arange(1, n_products + 1),
            "name": pd.Series(color) + " " + material + " " + word + " " + category,
            "category": category,
            "gender": np.array(["M", "F", "U"])[rng.integers(0, 3, n_products)],
            "color": color,
            "material": material,
            "size": np.array(["S", "M", "L", "XL"])[rng.integers(0, 4, n_products)],
            "price": np.round(np.exp(rng.normal(3.8, 0.6, n_products)), 2),
        }
    )
    n_users = n_interactions // 40
    kinds = rng.choice(
        ["view", "add_to_cart", "purchase", "rate"], n_interactions, p=[0.8, 0.11, 0.06, 0.03]
    )
    interactions = pd.DataFrame(
        {
            "user_id": rng.integers(1, n_users + 1, n_interactions),
            "product_id": (rng.zipf(1.3, n_interactions) % n_products) + 1,
            "interaction_type": kinds,
            "rating": np.where(kinds == "rate", rng.integers(1, 6, n_interactions), np.nan),
            "created_at": pd.Timestamp("2026-01-01")
            + pd.to_timedelta(np.sort(rng.integers(0, 90 * 86_400, n_interactions)), unit="s"),
        }
    )
    reviews = interactions.loc[kinds == "rate", ["product_id", "rating"]]
    return ShopData(products, interactions, reviews, None, None, 90)


def scale() -> None:
    data = synthetic(50_000, 1_000_000)
    started = time.perf_counter()
    data.interactions.groupby("product_id").size().sort_values()
    reference = time.perf_counter() - started
    started = time.perf_counter()
    evaluation = evaluate(data, BlendSettings.default())
    evaluated = time.perf_counter() - started
    model = fit(data.products, data.interactions, data.reviews, weights=WEIGHTS, mix=evaluation.mix)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"training on 50,000 products x 1,000,000 interactions: {seconds:.1f} s (holdout "
        f"evaluation of {len(evaluation.holdout.users):,} users {evaluated:.1f} s, final fit "
        f"{seconds - evaluated:.1f} s) (target <= 60 s) {'ok' if seconds <= 60 else 'SLOW'}; "
        f"reference: a popularity count over the same rows {reference:.2f} s; "
        f"peak memory {peak_mb:,.0f} MB"
    )
    dense_gb = len(model.product_ids) ** 2 * 4 / 1e9
    with tempfile.TemporaryDirectory() as folder:
        model.save(Path(folder) / "model.npz")
        artifact_mb = (Path(folder) / "model.npz").stat().st_size / 1e6
    print(
        f"(a dense products x products float32 matrix would need {dense_gb:.1f} GB; none is "
        f"built: the model keeps {model.neighbours.nnz:,} co-occurrence entries, at most "
        f"{NEIGHBOURS} per product; artifact {artifact_mb:.0f} MB)"
    )
    recommender = Recommender(model, "recommender:bench", None)
    users = np.random.default_rng(1).choice(model.user_ids, 320, replace=False)
    p50, p99, timed = latency_ms(
        lambda user: recommender.for_user(int(user), 10), users[:20], users[20:]
    )
    print(
        f"recommend user, warm, 50,000 products, {timed} users: p50 {p50:.1f} ms, "
        f"p99 {p99:.1f} ms (target p99 <= 20 ms) {'ok' if p99 <= 20 else 'SLOW'}"
    )


if __name__ == "__main__":
    quality()
    scale()
