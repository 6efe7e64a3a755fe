"""The recommender: a content model blended with item co-occurrence and popularity.

content(user or product, candidate) = text_weight x cosine of TF-IDF vectors
                                    + price_weight x exp(-|z(log price) difference|)
                                    + rating_weight x (shrunk average rating / 5)
collaborative(user, candidate)      = co-occurrence: over the products of the user's history,
                                      how many users touched both it and the candidate, when
                                      the candidate is among its NEIGHBOURS most co-occurring
popularity(candidate)               = log(1 + type- and recency-weighted interactions)
score = mix . (each part standardised over the catalogue for that user)

A user's content profile is the L2-normalised sum of the vectors of the products they touched,
weighted by what they did and how recently, so its dot product with a product is a cosine.
Each product's neighbours are found at fitting time, in chunks of products through the users x
products history (never a dense products x products matrix), and kept in the model, so scoring
a user is one small sparse product. The artifact is one `.npz` of plain arrays, loaded without
pickle. Artifacts saved before the blend load with mix (1, 0, 0): content alone; those saved
before the neighbours were kept have them found again from their history when loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import cached_property
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse

if TYPE_CHECKING:
    import pandas as pd

TYPE_WEIGHTS = {"purchase": 1.0, "add_to_cart": 0.6, "rate": 0.4, "view": 0.15}
TEXT_COLUMNS = ("category", "gender", "color", "material", "size")
RATING_PRIOR_COUNT = 5.0  # reviews' worth of the catalogue mean mixed into each product
_SPARSE = ("tfidf", "bought", "history", "neighbours")
CONTENT_ONLY = (1.0, 0.0, 0.0)  # the mix of artifacts saved before the blend
NEIGHBOURS = 100  # co-occurring products kept per product (itself included)
NEIGHBOUR_CHUNK = 8_000_000  # co-occurrence entries computed at once while finding them


@dataclass
class RecommenderModel:
    product_ids: np.ndarray  # sorted int64
    names: np.ndarray
    categories: np.ndarray
    tfidf: sparse.csr_matrix  # products x terms, rows L2-normalised
    price_z: np.ndarray
    rating: np.ndarray  # shrunk average rating / 5, in [0, 1]
    popularity: np.ndarray  # type- and recency-weighted interactions per product
    user_ids: np.ndarray  # sorted int64
    bought: sparse.csr_matrix  # users x products, 1 where purchased
    history: sparse.csr_matrix  # users x products, interaction weights
    weights: np.ndarray  # text, price, rating
    terms: np.ndarray  # the TF-IDF vocabulary by column
    window_end: str  # newest interaction the model saw (ISO), "" when none
    mix: np.ndarray = field(default_factory=lambda: np.array(CONTENT_ONLY))  # see the top
    neighbours: sparse.csr_matrix | None = None  # products x products co-occurrence, top rows

    def __post_init__(self):
        if self.neighbours is None:  # an artifact saved before they were kept
            self.neighbours = top_neighbours(self.history)

    # ------------------------------------------------------------ lookups

    def shared_attributes(self, a: int, b: int) -> list[str]:
        """Attribute names (category, color, ...) two products have in common."""
        common = np.intersect1d(self.tfidf[a].indices, self.tfidf[b].indices)
        return [str(t).split("=")[0] for t in self.terms[common] if "=" in str(t)]

    def product_index(self, product_id: int) -> int | None:
        i = int(np.searchsorted(self.product_ids, product_id))
        return i if i < len(self.product_ids) and self.product_ids[i] == product_id else None

    def user_index(self, user_id: int) -> int | None:
        i = int(np.searchsorted(self.user_ids, user_id))
        return i if i < len(self.user_ids) and self.user_ids[i] == user_id else None

    # ------------------------------------------------------------ scoring

    def content(self, text: np.ndarray, target_z: np.ndarray) -> np.ndarray:
        """Content scores of every product (float32), for one (text (n,), z scalar) or a
        batch ((n, m), (m,))."""
        text_w, price_w, rating_w = self.weights
        z, rating = self.price_z.astype(np.float32), self.rating.astype(np.float32)
        if text.ndim == 2:
            z, rating = z[:, None], rating[:, None]
        score = np.subtract(z, np.asarray(target_z, dtype=np.float32))
        np.abs(score, out=score)
        np.negative(score, out=score)
        np.exp(score, out=score)
        score *= np.float32(price_w)
        score += np.float32(text_w) * np.asarray(text, dtype=np.float32)
        score += np.float32(rating_w) * rating
        return score

    def parts(self, histories: sparse.csr_matrix, *, every: bool = False) -> dict[str, np.ndarray]:
        """The blend's parts, each standardised over the products: content and collaborative
        (products, users), popularity (products,), for users given as a users x products
        matrix of interaction weights (a stored history row, or one folded in at serving);
        co-occurrence only when the mix uses it, unless `every`."""
        histories = sparse.csr_matrix(histories, dtype=np.float64)
        totals = np.asarray(histories.sum(axis=1)).ravel()
        profiles = (histories @ self.tfidf).toarray()
        norms = np.linalg.norm(profiles, axis=1, keepdims=True)
        profiles = np.divide(profiles, norms, out=np.zeros_like(profiles), where=norms > 0)
        profiles = profiles.astype(np.float32)
        target_z = np.divide(
            histories @ self.price_z, totals, out=np.zeros(len(totals)), where=totals > 0
        )
        parts = {"content": standardised(self.content(self.tfidf @ profiles.T, target_z))}
        if every or self.mix[1]:
            parts["collaborative"] = standardised(self.cooccurrence(histories))
        return parts | {"popularity": self.popular_part}

    def cooccurrence(self, histories: sparse.csr_matrix) -> np.ndarray:
        """(products, users): for each product, how many users touched it together with each
        product of a history (the rows of `histories`) that keeps it among its neighbours."""
        return (_pattern(histories) @ self.neighbours).T.toarray()

    @cached_property
    def popular_part(self) -> np.ndarray:
        """The popularity part of the blend, (products,), the same for every user."""
        return standardised(np.log1p(np.clip(self.popularity, 0, None)))

    def mixed(self, parts: dict[str, np.ndarray], mix=None) -> np.ndarray:
        """The blend of standardised `parts` (see `parts`) by `mix` (the model's unless
        given): a weighted sum, the parts being on one scale."""
        content_w, collaborative_w, popularity_w = (
            np.float32(w) for w in (self.mix if mix is None else mix)
        )
        score = content_w * parts["content"]
        if collaborative_w:
            score += collaborative_w * parts["collaborative"]
        if popularity_w:
            popular = parts["popularity"]
            score += popularity_w * (popular if score.ndim == 1 else popular[:, None])
        return score

    def history_scores(self, touched: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """Scores of every product for one history given as (product index, weight) pairs."""
        row = sparse.csr_matrix(
            (weight, (np.zeros(len(touched), np.int64), touched)), shape=(1, len(self.product_ids))
        )
        parts = self.parts(row)
        return self.mixed({k: v if k == "popularity" else v[:, 0] for k, v in parts.items()})

    def product_scores(self, index: int) -> np.ndarray:
        """Scores of every product as neighbours of product `index`: its own vector as the
        content profile, the users who touched it for co-occurrence."""
        text = (self.tfidf @ self.tfidf[index].T).toarray().ravel()
        parts = {
            "content": standardised(self.content(text, self.price_z[index])),
            "popularity": self.popular_part,
        }
        if self.mix[1]:
            parts["collaborative"] = standardised(self.neighbours[index].toarray().ravel())
        return self.mixed(parts)

    def batch_scores(self, users: np.ndarray) -> np.ndarray:
        """(products, len(users)) scores for a batch of user indices."""
        return self.mixed(self.parts(self.history[users]))

    # ------------------------------------------------------------ persistence

    def save(self, path: Path) -> None:
        arrays = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SPARSE:
                m = value.tocsr()
                arrays |= {
                    f"{f.name}.data": m.data,
                    f"{f.name}.indices": m.indices,
                    f"{f.name}.indptr": m.indptr,
                    f"{f.name}.shape": np.array(m.shape),
                }
            else:
                arrays[f.name] = np.asarray(value)
        with open(path, "wb") as handle:
            np.savez_compressed(handle, **arrays)

    @classmethod
    def load(cls, artifact: bytes) -> RecommenderModel:
        """The model of an artifact's verified bytes (plain arrays, allow_pickle=False)."""
        import io

        with np.load(io.BytesIO(artifact), allow_pickle=False) as data:
            values = {}
            for f in fields(cls):
                if f.name in _SPARSE and f"{f.name}.data" in data.files:
                    values[f.name] = sparse.csr_matrix(
                        (
                            data[f"{f.name}.data"],
                            data[f"{f.name}.indices"],
                            data[f"{f.name}.indptr"],
                        ),
                        shape=tuple(data[f"{f.name}.shape"]),
                    )
                elif f.name in data.files:
                    value = data[f.name]
                    values[f.name] = value.item() if value.ndim == 0 else value
        return cls(**values)


