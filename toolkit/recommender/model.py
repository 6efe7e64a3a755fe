"""The content-based recommender: sparse TF-IDF over product attributes, price and rating.

score(user or product, candidate) = text_weight x cosine of TF-IDF vectors
                                  + price_weight x exp(-|z(log price) difference|)
                                  + rating_weight x (shrunk average rating / 5)

A user's profile is the L2-normalised sum of the vectors of the products they touched, weighted
by what they did and how recently, so its dot product with a product is a cosine. Scores are
computed a batch of users at a time, never as a products x products matrix, and the artifact is
one `.npz` of plain arrays, loaded without pickle.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

TYPE_WEIGHTS = {"purchase": 1.0, "add_to_cart": 0.6, "rate": 0.4, "view": 0.15}
TEXT_COLUMNS = ("category", "gender", "color", "material", "size")
RATING_PRIOR_COUNT = 5.0  # reviews' worth of the catalogue mean mixed into each product
_SPARSE = ("tfidf", "profiles", "bought", "history")


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
    profiles: sparse.csr_matrix  # users x terms, rows L2-normalised
    user_price_z: np.ndarray
    bought: sparse.csr_matrix  # users x products, 1 where purchased
    history: sparse.csr_matrix  # users x products, interaction weights
    weights: np.ndarray  # text, price, rating
    terms: np.ndarray  # the TF-IDF vocabulary by column
    window_end: str  # newest interaction the model saw (ISO), "" when none

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

    def blend(self, text: np.ndarray, target_z: np.ndarray) -> np.ndarray:
        """Scores of every product, for one (text (n,), z scalar) or a batch ((n, m), (m,))."""
        text_w, price_w, rating_w = self.weights
        z = self.price_z if text.ndim == 1 else self.price_z[:, None]
        rating = self.rating if text.ndim == 1 else self.rating[:, None]
        return text_w * text + price_w * np.exp(-np.abs(z - target_z)) + rating_w * rating

    def user_scores(self, profile: np.ndarray, target_z: float) -> np.ndarray:
        return self.blend(self.tfidf @ profile, np.float64(target_z))

    def product_scores(self, index: int) -> np.ndarray:
        text = (self.tfidf @ self.tfidf[index].T).toarray().ravel()
        return self.blend(text, self.price_z[index])

    def batch_scores(self, users: np.ndarray) -> np.ndarray:
        """(products, len(users)) scores for a batch of user indices."""
        profiles = self.profiles[users].toarray().T
        return self.blend(self.tfidf @ profiles, self.user_price_z[users])

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
                if f.name in _SPARSE:
                    values[f.name] = sparse.csr_matrix(
                        (
                            data[f"{f.name}.data"],
                            data[f"{f.name}.indices"],
                            data[f"{f.name}.indptr"],
                        ),
                        shape=tuple(data[f"{f.name}.shape"]),
                    )
                else:
                    value = data[f.name]
                    values[f.name] = value.item() if value.ndim == 0 else value
        return cls(**values)


def product_documents(products: pd.DataFrame) -> list[str]:
    """Name words plus attribute tokens (`category=jeans`), so "Blue" in a name and the
    colour attribute both count, and attributes never collide with name words."""
    docs = products["name"].fillna("").astype(str).str.lower()
    for column in TEXT_COLUMNS:
        value = products[column].fillna("").astype(str).str.lower().str.replace(" ", "_")
        docs = docs + np.where(value != "", " " + column + "=" + value, "")
    return docs.tolist()


def interaction_weights(interactions: pd.DataFrame, now: pd.Timestamp, half_life_days: float):
    kind = interactions["interaction_type"].astype(str)
    weight = np.array(kind.map(TYPE_WEIGHTS).fillna(0.0), dtype=float)
    rated = (kind == "rate").to_numpy()
    rating = interactions["rating"].to_numpy(dtype=float, na_value=np.nan)
    weight[rated] *= np.nan_to_num(rating[rated], nan=3.0) / 5.0
    age_days = (now - pd.to_datetime(interactions["created_at"])).dt.total_seconds() / 86_400
    return weight * 0.5 ** (np.clip(age_days.to_numpy(float), 0, None) / half_life_days)


def fit(
    products: pd.DataFrame,
    interactions: pd.DataFrame,
    reviews: pd.DataFrame,
    *,
    weights: tuple[float, float, float] = (0.7, 0.2, 0.1),
    half_life_days: float = 30.0,
    now: pd.Timestamp | None = None,
) -> RecommenderModel:
    """products: product_id, name, category, gender, color, material, size, price.
    interactions: user_id, product_id, interaction_type, rating, created_at.
    reviews: product_id, rating."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

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
    profiles = normalize(history.astype(np.float32) @ matrix).astype(np.float32).tocsr()
    totals = np.asarray(history.sum(axis=1)).ravel()
    user_price_z = np.divide(
        history @ price_z, totals, out=np.zeros(len(user_ids)), where=totals > 0
    )
    return RecommenderModel(
        product_ids=product_ids,
        names=products["name"].fillna("").astype(str).to_numpy(dtype=str),
        categories=products["category"].fillna("").astype(str).to_numpy(dtype=str),
        tfidf=matrix,
        price_z=price_z,
        rating=rating,
        popularity=np.asarray(history.sum(axis=0)).ravel(),
        user_ids=user_ids,
        profiles=profiles,
        user_price_z=user_price_z,
        bought=bought.tocsr(),
        history=history,
        weights=np.asarray(weights, dtype=float),
        terms=tfidf.get_feature_names_out().astype(str),
        window_end=pd.Timestamp(now).isoformat() if len(inter) else "",
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
