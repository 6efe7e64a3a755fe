"""Online features (Redis or database) agree with the batch path on the same orders."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from mlkit.toolkit import schema
from mlkit.toolkit.demo.seed import seed_demo
from mlkit.toolkit.errors import MlkitError
from mlkit.toolkit.fraud import etl
from mlkit.toolkit.fraud.columns import NUMERIC_FEATURES
from mlkit.toolkit.fraud.online import ORDER_COLUMNS, WALLET_KEY, materialize, online_features


@pytest.fixture(scope="module")
def world(engine):
    seed_demo(
        engine, orders=2500, days=20, seed=13, families=("fraud",), start=datetime(2026, 1, 1)
    )
    etl.run_etl(engine, None, datetime(2026, 3, 1))
    with engine.connect() as conn:
        orders = pd.read_sql(sa.select(schema.orders), conn)
        stored = pd.read_sql(sa.select(schema.fraud_features), conn).set_index("order_id")
    busy = orders.groupby("buyer_wallet_id")["order_id"].transform("count") >= 3
    picks = pd.concat(
        [
            orders[busy].sample(15, random_state=4),
            orders.sample(10, random_state=5),
            orders[orders.is_resale.astype(bool)].head(5),
        ]
    )
    return picks, stored


def assert_same(online: dict, stored: pd.Series, order_id: int) -> None:
    for name in NUMERIC_FEATURES:
        a, b = online[name], stored[name]
        assert (np.isnan(a) and pd.isna(b)) or a == pytest.approx(b, rel=1e-12), (order_id, name)


def as_request(order) -> dict:
    request = {name: getattr(order, name) for name in ORDER_COLUMNS}
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in request.items()}


def test_online_from_the_database_matches_batch(engine, world):
    picks, stored = world
    for order in picks.itertuples():
        features, source = online_features(engine, as_request(order))
        assert source == "database"
        assert_same(features, stored.loc[order.order_id], order.order_id)


def test_online_from_redis_matches_batch(engine, world, redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    assert materialize(engine, client, ttl_seconds=300) > 0
    picks, stored = world
    wallet = int(picks.iloc[0].buyer_wallet_id)
    assert 0 < client.ttl(WALLET_KEY.format(wallet)) <= 300
    for order in picks.itertuples():
        features, source = online_features(engine, as_request(order), client=client)
        assert source == "redis"
        assert_same(features, stored.loc[order.order_id], order.order_id)


def test_a_new_order_without_an_id_is_scored_from_its_history(engine, world):
    picks, _ = world
    order = as_request(picks.iloc[0:1].itertuples().__next__())
    order["order_id"] = None
    order["created_at"] = datetime(2026, 2, 1)
    features, _ = online_features(engine, order)
    assert features["order_id"] is None
    assert features["wallet_age_days"] > 0


def test_materialize_command_and_missing_redis(cli, engine, world, redis_url):
    url = engine.url.render_as_string(hide_password=False)
    result = cli("--database", url, "--redis", redis_url, "features", "materialize", "--json")
    assert result.exit_code == 0, result.output
    assert '"wallets"' in result.stdout
    down = cli("--database", url, "--redis", "redis://127.0.0.1:1/0", "features", "materialize")
    assert down.exit_code == 1
    assert down.stderr.startswith("error: cannot reach Redis at redis://127.0.0.1:1/0")


def test_an_offset_is_converted_to_utc_not_dropped(engine, world):
    picks, _ = world
    order = as_request(picks.iloc[0:1].itertuples().__next__())
    order["order_id"] = None
    utc, _ = online_features(engine, {**order, "created_at": datetime(2026, 2, 1, 7)})
    shifted, _ = online_features(engine, {**order, "created_at": "2026-02-01T12:00:00+05:00"})
    assert shifted["feature_ts"] == utc["feature_ts"] == datetime(2026, 2, 1, 7)
    assert shifted["wallet_age_days"] == utc["wallet_age_days"]


def test_one_statement_per_order_on_either_path(engine, world, redis_url):
    """The issue's bound is two queries per order: the database path reads the wallet's
    history and the event's facts in one statement, the Redis path the event's alone (on
    PostgreSQL a prepared one, PREPAREd by a connection's first order)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    materialize(engine, client, ttl_seconds=300, full=True)
    picks, _ = world
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_):
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        for cache in (None, client):
            online_features(engine, as_request(picks.iloc[0]), client=cache)
            for order in picks.head(5).itertuples():
                statements.clear()
                _, source = online_features(engine, as_request(order), client=cache)
                assert source == ("redis" if cache else "database")
                assert len(statements) == 1, (source, statements)
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