def standardised(scores: np.ndarray) -> np.ndarray:
    """Scores over the products (axis 0) as float32 z-scores; a constant column becomes
    zeros."""
    scores = np.asarray(scores)
    centred = scores - scores.mean(axis=0, dtype=np.float64).astype(np.float32)
    centred = centred.astype(np.float32, copy=False)
    spread = np.sqrt(np.einsum("i...,i...->...", centred, centred, dtype=np.float64) / len(scores))
    centred /= np.where(spread > 0, spread, np.inf).astype(np.float32)
    return centred


def top_neighbours(history: sparse.csr_matrix, k: int = NEIGHBOURS) -> sparse.csr_matrix:
    """products x products: in each product's row, the k products most often touched by the
    same users (itself among them), with those counts of users; ties go to the lower index.
    Computed in chunks of products sized by the entries they produce."""
    basis = _pattern(history)
    basis_t = basis.T.tocsr()
    # The entries a product's row of co-occurrence costs before merging: its users' histories.
    cost = basis_t @ np.diff(basis.indptr).astype(np.float64)
    chunk = (np.cumsum(cost) - cost) // NEIGHBOUR_CHUNK
    bounds = np.r_[0, np.flatnonzero(np.diff(chunk)) + 1, basis.shape[1]]
    rows = [
        _row_top(basis_t[start:end] @ basis, k) for start, end in pairwise(bounds) if end > start
    ]
    if not rows:
        return sparse.csr_matrix((basis.shape[1], basis.shape[1]), dtype=np.float32)
    return sparse.vstack(rows, format="csr")


