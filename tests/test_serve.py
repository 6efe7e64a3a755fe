"""`mlkit serve`: the real server (uvicorn in a subprocess, on a free port) over a small seeded
world on SQLite and PostgreSQL with a Redis of its own; every endpoint over HTTP answers what
the CLI prints for the same input, bad requests get one JSON error, and a Redis that dies
degrades the service to the database, which /health says."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import drop_database, make_database
from serving import serve_candidate_if_kept

from mlkit.toolkit import schema
from mlkit.toolkit.config import load_config
from mlkit.toolkit.db import init_schema, make_engine
from mlkit.toolkit.demo.seed import seed_demo
from mlkit.toolkit.fraud import etl
from mlkit.toolkit.fraud.pipeline import train_fraud_model
from mlkit.toolkit.pricing.history import ARMS
from mlkit.toolkit.registry import promote, resolve

MOMENT = "2026-11-30T23:30:00"
SYMBOL = "BTCUSDT"
START = "from mlkit.commands.main import run; run()"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base: str, method: str, path: str, body=None, raw: bytes | None = None):
    """(status, JSON document or text) of one request."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def start_server(env: dict, *options: str) -> tuple[subprocess.Popen, str]:
    """`mlkit serve` on a free port, once it answers /health."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", START, "serve", "--port", str(port), *options],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mlkit serve exited {process.returncode}: {process.stderr.read()}")
        try:
            call(base, "GET", "/health")
            return process, base
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    process.kill()
    pytest.fail("mlkit serve did not answer within 60 s")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class World:
    url: str
    engine: sa.Engine
    env: dict
    base: str
    redis: subprocess.Popen
    orders: list[dict]
    event_id: int
    product_id: int
    user_id: int


def base_env(tmp_home: Path, url: str, redis_url: str) -> dict:
    import os

    keep = {k: v for k, v in os.environ.items() if not k.startswith(("MLKIT_", "REDIS_", "DB_"))}
    return keep | {
        "MLKIT_DATABASE_URL": url,
        "MLKIT_REDIS_URL": redis_url,
        "MLKIT_NOW": MOMENT,
        "MLKIT_HOME": str(tmp_home),
    }


def train_world(engine, url: str, env: dict) -> None:
    """Fraud (XGBoost, and a logistic regression to move the alias to), the bandit and the
    recommender, each serving whatever the gate says of a world this small."""
    from typer.testing import CliRunner

    from mlkit.commands.main import app

    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        seed_demo(engine, orders=3000, days=30, seed=3)
        etl.run_etl(engine, *etl.resolve_range(engine, None, None))
        config = load_config(database_url=url)
        train_fraud_model(engine, config, kind="logreg", alias="candidate", force=True)
        train_fraud_model(engine, config, kind="xgboost", alias="candidate", force=True)
        candidate = resolve(engine, "fraud@candidate")
        promote(engine, "fraud", candidate.version, "prod", reason="test world")
        runner = CliRunner()
        result = runner.invoke(app, ["train", "mab", "--alias", "prod", "--force"], env=env)
        assert result.exit_code == 0, result.output
        result = runner.invoke(app, ["train", "recommender", "--days", "30"], env=env)
        serve_candidate_if_kept(result, engine, "recommender")


def some_ids(engine) -> tuple[list[dict], int, int, int]:
    o, i = schema.orders, schema.product_interactions
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(o.c.buyer_wallet_id, o.c.event_id).order_by(o.c.order_id).limit(2)
        ).all()
        user_id, product_id = conn.execute(
            sa.select(i.c.user_id, i.c.product_id).order_by(i.c.id).limit(1)
        ).one()
    orders = [
        {
            "buyer_wallet_id": int(r.buyer_wallet_id),
            "event_id": int(r.event_id),
            "price": 80 + n,
            "payment_method": "paypal",
            "created_at": "2026-11-30T12:00:00",
        }
        for n, r in enumerate(rows)
    ]
    return orders, orders[0]["event_id"], int(product_id), int(user_id)


@pytest.fixture(scope="module", params=("sqlite", "postgresql"))
def world(request, tmp_path_factory):
    url = make_database(request.param, tmp_path_factory.mktemp(request.param))
    engine = make_engine(url)
    init_schema(engine)
    redis_port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    env = base_env(tmp_path_factory.mktemp("home"), url, f"redis://127.0.0.1:{redis_port}/0")
    train_world(engine, url, env)
    server, base = start_server(env)
    yield World(url, engine, env, base, redis, *some_ids(engine))
    stop(server)
    stop(redis)
    engine.dispose()
    drop_database(url)


def cli_json(cli, world: World, *args: str):
    result = cli(*args, env=world.env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_fraud_score_is_what_predict_fraud_prints(world, cli):
    order = world.orders[0]
    status, served = call(world.base, "POST", "/api/fraud/score", order)
    assert status == 200, served
    assert served == cli_json(cli, world, "predict", "fraud", json.dumps(order))
    assert served["model_version"] == resolve(world.engine, "fraud@prod").ref
    assert served["decision"] in ("APPROVED", "REQUIRE_2FA", "MANUAL_REVIEW", "BLOCKED")
    assert len(served["top_contributions"]["items"]) == 8

    status, batch = call(world.base, "POST", "/api/fraud/score", world.orders)
    assert status == 200
    assert batch == [served, cli_json(cli, world, "predict", "fraud", json.dumps(world.orders[1]))]


def test_the_python_api_is_the_service(world, monkeypatch):
    from mlkit import Bandit, FraudScorer, Recommender

    for name, value in world.env.items():
        monkeypatch.setenv(name, value)
    config = load_config()
    _, served = call(world.base, "POST", "/api/fraud/score", world.orders[0])
    assert FraudScorer(world.engine, config).score(world.orders[0]) == served
    _, similar = call(world.base, "GET", f"/api/recommendations/product/{world.product_id}?n=3")
    assert Recommender(world.engine, config).similar(world.product_id, 3) == similar
    assert Bandit(world.engine, config).recommend(world.event_id)["strategy"] in ARMS


def test_pricing_recommend_and_reward_are_the_cli_s(world, cli):
    status, served = call(world.base, "GET", f"/api/pricing/recommend?event_id={world.event_id}")
    assert status == 200, served
    printed = cli_json(cli, world, "mab", "recommend", "--event", str(world.event_id), "--json")
    drawn = ("strategy", "price")  # Thompson sampling draws the arm
    assert {k: v for k, v in served.items() if k not in drawn} == {
        k: v for k, v in printed.items() if k not in drawn
    }
    assert served["strategy"] in ARMS and served["trained"] is True

    reward = {"event_id": world.event_id, "arm": "surge_pricing", "reward": 1}
    status, state = call(world.base, "POST", "/api/pricing/reward", reward)
    assert status == 200, state
    after = cli_json(
        cli, world, "mab", "reward", "--event", str(world.event_id), "--arm", "surge_pricing",
        "--reward", "1", "--json",
    )  # fmt: skip
    assert set(after) == set(state)
    assert after["pulls"] == state["pulls"] + 1


def concurrently(base: str, requests: list[tuple]) -> list:
    """The answers of `requests` (method, path, body) sent all at once, in their order."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(lambda r: call(base, *r), requests))