@pytest.fixture(scope="module")
def scorer(engine, world):
    """An XGBoost version of this world, served by a FraudScorer without Redis."""
    from mlkit.toolkit.config import load_config
    from mlkit.toolkit.fraud.pipeline import train_fraud_model
    from mlkit.toolkit.serving import FraudScorer, RedisLink

    config = load_config(database_url=engine.url.render_as_string(hide_password=False))
    train_fraud_model(engine, config, kind="xgboost", alias="candidate", force=True)
    return FraudScorer(engine, config, ref="fraud@candidate", redis=RedisLink(None))


EMPTY_EVENT = 900_001  # an event of no capacity: its popularity divides by zero


def batch_of(picks) -> list:
    """The picked orders, and what a batch must also get right: the same wallet at other
    moments (before its history, within its hour), a new order without an id, an unknown
    event, an order whose features fail (a bug's 500), a bad field and a non-object, each
    refused alone."""
    orders = [as_request(order) for order in picks.itertuples()]
    first = dict(orders[0])
    orders += [
        {**first, "order_id": None, "created_at": datetime(2026, 1, 1, 0, 5)},
        {**first, "order_id": None, "created_at": first["created_at"] + pd.Timedelta("20min")},
        {**first, "order_id": None, "created_at": datetime(2026, 2, 15)},
        {**first, "order_id": None, "event_id": EMPTY_EVENT},
        {**first, "order_id": None, "event_id": 999_999},
        {**first, "price": -5},
        "not an order",
    ]
    for order in orders:
        if isinstance(order, dict) and hasattr(order["created_at"], "isoformat"):
            order["created_at"] = order["created_at"].isoformat()
    return orders


def refused(exc: Exception) -> tuple[str, str]:
    return ("error", exc.message if isinstance(exc, MlkitError) else repr(exc))


def one_at_a_time(scorer, orders) -> list:
    results = []
    for order in orders:
        try:
            results.append(scorer.score(order))
        except Exception as exc:
            results.append(refused(exc))
    return results


def as_compared(results) -> list:
    return [refused(r) if isinstance(r, Exception) else r for r in results]


@pytest.fixture
def empty_event(engine):
    e = schema.events
    when = datetime(2026, 1, 1)
    row = {"event_id": EMPTY_EVENT, "name": "no seats", "event_type": "theatre"}
    times = {"sale_start": when, "event_date": when, "created_at": when}
    with engine.begin() as conn:
        conn.execute(e.insert().values(**row, **times, base_price=10, capacity=0))
    yield EMPTY_EVENT
    with engine.begin() as conn:
        conn.execute(e.delete().where(e.c.event_id == EMPTY_EVENT))


@pytest.mark.parametrize("cache", ["database", "redis", "both"])
def test_a_batch_scores_each_order_as_it_alone_is_scored(
    engine, world, scorer, redis_url, cache, empty_event
):
    """Micro-batching (`FraudScorer.score_batch`: one MGET, one statement, one model call)
    gives every order exactly what scoring it alone gives: score, decision, features,
    source and contributions; a refused order is refused alone, with the same error."""
    import redis

    from mlkit.toolkit.serving import RedisLink

    picks, _ = world
    client = redis.Redis.from_url(redis_url)
    scorer.redis = RedisLink(None)
    if cache != "database":
        materialize(engine, client, ttl_seconds=300, full=True)
        scorer.redis = RedisLink(redis_url)
        if cache == "both":  # half the wallets from Redis, half from the database
            for order in picks.iloc[::2].itertuples():
                client.delete(WALLET_KEY.format(int(order.buyer_wallet_id)))
    try:
        orders = batch_of(picks)
        alone = one_at_a_time(scorer, orders)
        together = as_compared(scorer.score_batch(orders))
    finally:
        scorer.redis = RedisLink(None)
    assert together == alone
    sources = {r["feature_source"] for r in alone if isinstance(r, dict)}
    assert (
        sources
        == {"database": {"database"}, "redis": {"redis"}, "both": {"redis", "database"}}[cache]
    )
    failed = together[-4:]
    assert [r[0] for r in failed] == ["error"] * 4
    assert "ZeroDivisionError" in failed[0][1]
    assert "event 999999 does not exist" in failed[1][1]


def test_a_batch_is_one_statement(engine, world, scorer):
    """However many orders, wallets and events: one SQL statement for the batch (on
    PostgreSQL an EXECUTE, after a PREPARE once per pooled connection)."""
    picks, _ = world
    orders = [as_request(order) for order in picks.itertuples()]
    for order in orders:
        order["created_at"] = order["created_at"].isoformat()
    scorer.watched.get()  # the alias check, at most once a second, is not the batch's
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_):
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        scorer.watched.get()
        statements.clear()
        assert len(scorer.score_batch(orders)) == len(orders)
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    executed = [s for s in statements if not s.startswith("PREPARE ")]
    assert len(executed) == 1, statements