def _row_top(matrix: sparse.csr_matrix, k: int) -> sparse.csr_matrix:
    """`matrix` with only the k largest entries of each row (ties to the lower column)."""
    matrix = matrix.tocsr()
    matrix.sort_indices()
    lengths = np.diff(matrix.indptr)
    row = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), lengths)
    order = np.lexsort((-matrix.data, row))  # by row, then largest first; stable: by column
    rank = np.arange(len(order)) - matrix.indptr[row]
    keep = order[rank < k]
    indptr = np.r_[0, np.cumsum(np.minimum(lengths, k))]
    return sparse.csr_matrix(
        (matrix.data[keep].astype(np.float32), matrix.indices[keep], indptr), shape=matrix.shape
    )


def _pattern(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    """1 where `matrix` has a positive entry: who touched what, however often."""
    touched = sparse.csr_matrix(matrix, dtype=np.float32, copy=True)
    touched.data = (touched.data > 0).astype(np.float32)
    touched.eliminate_zeros()
    return touched


def product_documents(products: pd.DataFrame) -> list[str]:
    """Name words plus attribute tokens (`category=jeans`), so "Blue" in a name and the
    colour attribute both count, and attributes never collide with name words."""
    docs = products["name"].fillna("").astype(str).str.lower()
    for column in TEXT_COLUMNS:
        value = products[column].fillna("").astype(str).str.lower().str.replace(" ", "_")
        docs = docs + np.where(value != "", " " + column + "=" + value, "")
    return docs.tolist()


def interaction_weights(interactions: pd.DataFrame, now: pd.Timestamp, half_life_days: float):
    """`decayed_weights` of a frame of interactions, their ages counted from `now`."""
    import pandas as pd

    kind = interactions["interaction_type"].astype(str)
    age_days = (now - pd.to_datetime(interactions["created_at"])).dt.total_seconds() / 86_400
    return decayed_weights(
        np.array(kind.map(TYPE_WEIGHTS).fillna(0.0), dtype=float),
        (kind == "rate").to_numpy(),
        interactions["rating"].to_numpy(dtype=float, na_value=np.nan),
        age_days.to_numpy(float),
        half_life_days,
    )


def decayed_weights(
    type_weight: np.ndarray,
    rated: np.ndarray,
    rating: np.ndarray,
    age_days: np.ndarray,
    half_life_days: float,
) -> np.ndarray:
    """Each interaction's weight: its type's (TYPE_WEIGHTS), times rating / 5 for a rating
    (3 when missing), halved every `half_life_days` of age."""
    weight = np.array(type_weight, dtype=float)
    weight[rated] *= np.nan_to_num(rating[rated], nan=3.0) / 5.0
    return weight * 0.5 ** (np.clip(age_days, 0, None) / half_life_days)


def fit(
    products: pd.DataFrame,
    interactions: pd.DataFrame,
    reviews: pd.DataFrame,
    *,
    weights: tuple[float, float, float] = (0.7, 0.2, 0.1),
    mix: tuple[float, float, float] = CONTENT_ONLY,
    half_life_days: float = 30.0,
    now: pd.Timestamp | None = None,
) -> RecommenderModel:
    """products: product_id, name, category, gender, color, material, size, price.
    interactions: user_id, product_id, interaction_type, rating, created_at.
    reviews: product_id, rating.
    weights: text, price, rating inside the content part; mix: content, collaborative,
    popularity in the blend."""
    import pandas as pd
    from sklearn.feature_extraction.text import TfidfVectorizer

    products = products.sort_values("product_id", ignore_index=True)
    product_ids = products["product_id"].to_numpy(np.int64)
    tfidf = TfidfVectorizer(token_pattern=r"[^\s]+", sublinear_tf=True, dtype=np.float32)
    matrix = tfidf.fit_transform(product_documents(products)).tocsr()
    log_price = np.log(np.clip(products["price"].to_numpy(float), 0.01, None))
    price_z = (log_price - log_price.mean()) / (log_price.std() or 1.0)
    rating = shrunk_rating(product_ids, reviews)

    position = np.searchsorted(product_ids, interactions["product_id"].to_numpy(np.int64))
    position = np.clip(position, 0, len(product_ids) - 1)
    known = product_ids[position] == interactions["product_id"].to_numpy(np.int64)
    inter = interactions[known]
    position = position[known]
    if now is None:
        now = pd.to_datetime(inter["created_at"]).max() if len(inter) else pd.Timestamp.now()
    user_ids, user_rows = np.unique(inter["user_id"].to_numpy(np.int64), return_inverse=True)
    w = interaction_weights(inter, now, half_life_days)
    shape = (len(user_ids), len(product_ids))
    history = sparse.csr_matrix((w, (user_rows, position)), shape=shape, dtype=np.float64)
    history.sum_duplicates()
    purchased = (inter["interaction_type"] == "purchase").to_numpy()
    bought = sparse.csr_matrix(
        (np.ones(purchased.sum(), np.float32), (user_rows[purchased], position[purchased])),
        shape=shape,
    )
    bought.sum_duplicates()
    bought.data[:] = 1.0
    return RecommenderModel(
        product_ids=product_ids,
        names=products["name"].fillna("").astype(str).to_numpy(dtype=str),
        categories=products["category"].fillna("").astype(str).to_numpy(dtype=str),
        tfidf=matrix,
        price_z=price_z,
        rating=rating,
        popularity=np.asarray(history.sum(axis=0)).ravel(),
        user_ids=user_ids,
        bought=bought.tocsr(),
        history=history,
        weights=np.asarray(weights, dtype=float),
        terms=tfidf.get_feature_names_out().astype(str),
        window_end=pd.Timestamp(now).isoformat() if len(inter) else "",
        mix=np.asarray(mix, dtype=float),
        neighbours=top_neighbours(history),
    )


def shrunk_rating(product_ids: np.ndarray, reviews: pd.DataFrame) -> np.ndarray:
    """Average review rating / 5, pulled towards the catalogue mean for few reviews."""
    if reviews.empty:
        return np.full(len(product_ids), 0.6)
    stats = reviews.groupby("product_id")["rating"].agg(["sum", "count"])
    stats = stats.reindex(product_ids, fill_value=0)
    prior = reviews["rating"].mean()
    mean = (stats["sum"] + RATING_PRIOR_COUNT * prior) / (stats["count"] + RATING_PRIOR_COUNT)
    return (mean / 5.0).to_numpy(float)


def top_n(scores: np.ndarray, n: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the n best scores, best first, skipping `exclude`."""
    scores = scores.astype(float, copy=True)
    if exclude is not None and len(exclude):
        scores[exclude] = -np.inf
    n = min(n, int(np.isfinite(scores).sum()))
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    best = np.argpartition(-scores, n - 1)[:n]
    return best[np.argsort(-scores[best], kind="stable")]
