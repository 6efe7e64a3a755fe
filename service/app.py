"""The web app of `mlkit serve`: routes mapped onto `toolkit.serving.Service`, one JSON error
for a bad request, Prometheus metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
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
        self.batches = Histogram(
            "mlkit_batch_requests",
            "Requests answered together, per batch (micro-batching)",
            ["route"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
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


class Batcher:
    """Micro-batching within one worker: the calls that arrive while a batch is being worked
    on wait and go together as the next batch, `work(items)` on a thread, which answers each
    item with its result or the exception that refuses it alone. A lone call goes at once;
    under load a batch is what arrived during the previous one, so every call waits at most
    about two batches, and the per-call costs (a thread hop, a statement, a model call) are
    paid once per batch."""

    def __init__(
        self, work: Callable[[list], list], max_items: int = 256, sizes: Histogram | None = None
    ):
        self.work = work
        self.max_items = max_items
        self.sizes = sizes  # observes each batch's size
        self.waiting: list[tuple[Any, asyncio.Future]] = []
        self.running: asyncio.Task | None = None

    async def submit(self, item: Any) -> Any:
        answer = asyncio.get_running_loop().create_future()
        self.waiting.append((item, answer))
        if self.running is None:
            self.running = asyncio.get_running_loop().create_task(self._drain())
        return await answer

    async def _drain(self) -> None:
        try:
            while self.waiting:
                batch = self.waiting[: self.max_items]
                del self.waiting[: self.max_items]
                if self.sizes is not None:
                    self.sizes.observe(len(batch))
                try:
                    results = await anyio.to_thread.run_sync(self.work, [i for i, _ in batch])
                except Exception as exc:  # the whole batch failed: each call hears why
                    results = [exc] * len(batch)
                for (_, answer), result in zip(batch, results, strict=True):
                    if answer.done():  # its client went away
                        continue
                    if isinstance(result, BaseException):
                        answer.set_exception(result)
                    else:
                        answer.set_result(result)
        finally:
            self.running = None


MAX_BODY_BYTES = 16 * 1024 * 1024  # a batch of orders is a few hundred bytes an order


class HotRoutes:
    """The two routes a platform calls per order and per event, `POST /api/fraud/score` and
    `GET /api/pricing/recommend`, answered in plain ASGI ahead of the framework: its
    middleware, routing and request objects cost a request more CPU than scoring it in a
    batch does. Same answers, same errors (`refusal`) and same metrics as the app's routes;
    concurrent orders are scored together (`Batcher`)."""

    def __init__(self, service: Service, metrics: Metrics):
        self.service = service
        self.metrics = metrics
        self.orders = Batcher(
            service.fraud.score_batch, sizes=metrics.batches.labels("/api/fraud/score")
        )
        self.picks = Batcher(
            service.bandit.recommend_batch, sizes=metrics.batches.labels("/api/pricing/recommend")
        )
        self.routes = {
            ("POST", "/api/fraud/score"): self.fraud_score,
            ("GET", "/api/pricing/recommend"): self.pricing_recommend,
        }

    def route(self, scope) -> Callable | None:
        if scope["type"] != "http":
            return None
        return self.routes.get((scope["method"], scope["path"]))

    async def serve(self, handler: Callable, scope, receive, send) -> None:
        started = time.perf_counter()
        try:
            status, document = await handler(scope, receive)
        except Exception as exc:
            status, document = refusal(exc)
            if status == 500:
                logging.getLogger("uvicorn.error").exception(
                    "%s %s", scope["method"], scope["path"]
                )
        body = json.dumps(
            json_safe(document), ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode()
        headers = [(b"content-length", str(len(body)).encode()), JSON_TYPE]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self.metrics.latency.labels(scope["path"]).observe(time.perf_counter() - started)
        self.metrics.requests.labels(scope["method"], scope["path"], str(status)).inc()

    async def fraud_score(self, _scope, receive) -> tuple[int, Any]:
        order = parse_json(await read_body(receive))
        if isinstance(order, list):
            results = await anyio.to_thread.run_sync(self.service.fraud.score_many, order)
        else:
            results = [await self.orders.submit(order)]
        for result in results:
            self.metrics.decisions.labels(result["decision"]).inc()
        return 200, results if isinstance(order, list) else results[0]

    async def pricing_recommend(self, scope, _receive) -> tuple[int, Any]:
        from urllib.parse import parse_qsl

        # The last of repeated parameters, blanks kept: as the framework reads a query.
        query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        if "event_id" not in query:
            return 422, {"error": "query.event_id: Field required", "hint": "see README: Serving"}
        return 200, await self.picks.submit((query["event_id"], query.get("policy")))


JSON_TYPE = (b"content-type", b"application/json")


async def read_body(receive) -> bytes:
    """The request's body, refused beyond MAX_BODY_BYTES."""
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise MlkitError(
                f"the body is over {MAX_BODY_BYTES // 2**20} MB", hint="send fewer orders a request"
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    """The body's JSON document; anything else is one 400 error."""
    try:
        return json.loads(body)
    except ValueError as exc:
        raise MlkitError(f"the body is not JSON: {exc}", hint="send one JSON document") from None


class App(FastAPI):
    """The framework's app, with `hot` routes answered before its middleware."""

    hot: HotRoutes | None = None

    async def __call__(self, scope, receive, send) -> None:
        handler = self.hot.route(scope) if self.hot is not None else None
        if handler is not None:
            await self.hot.serve(handler, scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def error(status: int, message: str, hint: str | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "hint": hint}, status_code=status)


def refusal(exc: Exception) -> tuple[int, dict]:
    """The status and the one JSON error of a request that raised `exc`: what the app's
    exception handlers answer, for the hot routes too."""
    import sqlalchemy as sa

    if isinstance(exc, MlkitError):
        return status_of(exc), {"error": exc.message, "hint": exc.hint}
    if isinstance(exc, sa.exc.DBAPIError):
        from mlkit.toolkit.db import explain_db_error

        explained = explain_db_error(exc)
        return 503, {"error": explained.message, "hint": explained.hint}
    # A bug is still one JSON error (the server's log has its traceback), never a password.
    from mlkit.toolkit.errors import explain_unexpected

    return 500, {"error": explain_unexpected(exc).message, "hint": "see the server's log"}


def _errors(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def malformed(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
        return error(
            422, f"{where}: {first.get('msg', 'malformed request')}", "see README: Serving"
        )

    import sqlalchemy as sa

    async def refused(_: Request, exc: Exception) -> JSONResponse:
        status, document = refusal(exc)
        return JSONResponse(document, status_code=status)

    # Exception's handler runs in Starlette's outermost middleware, which then re-raises
    # for the server to log the traceback; the expected refusals are answered quietly.
    for kind in (MlkitError, sa.exc.DBAPIError, Exception):
        app.exception_handler(kind)(refused)


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
    """The request's JSON document; anything else is one 400 error."""
    return parse_json(await request.body())


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

    app = App(title="mlkit", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.service = service
    app.hot = HotRoutes(service, metrics)
    _errors(app)
    _reward(app, service)
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


def _reward(app: FastAPI, service: Service) -> None:
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
