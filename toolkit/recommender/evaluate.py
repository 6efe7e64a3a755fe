"""The recommender's holdout: one global time cut, the honest references on it, the blend's
mix tuned on an inner cut of the training part, and each user's hit indicator for the gate.

Every interaction after the cut is held out, so no training row is later than any held-out
one. The users graded are those active before the cut who touched something new after it;
a hit is one of those new products among their ten recommendations (products they touched
before the cut are never recommended). Baselines see only the training part.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse

from ..config import Settings
from ..errors import MlkitError
from .model import RecommenderModel, fit, interaction_weights

log = logging.getLogger("mlkit.train")

K = 10
HOLDOUT_SHARE = 0.2  # of the window's interactions, the latest ones
MAX_EVAL_USERS = 3000
MAX_TUNE_USERS = 1000
EVAL_BATCH = 128  # users scored at once: their (products, users) arrays stay small
COLLABORATIVE_GRID = (0.0, 0.5, 1.0, 2.0)  # mix weights tried on the inner cut
POPULARITY_GRID = (0.0, 0.5, 1.0)
BASELINES = ("popularity", "cooccurrence")


@dataclass(frozen=True)
class BlendSettings(Settings):
    """What `recommender.*` says about the model: the content part's weights, the blend's
    mix, recency, and whether the mix is tuned on an inner time cut."""

    section = "recommender"

    text_weight: float
    price_weight: float
    rating_weight: float
    content_weight: float
    collaborative_weight: float
    popularity_weight: float
    recency_half_life_days: float
    tune_mix: bool

    @property
    def weights(self) -> tuple[float, float, float]:
        return (self.text_weight, self.price_weight, self.rating_weight)

    @property
    def mix(self) -> tuple[float, float, float]:
        return (self.content_weight, self.collaborative_weight, self.popularity_weight)

    def check(self) -> None:
        values = (*self.weights, *self.mix)
        if not all(np.isfinite(v) and v >= 0 for v in values) or not sum(self.mix) > 0:
            raise MlkitError(
                "recommender weights must be finite and >= 0, and the mix must not be all 0",
                hint="see recommender.*_weight in `mlkit config show`",
            )
        if not self.recency_half_life_days > 0:
            raise MlkitError(
                "recommender.recency_half_life_days must be positive",
                hint="e.g. recency_half_life_days: 30",
            )


@dataclass
class Holdout:
    """A global time cut of a window's interactions."""

    train: pd.DataFrame  # every interaction at or before `cut`
    cut: pd.Timestamp | None  # the latest training moment; None when nothing is held out
    users: np.ndarray  # graded users, sorted
    targets: list[np.ndarray] = field(default_factory=list)  # per user: new products after


def time_split(
    interactions: pd.DataFrame,
    share: float = HOLDOUT_SHARE,
    *,
    max_users: int | None = MAX_EVAL_USERS,
    seed: int = 0,
) -> Holdout:
    """The latest `share` of the interactions held out at one moment; at most `max_users`
    graded users, drawn with `seed` when there are more."""
    times = pd.to_datetime(interactions["created_at"])
    if len(times) < 2:
        return Holdout(interactions, None, np.zeros(0, np.int64))
    ordered = np.sort(times.to_numpy())
    cut = pd.Timestamp(ordered[max(0, int(len(ordered) * (1 - share)) - 1)])
    before = (times <= cut).to_numpy()
    train, later = interactions[before], interactions[~before]
    seen = train[["user_id", "product_id"]].drop_duplicates()
    new = later[["user_id", "product_id"]].drop_duplicates()
    new = new[new["user_id"].isin(seen["user_id"])]
    new = new.merge(seen, how="left", indicator=True)
    new = new[new["_merge"] == "left_only"].sort_values(["user_id", "product_id"])
    users = new["user_id"].drop_duplicates().to_numpy(np.int64)
    if max_users is not None and len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    new = new[new["user_id"].isin(users)]
    targets = [g.to_numpy(np.int64) for _, g in new.groupby("user_id")["product_id"]]
    return Holdout(train, cut, users, targets)


