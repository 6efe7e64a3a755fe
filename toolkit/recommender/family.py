"""The recommender family's side of the contract (`families.py`): its training, the references
a candidate must beat on the holdout, and its validation checks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.engine import Engine

    from ..validation import Check


def train(engine: Engine, config, **options: Any) -> dict:
    """`mlkit train recommender`: `train_recommender` with its options."""
    from .train import train_recommender

    return train_recommender(engine, config, **options)


def baselines(
    train: pd.DataFrame, product_ids: np.ndarray, users: np.ndarray
) -> dict[str, np.ndarray]:
    """Per user, the ten product ids `popularity` and `cooccurrence` recommend, learnt from
    the holdout's training part alone (`evaluate.baselines`)."""
    from .evaluate import baselines as references

    return references(train, product_ids, users)


def validation_checks(mv, artifact: bytes, config) -> list[Check]:
    """It loads (plain arrays, no pickle), its catalogue is consistent, and it recommends
    for the user and the product stored as its example."""
    from ..validation import Check
    from .model import RecommenderModel

    try:
        model = RecommenderModel.load(artifact)
    except Exception as exc:  # any failure to load is a failed check, not a crash
        return [Check("loads", False, f"{type(exc).__name__}: {exc}")]
    checks = [
        Check("loads", True, f"{len(model.product_ids):,} products, {len(model.user_ids):,} users")
    ]
    problem = _catalogue_problem(model)
    checks.append(Check("catalogue", problem is None, problem or "consistent"))
    if problem is None:
        checks.append(_recommends(model, mv.input_example or []))
    return checks


def _catalogue_problem(model) -> str | None:
    n, users = len(model.product_ids), len(model.user_ids)
    if n == 0:
        return "no products"
    if np.any(np.diff(model.product_ids) <= 0) or np.any(np.diff(model.user_ids) <= 0):
        return "product or user ids are not sorted and unique"
    aligned = (model.names, model.categories, model.price_z, model.rating, model.popularity)
    if any(len(a) != n for a in aligned) or model.tfidf.shape[0] != n:
        return "per-product arrays do not match the catalogue"
    if model.history.shape != (users, n) or model.bought.shape != (users, n):
        return "per-user matrices do not match the users and the catalogue"
    if model.neighbours.shape != (n, n) or not np.all(np.isfinite(model.neighbours.data)):
        return "the co-occurring neighbours do not match the catalogue"
    if len(model.mix) != 3 or not np.all(np.isfinite(model.mix)):
        return f"bad blend weights {model.mix}"
    return None


def _recommends(model, example: list[dict]) -> Check:
    """Ten finite scores for the example user (by history) and product (as neighbours)."""
    from ..validation import Check
    from .model import top_n

    picked = []
    for item in example:
        if "user_id" in item and (row := model.user_index(int(item["user_id"]))) is not None:
            start, end = model.history.indptr[row], model.history.indptr[row + 1]
            touched = model.history.indices[start:end]
            scores = model.history_scores(touched, model.history.data[start:end])
            picked.append(("user", item["user_id"], scores, touched))
        elif (
            "product_id" in item and (index := model.product_index(item["product_id"])) is not None
        ):
            picked.append(("product", item["product_id"], model.product_scores(index), [index]))
    if not picked:
        return Check("recommends", False, "no example user or product to recommend for")
    for kind, key, scores, exclude in picked:
        best = top_n(scores, 10, np.asarray(exclude, dtype=np.int64))
        if len(best) == 0 or not np.all(np.isfinite(scores[best])):
            return Check("recommends", False, f"no finite recommendation for {kind} {key}")
    return Check("recommends", True, " and ".join(f"{k} {key}" for k, key, *_ in picked))
