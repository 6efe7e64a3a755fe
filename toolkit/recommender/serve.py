"""Serving recommendations: from the registry's version when the database answers, from
the last good artifact on disk when it does not (and the caller is told so).

The last good artifact is this database's own, `LAST_GOOD.json` in its folder (found through
toolkit.identity while the database is down), so another database's model is never served; a
database never served here has no fallback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import schema
from ..config import mask_url
from ..datasets import _atomic_write_text
from ..db import explain_db_error
from ..errors import MlkitError
from ..identity import database_home, home_of, known_database_id
from .model import TYPE_WEIGHTS, RecommenderModel, decayed_weights, top_n

log = logging.getLogger("mlkit.recommend")

MAX_N = 100
RECENT_LIMIT = 500  # a user's newest interactions read live on top of the model
LAST_GOOD = "LAST_GOOD.json"


@dataclass
class Recommender:
    model: RecommenderModel
    ref: str
    engine: Engine | None  # None when serving from the fallback artifact
    warning: str | None = None
    half_life_days: float = 30.0

    # ------------------------------------------------------------ loading

    @classmethod
    def open(cls, engine: Engine, config, ref: str = "recommender@prod") -> Recommender:
        from ..registry import read_artifact, resolve

        half_life = float(config.get("recommender.recency_half_life_days"))
        try:
            with engine.connect() as conn:
                conn.execute(sa.select(1))
        except sa.exc.DBAPIError as exc:
            return cls._fallback(config, engine, exc, half_life)
        mv = resolve(engine, ref)
        model = RecommenderModel.load(read_artifact(mv, config.artifacts_dir))
        if mv.name == "recommender" and "prod" in mv.aliases:
            _keep_last_good(database_home(config, engine), mv)
        return cls(model, mv.ref, engine, half_life_days=half_life)

    @classmethod
    def _fallback(cls, config, engine: Engine, exc: Exception, half_life: float) -> Recommender:
        from ..registry import ModelVersion, read_artifact

        why = explain_db_error(exc, engine.url).message
        identity = known_database_id(config.artifacts_dir, engine.url)
        saved = _read_pointer(last_good_pointer(home_of(config, identity))) if identity else None
        if saved is None or saved.get("database_id") != identity:
            raise MlkitError(
                f"the database at {mask_url(str(engine.url))} is unreachable ({why}) and "
                "there is no recommender artifact of this database on this machine to fall "
                "back on",
                hint="start the database, then train one: mlkit train recommender --alias prod",
            )
        mv = ModelVersion(
            "recommender",
            int(saved["version"]),
            "recommender",
            Path(saved["artifact_path"]),
            saved["sha256"],
        )
        model = RecommenderModel.load(read_artifact(mv, config.artifacts_dir))
        warning = (
            f"database unreachable ({why}): serving {mv.ref}, the last good artifact "
            f"({saved.get('created_at')}), without interactions since it was trained"
        )
        return cls(model, mv.ref, None, warning, half_life)

    # ------------------------------------------------------------ recommendations

    def _items(self, indices: np.ndarray, scores: np.ndarray, reasons: list[str]) -> list[dict]:
        return [
            {
                "product_id": int(self.model.product_ids[i]),
                "name": str(self.model.names[i]),
                "category": str(self.model.categories[i]),
                "score": round(float(scores[i]), 6),
                "reason": reason,
            }
            for i, reason in zip(indices, reasons, strict=True)
        ]

    def similar(self, product_id: int, n: int = 10) -> dict:
        check_n(n)
        index = self.model.product_index(product_id)
        if index is None:
            raise MlkitError(
                f"unknown product {product_id}", hint="product ids come from the products table"
            )
        scores = self.model.product_scores(index)
        best = top_n(scores, n, np.array([index]))
        reasons = [self._why_similar(index, j) for j in best]
        return {
            "product_id": product_id,
            "model": self.ref,
            "items": self._items(best, scores, reasons),
        }

    def for_user(self, user_id: int, n: int = 10) -> dict:
        check_n(n)
        m = self.model
        row = m.user_index(user_id)
        recent = self._recent(user_id)
        if row is None and not recent:
            result = self.popular(n)
            for item in result["items"]:
                item["reason"] = "popular (no history for this user yet)"
            return {"user_id": user_id, "model": self.ref, "cold_start": True, **result}
        # The user's history as (product index, weight) pairs: the model's row plus what
        # happened since it was trained, scored as the model blends (model.history_scores).
        if row is not None:
            start, end = m.history.indptr[row], m.history.indptr[row + 1]
            touched, weight = m.history.indices[start:end], m.history.data[start:end]
            bought = set(m.bought[row].indices.tolist())
        else:
            touched, weight, bought = np.zeros(0, np.int32), np.zeros(0), set()
        if recent:
            product_ids = np.array([r.product_id for r in recent], dtype=np.int64)
            position = np.searchsorted(m.product_ids, product_ids)
            position = np.clip(position, 0, len(m.product_ids) - 1)
            known = m.product_ids[position] == product_ids
            extra = self._recent_weights([r for r, k in zip(recent, known, strict=True) if k])
            touched = np.concatenate([touched, position[known]])
            weight = np.concatenate([weight, extra])
            purchased = np.array([r.interaction_type == "purchase" for r in recent]) & known
            bought.update(position[purchased].tolist())
        scores = m.history_scores(touched, weight)
        best = top_n(scores, n, np.fromiter(bought, dtype=np.int64))
        anchors = np.unique(touched[np.argsort(-weight)[:20]])
        reasons = self._why_for_user(best, anchors)
        return {
            "user_id": user_id,
            "model": self.ref,
            "cold_start": False,
            "items": self._items(best, scores, reasons),
        }

    def popular(self, n: int = 10, category: str | None = None) -> dict:
        check_n(n)
        m = self.model
        scores = m.popularity.astype(float)
        exclude = None
        if category is not None:
            matches = np.char.lower(m.categories) == category.lower()
            if not matches.any():
                known = ", ".join(sorted(set(m.categories.tolist())))
                raise MlkitError(f"unknown category {category!r}", hint=f"categories: {known}")
            exclude = np.flatnonzero(~matches)
        best = top_n(scores, n, exclude)
        reasons = [f"popular{' in ' + str(m.categories[j]) if category else ''}" for j in best]
        return {
            "model": self.ref,
            "category": category,
            "items": self._items(best, scores, reasons),
        }

    # ------------------------------------------------------------ helpers

    def _recent(self, user_id: int) -> list[sa.Row]:
        """The user's interactions newer than the model (none when serving the fallback), a
        few hundred rows at most, so plain rows rather than a frame."""
        if self.engine is None:
            return []
        i = schema.product_interactions
        query = (
            sa.select(i.c.product_id, i.c.interaction_type, i.c.rating, i.c.created_at)
            .where(i.c.user_id == user_id)
            .order_by(i.c.created_at.desc())
            .limit(RECENT_LIMIT)
        )
        if self.model.window_end:
            query = query.where(i.c.created_at > _moment(self.model.window_end))
        with self.engine.connect() as conn:
            return conn.execute(query).all()

    def _recent_weights(self, rows: list[sa.Row]) -> np.ndarray:
        """`model.interaction_weights` of recent rows, their ages counted from now."""
        now = datetime.now()
        return decayed_weights(
            np.array([TYPE_WEIGHTS.get(str(r.interaction_type), 0.0) for r in rows]),
            np.array([r.interaction_type == "rate" for r in rows], dtype=bool),
            np.array([np.nan if r.rating is None else float(r.rating) for r in rows]),
            np.array([(now - _moment(r.created_at)).total_seconds() / 86_400 for r in rows]),
            self.half_life_days,
        )

    def _why_similar(self, a: int, b: int) -> str:
        m = self.model
        parts = (
            [f"same {', '.join(m.shared_attributes(a, b))}"] if m.shared_attributes(a, b) else []
        )
        if abs(m.price_z[a] - m.price_z[b]) < 0.25:
            parts.append("similar price")
        return "; ".join(parts) or "similar description"

    def _why_for_user(self, best: np.ndarray, anchors: np.ndarray) -> list[str]:
        """For each pick, the history item it is most like (one sparse product)."""
        m = self.model
        if not len(anchors):
            return ["matches your profile"] * len(best)
        similarity = (m.tfidf[anchors] @ m.tfidf[best].T).toarray()
        closest = anchors[similarity.argmax(axis=0)]
        return [
            "in your history, not bought yet" if j in anchors else f"like {m.names[c]}"
            for j, c in zip(best, closest, strict=True)
        ]


def _moment(value: datetime | str) -> datetime:
    """A naive moment from the database or an artifact's ISO text (as pandas reads them)."""
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


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


