"""The online objects behind `mlkit serve` and mlkit's Python API.

`FraudScorer`, `Bandit` and `Recommender` keep their model loaded, re-check the alias they
serve at most once a second (`ALIAS_CHECK_SECONDS`) and load the new version when it moved;
`Service` holds one of each plus the signals, `/health` and the recommender's background
retraining, for one web worker. They return exactly what `mlkit predict fraud`,
`mlkit mab recommend|reward`, `mlkit recommend ...` and `mlkit signal run|status` print.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .errors import MlkitError
from .inputs import positive_id

ALIAS_CHECK_SECONDS = 1.0
REDIS_RETRY_SECONDS = 5.0
T = TypeVar("T")


def id_value(text: str | int, field: str) -> int:
    """A positive id from a URL's text, checked as the CLI checks ids (`inputs.positive_id`)."""
    if isinstance(text, str):
        if not re.fullmatch(r"[+-]?\d{1,30}", text.strip()):
            raise MlkitError(
                f"{field} {text!r} is not an integer", hint=f"{field} is a positive id"
            )
        text = int(text)
    return positive_id(text, field)


class RedisLink:
    """The configured Redis for a long-running process: checked (a ping, or a new connection)
    at most every REDIS_RETRY_SECONDS, and None between checks while it is disabled or down,
    so an outage costs one check per interval rather than a timeout per request."""

    def __init__(self, url: str | None):
        self.url = url
        self._client = None
        self._checked = -float("inf")
        self._lock = threading.Lock()

    def client(self):
        if self.url and time.monotonic() - self._checked > REDIS_RETRY_SECONDS:
            with self._lock:
                if time.monotonic() - self._checked > REDIS_RETRY_SECONDS:
                    self._client = self._check()
                    self._checked = time.monotonic()
        return self._client

    def _check(self):
        from .cache import redis_client

        if self._client is not None:
            try:
                self._client.ping()
                return self._client
            except Exception:  # down now: reconnect at the next check
                return None
        return redis_client(self.url, required=False)

    def state(self) -> str:
        """ok, unreachable or disabled."""
        if not self.url:
            return "disabled"
        client = self.client()
        try:
            if client is not None and client.ping():
                return "ok"
        except Exception:  # any failure to answer is an outage
            self._checked = -float("inf")  # and the next request checks again
        return "unreachable"


class Watched(Generic[T]):
    """What `load` builds from the version `ref` names, rebuilt when the alias moves; the
    reference is resolved at most once every ALIAS_CHECK_SECONDS. While the database cannot
    be asked, the loaded object keeps serving."""

    def __init__(self, engine: Engine, ref: str, load: Callable[[Any], T]):
        self.engine = engine
        self.ref = ref
        self._load = load
        self._loaded: T | None = None
        self._version: tuple[str, int] | None = None
        self._checked = -float("inf")
        self._lock = threading.Lock()

    @property
    def version(self) -> str | None:
        """`name:version` of the loaded object, None before the first load."""
        return f"{self._version[0]}:{self._version[1]}" if self._version else None

    def get(self) -> T:
        if time.monotonic() - self._checked < ALIAS_CHECK_SECONDS and self._loaded is not None:
            return self._loaded
        from .registry import resolve

        with self._lock:
            try:
                mv = resolve(self.engine, self.ref)
            except sa.exc.DBAPIError:
                if self._loaded is None:
                    raise
                return self._loaded
            if (mv.name, mv.version) != self._version:
                self._loaded = self._load(mv)
                self._version = (mv.name, mv.version)
            self._checked = time.monotonic()
        return self._loaded


def top_contributions(model, features: dict) -> dict[str, Any]:
    """The strongest per-feature contributions of `model` to one order's score, strongest
    first, and their unit (as the dashboard's drill-down shows them), from the order's
    features without a frame."""
    from .drilldown import strongest

    items, unit = strongest(*model.contributions_one(features))
    return {
        "unit": unit,
        "items": [{**i, "contribution": round(i["contribution"], 6)} for i in items],
    }


