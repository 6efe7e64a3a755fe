"""`mlkit train recommender`: offline evaluation on a time-based holdout, then the model
on the whole window, registered, promoted, and remembered on disk as the last good one.

The holdout is each active user's latest interactions: the model and the popularity baseline,
fitted on the earlier ones only, should find the products the user had not touched before.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from ..datasets import _atomic_write_text
from ..errors import MlkitError, TooLittleData
from ..identity import database_home
from .data import ShopData, load_shop_data
from .model import RecommenderModel, fit, top_n

log = logging.getLogger("mlkit.train")

K = 10
MIN_USER_INTERACTIONS = 5
HOLDOUT_SHARE = 0.2
MAX_EVAL_USERS = 3000
EVAL_BATCH = 256
LAST_GOOD = "LAST_GOOD.json"


def holdout_split(interactions: pd.DataFrame) -> tuple[pd.DataFrame, dict[int, set]]:
    """Earlier interactions, and per evaluated user the new products of their latest fifth."""
    frame = interactions.sort_values(["user_id", "created_at"], kind="stable")
    size = frame.groupby("user_id")["product_id"].transform("size")
    rank = frame.groupby("user_id").cumcount()
    cut = size - np.maximum(1, np.round(size * HOLDOUT_SHARE)).astype(int)
    held = (size >= MIN_USER_INTERACTIONS) & (rank >= cut)
    train, test = frame[~held], frame[held]
    seen = train.groupby("user_id")["product_id"].agg(set)
    targets = {}
    for user, products in test.groupby("user_id")["product_id"]:
        new = set(products) - seen.get(user, set())
        if new:
            targets[int(user)] = new
    return train, targets


def evaluate(data: ShopData, weights, half_life_days: float, seed: int = 0) -> dict:
    train, targets = holdout_split(data.interactions)
    if not targets:
        raise MlkitError(
            "no user has enough interactions for a holdout evaluation",
            hint=f"widen --days (users need >= {MIN_USER_INTERACTIONS} interactions)",
        )
    users = np.array(sorted(targets))
    if len(users) > MAX_EVAL_USERS:
        users = np.sort(np.random.default_rng(seed).choice(users, MAX_EVAL_USERS, replace=False))
    model = fit(
        data.products,
        train,
        data.reviews,
        weights=weights,
        half_life_days=half_life_days,
        now=pd.to_datetime(train["created_at"]).max(),
    )
    rows = np.array([model.user_index(u) for u in users])
    popular_order = np.argsort(-model.popularity, kind="stable")
    hits = {"model": [], "popular": []}
    gains = {"model": [], "popular": []}
    recommended = set()
    discounts = 1.0 / np.log2(np.arange(2, K + 2))
    for first in range(0, len(users), EVAL_BATCH):
        batch = slice(first, first + EVAL_BATCH)
        scores = model.batch_scores(rows[batch])
        for column, (user, row) in enumerate(zip(users[batch], rows[batch], strict=True)):
            touched = model.history[row].indices
            target = np.isin(model.product_ids, list(targets[int(user)]))
            ranked = {
                "model": top_n(scores[:, column], K, touched),
                "popular": _first_untouched(popular_order, touched, K),
            }
            recommended.update(ranked["model"].tolist())
            for name, items in ranked.items():
                relevant = target[items]
                hits[name].append(relevant.any())
                ideal = discounts[: min(K, int(target.sum()))].sum()
                gains[name].append((discounts[: len(items)] * relevant).sum() / ideal)
    return {
        "hit_rate_at_10": float(np.mean(hits["model"])),
        "ndcg_at_10": float(np.mean(gains["model"])),
        "popular_hit_rate_at_10": float(np.mean(hits["popular"])),
        "popular_ndcg_at_10": float(np.mean(gains["popular"])),
        "catalog_coverage": len(recommended) / len(model.product_ids),
        "eval_users": len(users),
    }


def _first_untouched(order: np.ndarray, touched: np.ndarray, k: int) -> np.ndarray:
    if not len(touched):
        return order[:k]
    return order[~np.isin(order, touched)][:k]


def config_weights(config) -> tuple[float, float, float]:
    return tuple(float(config.get(f"recommender.{n}_weight")) for n in ("text", "price", "rating"))


def check_enough_interactions(data: ShopData, minimum: int) -> None:
    """A model from a near-empty window would replace the serving one with noise: refuse."""
    n = len(data.interactions)
    per_user = data.interactions.groupby("user_id").size()
    if data.products.empty:
        why = "and no products"
    elif n < minimum:
        why = f"fewer than recommender.min_interactions ({minimum})"
    elif not (per_user >= MIN_USER_INTERACTIONS).any():
        why = f"and no user with {MIN_USER_INTERACTIONS} of them for the holdout"
    else:
        return
    raise TooLittleData(
        f"{n:,} interactions between {data.window_start:%Y-%m-%d %H:%M} and "
        f"{data.window_end:%Y-%m-%d %H:%M} UTC, {why}: the recommender is left as it is",
        hint="widen --days (it counts back from now; --as-of moves now), "
        "or load interactions (try: mlkit demo seed)",
    )


def train_recommender(
    engine: Engine, config, *, days: float = 90, alias: str | None = "prod", force: bool = False
) -> dict:
    """Evaluate, fit and register the recommender on the interactions of the last `days`; too
    few interactions raise TooLittleData before any run is recorded."""
    from ..registry import register_model
    from ..runs import training_run
    from ..validation import promote_trained

    weights = config_weights(config)
    half_life = float(config.get("recommender.recency_half_life_days"))
    cooldown = int(config.get("training.retry_cooldown_sec"))
    data = load_shop_data(engine, days)
    check_enough_interactions(data, int(config.get("recommender.min_interactions")))
    with training_run(engine, "recommender", cooldown_seconds=cooldown, force=force) as run:
        log.info(
            "[TRAIN] Products: %d, interactions: %d, users: %d (last %g days)",
            len(data.products),
            len(data.interactions),
            data.interactions["user_id"].nunique(),
            days,
        )
        metrics = evaluate(data, weights, half_life)
        log.info(
            "[TRAIN] HitRate@10 %.4f (popular %.4f), NDCG@10 %.4f, coverage %.3f",
            metrics["hit_rate_at_10"],
            metrics["popular_hit_rate_at_10"],
            metrics["ndcg_at_10"],
            metrics["catalog_coverage"],
        )
        model = fit(
            data.products,
            data.interactions,
            data.reviews,
            weights=weights,
            half_life_days=half_life,
        )
        kinds = data.interactions["interaction_type"].value_counts()
        mv = register_model(
            engine,
            config.artifacts_dir,
            name="recommender",
            family="recommender",
            write_artifact=model.save,
            filename="model.npz",
            metrics=metrics,
            params={
                "weights": list(weights),
                "recency_half_life_days": half_life,
                "days": days,
                "window_end": str(data.window_end),
                "products": len(model.product_ids),
                "users": len(model.user_ids),
            },
            features=[
                "name",
                "category",
                "gender",
                "color",
                "material",
                "size",
                "price",
                "rating",
            ],
        )
        run.finish(
            version=mv.version,
            n_samples=len(data.interactions),
            class_distribution={str(k): int(v) for k, v in kinds.items()},
            metrics={k: v for k, v in metrics.items() if isinstance(v, float)},
        )
        if alias:  # inside the run: a version failing its gate makes the run `rejected`
            promote_trained(engine, config, mv, alias, reason=f"trained on {days:g} days")
            if alias == "prod":
                remember_last_good(database_home(config, engine), mv)
    return {
        "model": "recommender",
        "version": mv.version,
        "alias": alias or None,
        "products": len(model.product_ids),
        "users": len(model.user_ids),
        "interactions": len(data.interactions),
        "metrics": metrics,
        "artifact": str(mv.artifact_path),
    }


def remember_last_good(home, mv) -> None:
    """What `recommend` serves from when the database (and so the registry) is down: a
    pointer in this database's own folder (`home`, a toolkit.identity.DatabaseHome)."""
    document = {
        "database_id": home.database_id,
        "version": mv.version,
        "artifact_path": Path(mv.artifact_path).as_posix(),
        "sha256": mv.sha256,
        "created_at": str(mv.created_at),
    }
    _atomic_write_text(last_good_pointer(home), json.dumps(document))


def last_good_pointer(home) -> Path:
    return home.artifacts_dir / "recommender" / LAST_GOOD


def load_model(path: Path) -> RecommenderModel:
    return RecommenderModel.load(Path(path).read_bytes())