def _read_pointer(pointer: Path) -> dict | None:
    try:
        saved = json.loads(pointer.read_text())
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) else None


def _keep_last_good(home, mv) -> None:
    """Point this database's LAST_GOOD at the prod version being served, when it names
    another (a promotion or rollback by hand, or a database trained before identities)."""
    saved = _read_pointer(last_good_pointer(home)) or {}
    if (saved.get("database_id"), saved.get("version"), saved.get("sha256")) == (
        home.database_id,
        mv.version,
        mv.sha256,
    ):
        return
    try:
        remember_last_good(home, mv)
    except OSError as exc:  # read-only artifacts: serving goes on, the fallback is older
        log.warning("cannot update %s: %s", last_good_pointer(home), exc.strerror)


def check_n(n: int) -> None:
    if not 1 <= n <= MAX_N:
        raise MlkitError(f"-n {n} is out of range", hint=f"ask for 1 to {MAX_N} items")


# ---------------------------------------------------------------- what `mlkit recommend` does

Warn = Callable[[str], None]


def _opened(engine: Engine, config, ref: str, warn: Warn) -> Recommender:
    recommender = Recommender.open(engine, config, ref)
    if recommender.warning:
        warn(recommender.warning)
    return recommender


def similar_products(
    engine: Engine, config, ref: str, product_id: int, n: int, *, warn: Warn
) -> dict:
    """`mlkit recommend product`: `Recommender.similar`, `warn` told of a fallback model."""
    return _opened(engine, config, ref, warn).similar(product_id, n)


def user_products(engine: Engine, config, ref: str, user_id: int, n: int, *, warn: Warn) -> dict:
    """`mlkit recommend user`: `Recommender.for_user`, `warn` told of a fallback model."""
    return _opened(engine, config, ref, warn).for_user(user_id, n)


def popular_products(
    engine: Engine, config, ref: str, n: int, category: str | None, *, warn: Warn
) -> dict:
    """`mlkit recommend popular`: `Recommender.popular`, `warn` told of a fallback model."""
    return _opened(engine, config, ref, warn).popular(n, category)