class FraudScorer:
    """Scores orders online with the fraud version `ref` names (`fraud@prod` by default).

    >>> scorer = FraudScorer(engine, config)
    >>> scorer.score({"buyer_wallet_id": 12, "event_id": 3, "price": 80,
    ...               "payment_method": "paypal", "created_at": "2026-03-01T12:00:00"})
    {"fraud_score": ..., "decision": ..., "model_version": ..., "features": {...},
     "feature_source": "redis" | "database", "top_contributions": [...]}

    Features come from Redis when it holds the wallet, else from the database; a bad field
    raises MlkitError naming it (`toolkit.inputs.validate_order`).
    """

    def __init__(
        self, engine: Engine, config, ref: str = "fraud@prod", redis: RedisLink | None = None
    ):
        from .fraud.scoring import FraudPredictor, Thresholds

        self.redis = redis or RedisLink(config.redis_url)
        thresholds = Thresholds.from_config(config)
        self.watched: Watched[FraudPredictor] = Watched(
            engine,
            ref,
            lambda mv: FraudPredictor(engine, mv, thresholds, artifacts_dir=config.artifacts_dir),
        )

    @property
    def model_version(self) -> str | None:
        return self.watched.version

    def score(self, order: dict) -> dict[str, Any]:
        """One order's score, decision, model version, features and top contributions."""
        if not isinstance(order, dict):
            raise MlkitError("an order is a JSON object", hint='e.g. {"buyer_wallet_id": 12, ...}')
        predictor = self.watched.get()
        predictor.redis = self.redis.client()
        try:
            result = predictor.predict(order)
        except sa.exc.DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            # A connection the database dropped (a restart; `make_engine(autocommit=True)`
            # does not ping): the pool reconnects, so once more.
            result = predictor.predict(order)
        result["top_contributions"] = top_contributions(predictor.model, result["features"])
        return result

    def score_many(self, orders: list[dict]) -> list[dict[str, Any]]:
        """Each order scored as `score` does, in order, together (`score_batch`); the first
        bad one raises."""
        results = self.score_batch(orders)
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results

    def score_batch(self, orders: list) -> list[dict[str, Any] | Exception]:
        """What `score` answers for each of `orders`, or the exception that refuses it alone,
        computed together: one Redis MGET and one SQL statement for all their wallets and
        events (`online.online_features_many`), one call to the model for their scores and one
        for their contributions (`online.batch_scores`). `mlkit serve` gathers the orders that
        arrive while a batch is being scored into the next one."""
        import numpy as np

        from .clock import utcnow
        from .drilldown import strongest
        from .fraud.columns import FEATURES
        from .fraud.online import batch_scores, online_features_many
        from .fraud.scoring import model_version_label
        from .inputs import PAYMENT_METHODS, validate_order

        predictor = self.watched.get()
        methods = (*PAYMENT_METHODS, *(predictor.mv.params or {}).get("categories", ()))
        results: list[Any] = [None] * len(orders)
        valid: list[tuple[int, dict]] = []
        for i, order in enumerate(orders):
            if not isinstance(order, dict):
                results[i] = MlkitError(
                    "an order is a JSON object", hint='e.g. {"buyer_wallet_id": 12, ...}'
                )
                continue
            try:
                valid.append((i, validate_order(order, now=utcnow(), payment_methods=methods)))
            except Exception as exc:  # its alone: one order never fails the others
                results[i] = exc
        requests = [request for _, request in valid]
        client = self.redis.client()
        try:
            found = online_features_many(predictor.engine, requests, client)
        except sa.exc.DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            found = online_features_many(predictor.engine, requests, client)  # as `score`
        scored = []
        for (i, _), item in zip(valid, found, strict=True):
            if isinstance(item, Exception):
                results[i] = item
            else:
                scored.append((i, *item))
        scores, names, contributions, unit = batch_scores(
            predictor.model, [features for _, features, _ in scored]
        )
        label = model_version_label(predictor.mv)
        decisions = predictor.thresholds.decide(np.asarray(scores, dtype=float))
        for row, ((i, features, source), score) in enumerate(zip(scored, scores, strict=True)):
            items, unit_of = strongest(names, contributions[row : row + 1], unit)
            results[i] = {
                "fraud_score": round(score, 6),
                "decision": str(decisions[row]),
                "model_version": label,
                "features": {
                    k: (None if isinstance(v, float) and math.isnan(v) else v)
                    for k, v in features.items()
                    if k in FEATURES
                },
                "feature_source": source,
                "top_contributions": {
                    "unit": unit_of,
                    "items": [{**x, "contribution": round(x["contribution"], 6)} for x in items],
                },
            }
        return results