def test_concurrent_requests_are_answered_as_each_alone(world, cli):
    """Orders and pricing picks that arrive together are batched by the worker (one
    statement, one model call): each answer is still what the CLI prints for it alone, a
    refused one is refused alone. Pricing with the deterministic UCB1 policy, so even the
    drawn strategy must agree."""
    e = schema.events
    with world.engine.connect() as conn:
        events = [int(x) for x in conn.execute(sa.select(e.c.event_id).limit(4)).scalars()]
    o = schema.orders
    with world.engine.connect() as conn:
        rows = conn.execute(
            sa.select(o.c.buyer_wallet_id, o.c.event_id).order_by(o.c.order_id.desc()).limit(10)
        ).all()
    orders = [
        {
            "buyer_wallet_id": int(r.buyer_wallet_id),
            "event_id": int(r.event_id),
            "price": 50 + 7 * n,
            "payment_method": ("paypal", "credit_card")[n % 2],
            "created_at": f"2026-11-{20 + n % 9}T1{n % 10}:00:00",
        }
        for n, r in enumerate(rows)
    ]
    unknown = {**orders[0], "event_id": 999_999}
    answers = concurrently(
        world.base,
        [("POST", "/api/fraud/score", order) for order in [*orders, unknown]]
        + [("GET", f"/api/pricing/recommend?event_id={x}&policy=ucb1", None) for x in events]
        + [("GET", "/api/pricing/recommend?event_id=999999&policy=ucb1", None)],
    )
    scored, picks = answers[: len(orders) + 1], answers[len(orders) + 1 :]
    for order, (status, served) in zip(orders, scored, strict=False):
        assert status == 200, served
        assert served == cli_json(cli, world, "predict", "fraud", json.dumps(order))
    assert scored[-1][0] == 400 and "event 999999 does not exist" in scored[-1][1]["error"]
    for event_id, (status, served) in zip(events, picks, strict=False):
        assert status == 200, served
        printed = cli_json(
            cli, world, "mab", "recommend", "--event", str(event_id), "--policy", "ucb1", "--json"
        )
        assert served == printed
    assert picks[-1] == (
        404,
        {"error": "no event 999999", "hint": "check the id in the events table"},
    )


