"""Redis is a cache of the bandit's database state: never older, never another database's."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from conftest import env_for, redis_of

from mlkit.toolkit import schema
from mlkit.toolkit.db import init_schema, make_engine
from mlkit.toolkit.demo.seed import seed_demo
from mlkit.toolkit.pricing.history import ARMS
from mlkit.toolkit.pricing.state import KEY_PREFIX, ArmState, BanditStore

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
DOWN_MESSAGE = "Redis unreachable, it will be rewritten on the next read"


@pytest.fixture(scope="module")
def world(engine):
    # Enough offers for the event-type bandit to pass its promotion gate.
    seed_demo(engine, orders=12000, days=30, seed=11, families=("pricing",))
    return engine


@pytest.fixture
def event_id(world) -> int:
    with world.connect() as conn:
        return conn.execute(sa.select(schema.events.c.event_id).limit(1)).scalar_one()


def surge_heavy() -> dict[str, ArmState]:
    """A state Redis should forget: a million pulls per arm, surge_pricing far ahead."""
    return {
        arm: ArmState(arm, pulls=1_000_000, reward_sum=900_000.0 if arm == "surge_pricing" else 1e5)
        for arm in ARMS
    }


def counts(states: dict[str, ArmState]) -> dict[str, tuple[int, float]]:
    return {arm: (s.pulls, s.reward_sum) for arm, s in states.items()}


def cached(redis_url: str, arm: str) -> dict:
    return json.loads(redis_of(redis_url).get(KEY_PREFIX + arm))


def assert_serves_the_database_then_takes_a_reward(world, redis_url, cli, event_id):
    """Redis back: stats are the database's, then Redis's; a reward lands in both exactly."""
    env = env_for(world, redis_url)
    database = BanditStore(world).read_database()
    first = cli("mab", "stats", "--json", env=env)
    assert first.exit_code == 0, first.output
    served = json.loads(first.stdout)
    assert served["source"] == "database"
    assert {a: s["pulls"] for a, s in served["arms"].items()} == {
        a: s.pulls for a, s in database.items()
    }
    best = max(database, key=lambda a: database[a].mean) if served["total_pulls"] else None
    assert served["best_arm"] == best
    again = json.loads(cli("mab", "stats", "--json", env=env).stdout)
    assert again["source"] == "redis" and again["arms"] == served["arms"]

    out = cli(*f"mab reward --event {event_id} --arm early_bird --reward 1 --json".split(), env=env)
    assert out.exit_code == 0, out.output
    after = BanditStore(world).read_database()["early_bird"]
    assert after.pulls == database["early_bird"].pulls + 1
    assert after.reward_sum == database["early_bird"].reward_sum + 1.0
    value = cached(redis_url, "early_bird")
    assert value["pulls"] == after.pulls and value["reward_sum"] == after.reward_sum
    assert value["alpha"] == after.alpha and value["beta"] == after.beta


def test_train_while_redis_is_down_is_never_hidden_by_the_old_redis_state(
    world, redis_url, cli, event_id
):
    BanditStore(world, redis_of(redis_url)).save(surge_heavy())
    assert cached(redis_url, "surge_pricing")["pulls"] == 1_000_000
    down = env_for(world, UNREACHABLE_REDIS)
    trained = cli("train", "mab", "--since", "1000d", "--force", "--json", env=down)
    assert trained.exit_code == 0, trained.output
    assert DOWN_MESSAGE in trained.stderr
    assert cached(redis_url, "surge_pricing")["pulls"] == 1_000_000  # Redis missed it
    database = BanditStore(world).read_database()
    assert sum(s.pulls for s in database.values()) == json.loads(trained.stdout)["offers"]
    assert cached(redis_url, "surge_pricing")["pulls"] == 1_000_000  # still Redis's old value
    assert_serves_the_database_then_takes_a_reward(world, redis_url, cli, event_id)


def test_reset_while_redis_is_down_says_so_and_redis_is_rewritten(world, redis_url, cli, event_id):
    BanditStore(world, redis_of(redis_url)).save(surge_heavy())
    out = cli("mab", "reset", "--yes", env=env_for(world, UNREACHABLE_REDIS))
    assert out.exit_code == 0, out.output
    assert f"bandit state deleted from the database; {DOWN_MESSAGE}" in out.stderr
    assert "deleted from the database and Redis" not in out.stderr
    assert cached(redis_url, "surge_pricing")["pulls"] == 1_000_000  # Redis missed it
    assert_serves_the_database_then_takes_a_reward(world, redis_url, cli, event_id)
    stats = json.loads(cli("mab", "stats", "--json", env=env_for(world, redis_url)).stdout)
    assert stats["total_pulls"] == 1 and stats["best_arm"] == "early_bird"


def test_a_reward_redis_missed_is_not_hidden_by_it(world, redis_url, cli, event_id):
    store = BanditStore(world, redis_of(redis_url))
    store.save(surge_heavy())
    down = env_for(world, UNREACHABLE_REDIS)
    out = cli(*f"mab reward --event {event_id} --arm baseline --reward 1".split(), env=down)
    assert out.exit_code == 0, out.output
    states, source = store.read()
    assert source == "database" and states["baseline"].pulls == 1_000_001
    assert cached(redis_url, "baseline")["pulls"] == 1_000_001
    again, source = store.read()
    assert source == "redis" and counts(again) == counts(states)


def test_a_value_without_a_generation_is_rewritten_from_the_database(world, redis_url):
    store = BanditStore(world, redis_of(redis_url))
    store.save(surge_heavy())
    unstamped = ArmState("baseline", pulls=7, reward_sum=7.0).as_dict()  # the seeds' format
    redis_of(redis_url).set(KEY_PREFIX + "baseline", json.dumps(unstamped))
    states, source = store.read()
    assert source == "database" and states["baseline"].pulls == 1_000_000
    assert cached(redis_url, "baseline")["pulls"] == 1_000_000


def test_two_databases_on_one_redis_index_never_see_each_other(world, redis_url, tmp_path):
    client = redis_of(redis_url)
    ours = BanditStore(world, client)
    ours.save(surge_heavy())
    assert ours.read()[1] == "redis"

    other_engine = make_engine(f"sqlite:///{tmp_path}/other.db")
    init_schema(other_engine)
    other = BanditStore(other_engine, client)
    states, source = other.read()  # an empty database: no pulls, whatever Redis holds
    assert source == "database" and all(s.pulls == 0 for s in states.values())
    other.record("ml_pricing", 1.0)
    states, source = other.read()
    assert source == "redis" and counts(states) == counts(other.read_database())
    assert states["ml_pricing"].pulls == 1

    states, source = ours.read()
    assert source == "database" and counts(states) == counts(ours.read_database())
    assert states["surge_pricing"].pulls == 1_000_000
    assert other.read()[0]["ml_pricing"].pulls == 1
    assert other.stamp().database_id != ours.stamp().database_id
    other_engine.dispose()


def test_db_init_adds_the_generation_table_to_an_older_database(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/older.db")
    init_schema(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE bandit_generations"))
    assert "bandit_generations" in init_schema(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE bandit_generations"))
    # A store on a database nobody re-initialised adds it itself.
    assert BanditStore(engine).stamp().generation == 1
    engine.dispose()


def test_a_reward_for_an_event_counts_for_its_event_type_too(world, redis_url, cli, event_id):
    with world.connect() as conn:
        event_type = conn.execute(
            sa.select(schema.events.c.event_type).where(schema.events.c.event_id == event_id)
        ).scalar_one()
    store = BanditStore(world, redis_of(redis_url))
    store.save(surge_heavy(), {event_type: surge_heavy()})
    out = cli(
        *f"mab reward --event {event_id} --arm baseline --reward 1".split(),
        env=env_for(world, redis_url),
    )
    assert out.exit_code == 0, out.output
    for context in (None, event_type):
        assert store.read_database(context)["baseline"].pulls == 1_000_001
        states, source = store.read(context)
        assert source == "redis" and states["baseline"].pulls == 1_000_001
    key = f"{KEY_PREFIX}event_type={event_type}:baseline"
    assert json.loads(redis_of(redis_url).get(key))["pulls"] == 1_000_001
    assert store.contexts() == [event_type]
    pick = cli(
        "mab", "recommend", "--event", str(event_id), "--json", env=env_for(world, redis_url)
    )
    assert pick.exit_code == 0, pick.output
    assert json.loads(pick.stdout)["context"] == event_type
    assert store.reset() and redis_of(redis_url).keys(KEY_PREFIX + "*") == []
    assert store.contexts() == []