class Bandit:
    """The pricing bandit online: `recommend(event_id)` picks a strategy and its price,
    `reward(event_id, arm, value)` records one reward atomically (database, mirrored to
    Redis), as `mlkit mab recommend|reward` do."""

    def __init__(
        self,
        engine: Engine,
        config,
        redis: RedisLink | None = None,
        *,
        reader: Engine | None = None,
    ):
        self.engine = engine
        self.reader = reader or engine  # what `recommend` reads through
        self.config = config
        self.redis = redis or RedisLink(config.redis_url)
        self.warning: str | None = None  # the latest warning (`mab`'s stderr line), if any

    def _warn(self, text: str) -> None:
        self.warning = text

    def _store(self, engine: Engine):
        from .pricing.state import BanditStore

        return BanditStore(engine, self.redis.client())

    def recommend(self, event_id: int, policy: str | None = None) -> dict[str, Any]:
        from .pricing.service import recommend_price

        return recommend_price(
            self.reader,
            self.config,
            id_value(event_id, "event_id"),
            policy=policy,
            warn=self._warn,
            store=self._store(self.reader),
        )

    def recommend_batch(self, asks: list[tuple]) -> list[dict[str, Any] | MlkitError]:
        """What `recommend` answers for each (event_id, policy) of `asks`, or the MlkitError
        that refuses it alone, read together (`pricing.service.recommend_prices`): one
        statement for their events, one stamp read and one MGET for the arms."""
        from .pricing.service import recommend_prices

        results: list[Any] = [None] * len(asks)
        valid: list[tuple[int, tuple]] = []
        for i, (event_id, policy) in enumerate(asks):
            try:
                valid.append((i, (id_value(event_id, "event_id"), policy)))
            except MlkitError as exc:
                results[i] = exc
        picks = recommend_prices(
            self.reader,
            self.config,
            [ask for _, ask in valid],
            warn=self._warn,
            store=self._store(self.reader),
        )
        for (i, _), pick in zip(valid, picks, strict=True):
            results[i] = pick
        return results

    def reward(self, event_id: int, arm: str, value: float) -> dict[str, Any]:
        from .pricing.service import record_reward

        if isinstance(value, bool) or not isinstance(value, int | float):
            raise MlkitError(f"reward {value!r} is not a number", hint="a reward is in [0, 1]")
        if not isinstance(arm, str):
            raise MlkitError(f"arm {arm!r} is not a strategy name", hint="e.g. surge_pricing")
        return record_reward(
            self.engine,
            self.config,
            id_value(event_id, "event_id"),
            arm,
            float(value),
            warn=self._warn,
            store=self._store(self.engine),  # its transaction: not the autocommit reader
        )


class Recommender:
    """The recommender version `ref` names, as `mlkit recommend product|user|popular` serve
    it: `similar(product_id, n)`, `for_user(user_id, n)`, `popular(n, category)`. With the
    database down it serves the last good artifact of this database (`warning` says so)."""

    def __init__(self, engine: Engine, config, ref: str = "recommender@prod"):
        from .recommender.serve import Recommender as Loaded

        self.engine = engine
        self.config = config
        self.watched: Watched[Loaded] = Watched(
            engine, ref, lambda mv: Loaded.open(engine, config, mv.ref)
        )

    def _loaded(self):
        from .recommender.serve import Recommender as Loaded

        try:
            return self.watched.get()
        except sa.exc.DBAPIError:
            return Loaded.open(self.engine, self.config, self.watched.ref)

    def similar(self, product_id: int, n: int = 10) -> dict[str, Any]:
        product_id, n = id_value(product_id, "product_id"), _count(n)
        return self._loaded().similar(product_id, n)

    def for_user(self, user_id: int, n: int = 10) -> dict[str, Any]:
        user_id, n = id_value(user_id, "user_id"), _count(n)
        return self._loaded().for_user(user_id, n)

    def popular(self, n: int = 10, category: str | None = None) -> dict[str, Any]:
        n = _count(n)
        return self._loaded().popular(n, category)

    def info(self) -> dict[str, Any]:
        """The seed's `/api/model/info`: trained or not, the version and its catalogue."""
        try:
            loaded = self._loaded()
        except MlkitError as exc:
            return {"status": "not_trained", "error": exc.message}
        model = loaded.model
        return {
            "status": "trained",
            "model_version": loaded.ref,
            "num_products": len(model.product_ids),
            "warning": loaded.warning,
        }


def _count(n: int | str) -> int:
    from .recommender.serve import check_n

    if isinstance(n, str):
        if not re.fullmatch(r"[+-]?\d{1,9}", n.strip()):
            raise MlkitError(f"n {n!r} is not an integer", hint="ask for 1 to 100 items")
        n = int(n)
    check_n(n)
    return n