def test_recommendations_are_the_cli_s(world, cli):
    for path, args in (
        (
            f"/api/recommendations/product/{world.product_id}?n=5",
            ("product", str(world.product_id)),
        ),
        (f"/api/recommendations/user/{world.user_id}?n=5", ("user", str(world.user_id))),
        ("/api/recommendations/popular?n=5", ("popular",)),
    ):
        status, served = call(world.base, "GET", path)
        assert status == 200, served
        assert served == cli_json(cli, world, "recommend", *args, "-n", "5", "--json")
        assert len(served["items"]) == 5
    status, info = call(world.base, "GET", "/api/model/info")
    assert status == 200
    assert info["status"] == "trained"
    assert info["model_version"] == resolve(world.engine, "recommender@prod").ref
    assert info["num_products"] > 0


def test_signals_are_the_cli_s(world, cli):
    status, served = call(world.base, "GET", f"/api/signals/{SYMBOL}")
    assert status == 200, served
    printed = cli_json(cli, world, "signal", "run", "--symbol", SYMBOL, "--no-train", "--json")
    # Each untrained signal counts one more warning; everything else is the same document.
    assert printed.pop("prediction_warning_count") == served.pop("prediction_warning_count") + 1
    assert served == printed
    status, served = call(world.base, "GET", f"/api/signals/{SYMBOL}/status")
    assert status == 200
    assert served == cli_json(cli, world, "signal", "status", "--symbol", SYMBOL, "--json")


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "fragment"),
    [
        ("POST", "/api/fraud/score", b"{not json", 400, "not JSON"),
        ("POST", "/api/fraud/score", {"buyer_wallet_id": 1, "event_id": 1}, 400, "price"),
        ("POST", "/api/fraud/score", "an order", 400, "JSON object"),
        ("GET", "/api/pricing/recommend", None, 422, "event_id"),
        ("GET", "/api/pricing/recommend?event_id=-3", None, 400, "event_id"),
        ("GET", "/api/pricing/recommend?event_id=999999", None, 404, "no event 999999"),
        ("POST", "/api/pricing/reward", {"event_id": 1, "arm": "surge_pricing"}, 422, "reward"),
        (
            "POST",
            "/api/pricing/reward",
            {"event_id": 1, "arm": "surge_pricing", "reward": 7},
            400,
            "outside [0, 1]",
        ),
        ("POST", "/api/pricing/reward", {"event_id": 1, "arm": "free", "reward": 1}, 400, "free"),
        ("GET", "/api/recommendations/product/abc", None, 400, "product_id"),
        ("GET", "/api/recommendations/product/1?n=0", None, 400, "-n 0"),
        ("GET", "/api/recommendations/user/1?n=101", None, 400, "-n 101"),
        ("POST", "/api/retrain?days=-1", None, 400, "days"),
        ("GET", "/api/signals/BTC%20USDT", None, 400, "symbol"),
    ],
)
def test_a_bad_request_is_one_json_error(world, method, path, body, status, fragment):
    raw = body if isinstance(body, bytes) else None
    got, document = call(world.base, method, path, None if raw else body, raw=raw)
    assert got == status, document
    assert set(document) == {"error", "hint"}
    assert fragment in document["error"]