def top_k(scores: np.ndarray, exclude: sparse.spmatrix, k: int = K) -> np.ndarray:
    """(users, k) indices of the best products of each column of `scores` (products, users),
    best first (ties to the lower index), never one `exclude` (users x products) has while k
    others are left. `scores` is overwritten with -inf there.

    Only the blocks of products whose best reaches the k-th best of the blocks' maxima (k
    at least, few more unless scores tie) are sorted, never the whole column."""
    excluded = sparse.coo_matrix(exclude)
    scores[excluded.col, excluded.row] = -np.inf
    n, users = scores.shape
    k = min(k, n)
    if k == 0 or users == 0:
        return np.zeros((users, k), np.int64)
    size = int(np.clip(n // (4 * k), 1, 64))
    whole = n - n % size
    blocks = scores[:whole].reshape(whole // size, size, users)
    maxima = blocks.max(axis=1)
    if whole < n:  # the last, shorter block
        maxima = np.vstack([maxima, scores[whole:].max(axis=0)])
    threshold = np.partition(maxima, len(maxima) - k, axis=0)[len(maxima) - k]
    block, user = np.nonzero(maxima[: whole // size] >= threshold)
    tail = np.arange(whole, n)
    product = np.concatenate(
        [(block[:, None] * size + np.arange(size)).ravel(), np.tile(tail, users)]
    )
    value = np.concatenate([blocks[block, :, user].ravel(), scores[whole:].T.ravel()])
    user = np.concatenate([np.repeat(user, size), np.repeat(np.arange(users), len(tail))])
    kept = value >= threshold[user]
    product, value, user = product[kept], value[kept], user[kept]
    order = np.lexsort((product, -value, user))
    product, user = product[order], user[order]
    rank = np.arange(len(user)) - np.searchsorted(user, np.arange(users))[user]
    return product[rank < k].reshape(users, k).astype(np.int64)


def hits(product_ids: np.ndarray, ranked: np.ndarray, targets: list[np.ndarray]) -> np.ndarray:
    """1.0 for each user with one of their targets among the ranked product indices."""
    return np.array(
        [np.isin(product_ids[r], t).any() for r, t in zip(ranked, targets, strict=True)],
        dtype=float,
    )


def ndcg(product_ids: np.ndarray, ranked: np.ndarray, targets: list[np.ndarray]) -> np.ndarray:
    discounts = 1.0 / np.log2(np.arange(2, K + 2))
    gains = []
    for r, t in zip(ranked, targets, strict=True):
        relevant = np.isin(product_ids[r], t)
        gains.append((discounts[: len(r)] * relevant).sum() / discounts[: min(K, len(t))].sum())
    return np.array(gains)


def _index(product_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of `ids` in the sorted `product_ids`, and which of them are in it."""
    position = np.clip(np.searchsorted(product_ids, ids), 0, max(len(product_ids) - 1, 0))
    known = product_ids[position] == ids if len(product_ids) else np.zeros(len(ids), bool)
    return position, known


def touched_matrix(
    train: pd.DataFrame, product_ids: np.ndarray, users: np.ndarray
) -> sparse.csr_matrix:
    """users x products, 1 where the user touched the product in `train`."""
    inter = train[train["user_id"].isin(users)]
    position, known = _index(product_ids, inter["product_id"].to_numpy(np.int64))
    rows = np.searchsorted(users, inter["user_id"].to_numpy(np.int64))
    matrix = sparse.csr_matrix(
        (np.ones(known.sum(), np.float32), (rows[known], position[known])),
        shape=(len(users), len(product_ids)),
    )
    matrix.data[:] = 1.0
    return matrix


def baselines(
    train: pd.DataFrame, product_ids: np.ndarray, users: np.ndarray, k: int = K
) -> dict[str, np.ndarray]:
    """The references a recommender must beat, fitted on `train` alone: per user, the k
    product ids of the most popular products (distinct users over the training part) and
    of plain item co-occurrence (users who touched one of theirs touched it too; ties by
    popularity), never a product the user touched."""
    everyone = np.unique(train["user_id"].to_numpy(np.int64))
    touched_all = touched_matrix(train, product_ids, everyone)
    touched_all_t = touched_all.T.tocsr()
    popularity = np.asarray(touched_all.sum(axis=0)).ravel()
    tie_break = popularity / (popularity.max(initial=0) + 1.0)
    ranked = {name: [] for name in BASELINES}
    for first in range(0, len(users), EVAL_BATCH):
        batch = users[first : first + EVAL_BATCH]
        mine = touched_matrix(train, product_ids, batch)
        # users x batch products shared, dense (everyone shares a popular product), then one
        # sparse-times-dense product: (products, batch) co-occurrence counts.
        shared = np.ascontiguousarray((touched_all @ mine.T).toarray())
        together = touched_all_t @ shared
        column = np.repeat(popularity[:, None], len(batch), axis=1)
        ranked["popularity"].append(top_k(column, mine, k))
        ranked["cooccurrence"].append(top_k(together + tie_break[:, None], mine, k))
    return {
        name: product_ids[np.concatenate(parts)] if parts else np.zeros((0, k), np.int64)
        for name, parts in ranked.items()
    }


@dataclass
class Evaluation:
    """Each graded user's hit indicator per model, in the order of `holdout.users`."""

    holdout: Holdout
    hits: dict[str, np.ndarray]  # model, content, popularity, cooccurrence
    ndcg: float
    coverage: float
    mix: tuple[float, float, float]
    tuning: dict


def fit_on(products, interactions, reviews, settings, mix) -> RecommenderModel:
    """The model of `interactions` (reviews written by their last moment)."""
    end = pd.to_datetime(interactions["created_at"]).max()
    if "created_at" in reviews:
        reviews = reviews[pd.to_datetime(reviews["created_at"]) <= end]
    return fit(
        products,
        interactions,
        reviews,
        weights=settings.weights,
        mix=mix,
        half_life_days=settings.recency_half_life_days,
        now=end,
    )


def _scored(model: RecommenderModel, holdout: Holdout, users: np.ndarray):
    """(parts, exclude) per batch of `users`, in the model's product order."""
    for first in range(0, len(users), EVAL_BATCH):
        batch = users[first : first + EVAL_BATCH]
        rows = np.searchsorted(model.user_ids, batch)
        parts = model.parts(model.history[rows], every=True)
        yield parts, touched_matrix(holdout.train, model.product_ids, batch)


def tune_mix(data, settings) -> tuple[tuple[float, float, float], dict]:
    """The mix with the best HitRate@10 on an inner time cut of the training part (the
    configured one unless another is strictly better)."""
    inner = time_split(data.interactions, max_users=MAX_TUNE_USERS)
    configured = settings.mix
    if not len(inner.users):
        return configured, {"tuned": False, "why": "no user to grade on the inner cut"}
    model = fit_on(data.products, inner.train, data.reviews, settings, configured)
    grid = [configured] + [
        (configured[0], c, p)
        for c in COLLABORATIVE_GRID
        for p in POPULARITY_GRID
        if (configured[0], c, p) != configured
    ]
    ranked = {mix: [] for mix in grid}
    for parts, exclude in _scored(model, inner, inner.users):
        for mix in grid:
            ranked[mix].append(top_k(model.mixed(parts, mix), exclude))
    scores = {
        mix: hits(model.product_ids, np.concatenate(r), inner.targets).mean()
        for mix, r in ranked.items()
    }
    best = max(grid, key=lambda mix: (scores[mix], mix == configured))
    return best, {
        "tuned": True,
        "inner_cut": str(inner.cut),
        "inner_users": len(inner.users),
        "inner_hit_rate_at_10": round(float(scores[best]), 4),
        "configured_inner_hit_rate_at_10": round(float(scores[configured]), 4),
    }


def evaluate(data, settings, holdout: Holdout | None = None) -> Evaluation:
    """The blend (its mix tuned inside the training part) and its references on `holdout`
    (the window's global time cut by default)."""
    holdout = time_split(data.interactions) if holdout is None else holdout
    train_data = _restricted(data, holdout.train)
    if settings.tune_mix:
        mix, tuning = tune_mix(train_data, settings)
    else:
        mix, tuning = settings.mix, {"tuned": False, "why": "recommender.tune_mix is off"}
    model = fit_on(data.products, holdout.train, data.reviews, settings, mix)
    blends = {"model": mix, "content": (1.0, 0.0, 0.0)}
    ranked = {name: [] for name in blends}
    for parts, exclude in _scored(model, holdout, holdout.users):
        for name, weights in blends.items():
            ranked[name].append(top_k(model.mixed(parts, weights), exclude))
    ranked = {name: np.concatenate(r) for name, r in ranked.items()}
    ids = model.product_ids
    found = {name: hits(ids, r, holdout.targets) for name, r in ranked.items()}
    for name, picks in baselines(holdout.train, ids, holdout.users).items():
        found[name] = hits(ids, np.searchsorted(ids, picks), holdout.targets)
    return Evaluation(
        holdout,
        found,
        float(ndcg(ids, ranked["model"], holdout.targets).mean()),
        len(np.unique(ranked["model"])) / max(len(ids), 1),
        tuple(float(w) for w in mix),
        tuning,
    )


def _restricted(data, interactions: pd.DataFrame):
    """`data` with only `interactions` (`fit_on` drops the reviews written after them)."""
    import dataclasses

    return dataclasses.replace(data, interactions=interactions)


def prod_hits(prod: RecommenderModel, params: dict, data, holdout: Holdout, settings):
    """The serving version's hit indicators on `holdout`, and how they were obtained.

    A version trained up to the cut or before is scored as it serves: its own history of each
    user plus their training-part interactions since it was trained. One whose window reaches
    past the cut has seen held-out interactions, so its recipe (content weights, mix,
    half-life) is refitted on the training part instead."""
    trained_until = pd.Timestamp(prod.window_end) if prod.window_end else None
    if trained_until is not None and trained_until.tz is not None:
        trained_until = trained_until.tz_convert(None)
    users = holdout.users
    if trained_until is None or trained_until > holdout.cut:
        recipe = _recipe(prod, params, settings)
        model = fit_on(data.products, holdout.train, data.reviews, recipe, recipe.mix)
        ranked = [
            top_k(model.mixed(parts), exclude) for parts, exclude in _scored(model, holdout, users)
        ]
        how = "its weights refitted on the training part (its window reaches past the cut)"
        ids = model.product_ids
    else:
        ranked, ids = [], prod.product_ids
        newer = holdout.train[pd.to_datetime(holdout.train["created_at"]) > trained_until]
        for first in range(0, len(users), EVAL_BATCH):
            batch = users[first : first + EVAL_BATCH]
            histories = _served_histories(prod, newer, batch, holdout.cut, settings)
            exclude = touched_matrix(holdout.train, ids, batch) + (histories > 0)
            ranked.append(top_k(prod.mixed(prod.parts(histories)), exclude))
        how = "as served: its history plus the training part's newer interactions"
    ranked = np.concatenate(ranked) if ranked else np.zeros((0, K), np.int64)
    return hits(ids, ranked, holdout.targets), how


def _served_histories(prod, newer, users, now, settings) -> sparse.csr_matrix:
    """users x prod's products: prod's stored rows plus `newer` interactions, weighted."""
    rows = np.searchsorted(prod.user_ids, users)
    rows = np.clip(rows, 0, max(len(prod.user_ids) - 1, 0))
    known = prod.user_ids[rows] == users if len(prod.user_ids) else np.zeros(len(users), bool)
    shape = (len(users), len(prod.product_ids))
    stored = sparse.csr_matrix(shape)
    if known.any():
        stored = sparse.csr_matrix(
            sparse.diags(known.astype(float)) @ prod.history[rows], shape=shape
        )
    inter = newer[newer["user_id"].isin(users)]
    position, ok = _index(prod.product_ids, inter["product_id"].to_numpy(np.int64))
    weight = interaction_weights(inter, now, settings.recency_half_life_days)
    user_rows = np.searchsorted(users, inter["user_id"].to_numpy(np.int64))
    extra = sparse.csr_matrix((weight[ok], (user_rows[ok], position[ok])), shape=shape)
    return (stored + extra).tocsr()


def _recipe(prod: RecommenderModel, params: dict, settings: BlendSettings) -> BlendSettings:
    """`settings` with the content weights, mix and half-life `prod` was trained with."""
    import dataclasses

    (text, price, rating), (content, collaborative, popularity) = prod.weights, prod.mix
    half_life = params.get("recency_half_life_days", settings.recency_half_life_days)
    return dataclasses.replace(
        settings,
        text_weight=float(text),
        price_weight=float(price),
        rating_weight=float(rating),
        content_weight=float(content),
        collaborative_weight=float(collaborative),
        popularity_weight=float(popularity),
        recency_half_life_days=float(half_life),
    )