class Retraining:
    """`POST /api/retrain?days=`: the recommender trained in a background thread, as
    `mlkit train recommender --days D` does; `start` answers with the run's id once the run
    is recorded, or raises what refused it (too little data, a cooldown, a run under way)."""

    WAIT_SECONDS = 60.0

    def __init__(self, engine: Engine, config):
        self.engine = engine
        self.config = config

    def _last_run_id(self) -> int:
        from .schema import training_runs as t

        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.coalesce(sa.func.max(t.c.run_id), 0)).where(
                        t.c.model_name == "recommender"
                    )
                ).scalar_one()
            )

    def start(self, days: float) -> dict[str, Any]:
        from .recommender.train import train_recommender

        if isinstance(days, bool) or not isinstance(days, int | float) or not 0 < days <= 3650:
            raise MlkitError(f"days {days!r} is out of range", hint="a window of 1 to 3650 days")
        before = self._last_run_id()
        failure: list[BaseException] = []

        def work() -> None:
            try:
                train_recommender(self.engine, self.config, days=days)
            except BaseException as exc:  # reported to the request while it waits
                failure.append(exc)

        thread = threading.Thread(target=work, name="retrain-recommender", daemon=True)
        thread.start()
        deadline = time.monotonic() + self.WAIT_SECONDS
        while time.monotonic() < deadline:
            run_id = self._last_run_id()
            if run_id > before:
                return {"status": "accepted", "run_id": run_id, "days": days}
            if not thread.is_alive():
                if failure:
                    raise failure[0]
                break
            time.sleep(0.05)
        raise MlkitError("the retraining did not start", hint="see `mlkit status`")


class Service:
    """Everything one web worker serves: the three models, the signals, health and the
    recommender's retraining, over one engine (and an autocommit `reader` for fraud
    scoring's reads, when given) and one Redis link."""

    def __init__(
        self,
        engine: Engine,
        config,
        required: tuple[str, ...] = ("fraud",),
        *,
        reader: Engine | None = None,
    ):
        self.engine = engine
        self.config = config
        self.required = required
        self.redis = RedisLink(config.redis_url)
        # Fraud scores and pricing picks only read: on an autocommit engine a read is one
        # round trip.
        self.fraud = FraudScorer(reader or engine, config, redis=self.redis)
        self.bandit = Bandit(engine, config, redis=self.redis, reader=reader)
        self.recommender = Recommender(engine, config)
        self.retraining = Retraining(engine, config)

    def signal(self, symbol: str) -> dict[str, Any]:
        """`mlkit signal run --no-train`: the latest bar's signal, stored in `signals`."""
        from .signal.run import run_signal

        return run_signal(self.engine, self.config, _symbol(symbol), train=False)

    def signal_status(self, symbol: str) -> dict[str, Any]:
        """`mlkit signal status --symbol S`: the symbol's status fields."""
        from .signal.run import signal_status

        document = signal_status(self.engine, self.config, _symbol(symbol))
        return next(iter(document.values()))

    def warm(self) -> None:
        """Load the fraud and recommender versions now, so a worker's first requests do not
        wait for them; one that cannot load yet (no prod version, the database down) loads
        on its first request, which reports why if it still cannot."""
        for watched in (self.fraud.watched, self.recommender.watched):
            try:
                watched.get()
            except (MlkitError, sa.exc.DBAPIError):
                continue

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether the service can answer, and the seed's `/health` document: status,
        model_version (the fraud model's), what is missing and what is degraded."""
        from .registry import resolve

        missing: list[str] = []
        models: dict[str, str | None] = {}
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.select(1))
        except sa.exc.DBAPIError:
            missing.append("database unreachable")
        if not missing:
            for family in ("fraud", "pricing", "recommender"):
                try:
                    mv = resolve(self.engine, f"{family}@prod")
                    models[family] = f"{mv.name}:{mv.version}"
                except MlkitError:
                    models[family] = None
                    if family in self.required:
                        missing.append(f"no prod {family} model")
        redis = self.redis.state()
        degraded = (
            ["redis unreachable: features and bandit state from the database"]
            if redis == "unreachable"
            else []
        )
        status = "unhealthy" if missing else "degraded" if degraded else "healthy"
        document = {
            "status": status,
            "model_version": models.get("fraud") or self.fraud.model_version,
            "models": models,
            "database": "unreachable" if "database unreachable" in missing else "ok",
            "redis": redis,
            "missing": missing,
            "degraded": degraded,
        }
        return not missing, document


def _symbol(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._:-]{1,32}", text or ""):
        raise MlkitError(f"symbol {text!r} is not a symbol", hint="e.g. BTCUSDT")
    return text
