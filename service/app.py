"""The web app of `mlkit serve`: routes mapped onto `toolkit.serving.Service`, one JSON error
for a bad request, Prometheus metrics."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from starlette.concurrency import run_in_threadpool

from mlkit.toolkit.errors import MlkitError
from mlkit.toolkit.formats import json_safe
from mlkit.toolkit.locks import JobBusy
from mlkit.toolkit.serving import Service

ONLINE_THREADS = 5  # SQLAlchemy's default pool_size
disable_created_metrics()  # no *_created series beside every counter


class Metrics:
    """The worker's Prometheus series: requests, latencies, fraud decisions, model versions."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mlkit_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "mlkit_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )
        self.decisions = Counter(
            "mlkit_fraud_decisions", "Fraud decisions served", ["decision"], registry=self.registry
        )
        self.models = Gauge(
            "mlkit_model_version",
            "The version each family serves (0: none)",
            ["family"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )

    def exposition(self) -> bytes:
        """The text format; with several workers (PROMETHEUS_MULTIPROC_DIR, set by
        `server.run`) every worker's series summed, whichever worker answers."""
        import os

        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        return generate_latest(merged)


class MetricsMiddleware:
    """A plain ASGI middleware (no per-request task) timing every HTTP request by route."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
            self.metrics.requests.labels(scope["method"], route, str(status[0])).inc()


def error(status: int, message: str, hint: str | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "hint": hint}, status_code=status)


def _errors(app: FastAPI) -> None:
    import sqlalchemy as sa

    @app.exception_handler(MlkitError)
    async def refused(_: Request, exc: MlkitError) -> JSONResponse:
        return error(status_of(exc), exc.message, exc.hint)

    @app.exception_handler(RequestValidationError)
    async def malformed(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
        return error(
            422, f"{where}: {first.get('msg', 'malformed request')}", "see README: Serving"
        )

    @app.exception_handler(sa.exc.DBAPIError)
    async def database_down(_: Request, exc: sa.exc.DBAPIError) -> JSONResponse:
        from mlkit.toolkit.db import explain_db_error

        explained = explain_db_error(exc)
        return error(503, explained.message, explained.hint)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        """A bug is still one JSON error (uvicorn logs its traceback), never a password."""
        from mlkit.toolkit.errors import explain_unexpected

        explained = explain_unexpected(exc)
        return error(500, explained.message, "see the server's log")


# How toolkit words a missing serving version and an unreachable database.
UNAVAILABLE = ("unknown model reference", "the database at", "cannot reach the database")


def status_of(exc: MlkitError) -> int:
    """409 for a job already running, 503 when no version serves the model asked for or the
    database cannot be reached, 404 for an unknown id (toolkit words those `no event 7`,
    `no product 7`), else 400."""
    if isinstance(exc, JobBusy):
        return 409
    if exc.message.startswith(UNAVAILABLE):
        return 503
    return 404 if exc.message.startswith("no ") else 400


async def json_body(request: Request) -> Any:
    """The request's JSON document; anything else is one 422 error."""
    import json

    try:
        return json.loads(await request.body())
    except ValueError as exc:
        raise MlkitError(f"the body is not JSON: {exc}", hint="send one JSON document") from None


def ok(document: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(json_safe(document), status_code=status)


def create_app(service: Service | None = None) -> FastAPI:
    """The app over `service`, or over the configuration the environment names (uvicorn's
    workers each build their own)."""
    service = service or service_from_environment()
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        service.warm()  # before this worker accepts its first connection
        yield

    app = FastAPI(title="mlkit", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.service = service
    _errors(app)
    _fraud_and_pricing(app, service, metrics)
    _recommendations(app, service)
    _signals_health(app, service, metrics)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def service_from_environment() -> Service:
    from mlkit.toolkit.config import load_config
    from mlkit.toolkit.db import config_engine

    config = load_config()
    return Service(
        config_engine(config, check=False),
        config,
        reader=config_engine(config, check=False, autocommit=True),
    )


def _fraud_and_pricing(app: FastAPI, service: Service, metrics: Metrics) -> None:
    # One order, or one pricing pick, is a millisecond of CPU around one or two short reads:
    # a few threads overlap their waits, no more than the engine's pool keeps connections
    # for (more would open and close a connection per request).
    online = anyio.CapacityLimiter(ONLINE_THREADS)

    @app.post("/api/fraud/score")
    async def fraud_score(request: Request) -> JSONResponse:
        order = await json_body(request)
        if isinstance(order, list):
            results = await anyio.to_thread.run_sync(service.fraud.score_many, order)
        else:
            results = [await anyio.to_thread.run_sync(service.fraud.score, order, limiter=online)]
        for result in results:
            metrics.decisions.labels(result["decision"]).inc()
        return ok(results if isinstance(order, list) else results[0])

    @app.get("/api/pricing/recommend")
    async def pricing_recommend(event_id: str, policy: str | None = None) -> JSONResponse:
        pick = await anyio.to_thread.run_sync(
            service.bandit.recommend, event_id, policy, limiter=online
        )
        return ok(pick)

    @app.post("/api/pricing/reward")
    async def pricing_reward(request: Request) -> JSONResponse:
        body = await json_body(request)
        missing = [
            k for k in ("event_id", "arm", "reward") if not isinstance(body, dict) or k not in body
        ]
        if missing:
            return error(422, f"missing {', '.join(missing)}", 'send {"event_id", "arm", "reward"}')
        state = await run_in_threadpool(
            service.bandit.reward, body["event_id"], body["arm"], body["reward"]
        )
        return ok(state)


def _recommendations(app: FastAPI, service: Service) -> None:
    @app.get("/api/recommendations/product/{product_id}")
    def product(product_id: str, n: str = "10") -> JSONResponse:
        return ok(service.recommender.similar(product_id, n))

    @app.get("/api/recommendations/user/{user_id}")
    def user(user_id: str, n: str = "10") -> JSONResponse:
        return ok(service.recommender.for_user(user_id, n))

    @app.get("/api/recommendations/popular")
    def popular(n: str = "10", category: str | None = None) -> JSONResponse:
        return ok(service.recommender.popular(n, category))

    @app.get("/api/model/info")
    def model_info() -> JSONResponse:
        return ok(service.recommender.info())

    @app.post("/api/retrain")
    def retrain(days: float = 90) -> JSONResponse:
        return ok(service.retraining.start(days), status=202)


def _signals_health(app: FastAPI, service: Service, metrics: Metrics) -> None:
    @app.get("/api/signals/{symbol}")
    def signal(symbol: str) -> JSONResponse:
        return ok(service.signal(symbol))

    @app.get("/api/signals/{symbol}/status")
    def signal_status(symbol: str) -> JSONResponse:
        return ok(service.signal_status(symbol))

    @app.get("/health")
    def health() -> JSONResponse:
        healthy, document = service.health()
        for family, version in document["models"].items():
            metrics.models.labels(family).set(int(version.split(":")[1]) if version else 0)
        return ok(document, status=200 if healthy else 503)

    @app.get("/metrics")
    def prometheus() -> Response:
        for family, watched in (
            ("fraud", service.fraud.watched),
            ("recommender", service.recommender.watched),
        ):
            if watched.version:
                metrics.models.labels(family).set(int(watched.version.split(":")[1]))
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