def test_retrain_is_a_background_run(world):
    status, started = call(world.base, "POST", "/api/retrain?days=30")
    assert status == 202, started
    runs = schema.training_runs
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with world.engine.connect() as conn:
            row = conn.execute(
                sa.select(runs.c.model_name, runs.c.status).where(
                    runs.c.run_id == started["run_id"]
                )
            ).one()
        if row.status != "running":
            break
        time.sleep(0.2)
    assert row.model_name == "recommender"
    assert row.status in ("ok", "rejected")


def test_health_metrics_and_an_alias_move(world):
    status, health = call(world.base, "GET", "/health")
    assert status == 200, health
    prod = resolve(world.engine, "fraud@prod")
    assert health["status"] == "healthy" and health["model_version"] == prod.ref
    assert health["redis"] == "ok" and health["database"] == "ok"

    logreg = resolve(world.engine, "fraud:1")
    promote(world.engine, "fraud", logreg.version, "prod", reason="test: the alias moves")
    try:
        time.sleep(1.2)  # the alias is checked at most once a second
        _, served = call(world.base, "POST", "/api/fraud/score", world.orders[0])
        assert served["model_version"] == logreg.ref
    finally:
        promote(world.engine, "fraud", prod.version, "prod", reason="test: back")
        time.sleep(1.2)

    status, text = call(world.base, "GET", "/metrics")
    assert status == 200
    assert 'mlkit_requests_total{method="POST",route="/api/fraud/score",status="200"}' in text
    assert "mlkit_fraud_decisions_total{decision=" in text
    assert 'mlkit_request_seconds_bucket{le="0.005",route="/api/fraud/score"}' in text
    assert 'mlkit_model_version{family="fraud"}' in text


def test_workers_share_one_metrics_page(world):  # not `slow`: that would reorder the worlds
    server, base = start_server(world.env, "--workers", "2")
    try:
        path = f"/api/pricing/recommend?event_id={world.event_id}"
        assert all(call(base, "GET", path)[0] == 200 for _ in range(30))
        _, text = call(base, "GET", "/metrics")
    finally:
        stop(server)
    line = 'mlkit_requests_total{method="GET",route="/api/pricing/recommend",status="200"}'
    counted = [float(row.split()[-1]) for row in text.splitlines() if row.startswith(line)]
    assert counted == [30.0]  # whichever worker answered each request


def test_redis_dying_degrades_to_the_database(world, cli):
    """Last in the module: the world's own Redis is stopped."""
    stop(world.redis)
    status, health = call(world.base, "GET", "/health")
    assert status == 200, health
    assert health["status"] == "degraded" and health["redis"] == "unreachable"
    assert "redis unreachable" in health["degraded"][0]

    status, served = call(world.base, "POST", "/api/fraud/score", world.orders[0])
    assert status == 200 and served["feature_source"] == "database"
    assert served == cli_json(cli, world, "predict", "fraud", json.dumps(world.orders[0]))
    status, price = call(world.base, "GET", f"/api/pricing/recommend?event_id={world.event_id}")
    assert status == 200 and price["source"] == "database"


@pytest.mark.slow
def test_health_is_503_naming_what_is_missing(tmp_path):
    empty = f"sqlite:///{tmp_path}/empty.db"
    engine = make_engine(empty)
    init_schema(engine)
    engine.dispose()
    for url, missing in (
        (empty, "no prod fraud model"),
        ("postgresql+psycopg2://nobody:secret@127.0.0.1:1/x", "database unreachable"),
    ):
        server, base = start_server(base_env(tmp_path / "home", url, ""))
        try:
            status, health = call(base, "GET", "/health")
            assert status == 503, health
            assert health["status"] == "unhealthy" and missing in health["missing"]
            status, error = call(base, "GET", "/api/recommendations/popular")
            assert status == 503 and "secret" not in json.dumps(error)
        finally:
            stop(server)
