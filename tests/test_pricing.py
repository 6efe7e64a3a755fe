"""The pricing bandit: history, rewards, exact concurrent updates, Redis loss, commands."""

from __future__ import annotations

import json
import multiprocessing
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import env_for, redis_of
from too_little_data import refused_then_skipped

from mlkit.toolkit import schema
from mlkit.toolkit.config import load_config
from mlkit.toolkit.demo.seed import seed_demo
from mlkit.toolkit.pricing.history import ARMS, infer_arms, load_history, reward_scale
from mlkit.toolkit.pricing.policies import choose, simulate
from mlkit.toolkit.pricing.posterior import beta_quantile, posterior_interval
from mlkit.toolkit.pricing.state import KEY_PREFIX, BanditStore
from mlkit.toolkit.registry import resolve
from mlkit.toolkit.train_all import default_plan, train_all

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture(scope="module")
def world(engine):
    # Enough offers (about 3,200 in the replayed fifth) for the gate to see the event-type
    # bandit beat pricing at random.
    seed_demo(engine, orders=16000, days=50, seed=5, families=("pricing",))
    return engine


def test_strategy_from_price_over_base():
    price = np.array([100.0, 111.0, 110.0, 94.0, 95.0, 100.004, 104.0])
    base = np.full(len(price), 100.0)
    arms = [ARMS[i] for i in infer_arms(price, base, surge=1.1, early=0.95)]
    assert arms == [
        "baseline",
        "surge_pricing",
        "ml_pricing",
        "early_bird",
        "ml_pricing",
        "baseline",
        "ml_pricing",
    ]


def test_history_infers_the_arm_the_demo_used_and_popularity_before_the_order(world):
    with world.connect() as conn:
        frame = load_history(conn, None, surge=1.1, early=0.95)
        truth = pd.read_sql(
            sa.select(schema.demo_truth_orders.c.order_id, schema.demo_truth_orders.c.pricing_arm),
            conn,
        )
        orders = pd.read_sql(
            sa.select(schema.orders).where(schema.orders.c.is_resale == sa.false()), conn
        )
    joined = frame.merge(truth, on="order_id")
    assert len(joined) == len(frame) > 1000
    assert (joined["arm"].map(lambda i: ARMS[i]) == joined["pricing_arm"]).all()
    # popularity: completed primary sales of the event strictly before the order
    orders = orders.sort_values(["created_at", "order_id"])
    done = (orders["status"] == "COMPLETED").astype(int)
    orders["sold_before"] = done.groupby(orders["event_id"]).cumsum() - done
    expected = frame[["order_id"]].merge(orders[["order_id", "sold_before"]], on="order_id")
    assert (frame["sold_before"].to_numpy() == expected["sold_before"].to_numpy()).all()
    assert set(frame["status"]) <= {"COMPLETED", "FAILED", "REFUNDED"}
    assert frame["created_at"].is_monotonic_increasing
    assert ((frame["combined"] > 0) == (frame["status"] == "COMPLETED")).all()


def _reward_worker(url: str, redis_url: str, rewards: list[float], start) -> None:
    from mlkit.toolkit.cache import redis_client
    from mlkit.toolkit.db import make_engine

    store = BanditStore(make_engine(url), redis_client(redis_url))
    start.wait()
    for r in rewards:
        store.record("surge_pricing", r)


@pytest.mark.slow
def test_concurrent_rewards_add_up_exactly_in_redis_and_database(world, redis_url):
    store = BanditStore(world, redis_of(redis_url))
    store.reset()
    before = store.read_database()["surge_pricing"]
    url = world.url.render_as_string(hide_password=False)
    context = multiprocessing.get_context("fork")  # children open their own connections
    start = context.Event()
    # 8 x 1,000 on PostgreSQL, the platform's database; fewer elsewhere to keep the suite
    # fast. Rewards are exact binary fractions, so "exact" means exact.
    updates = 1000 if world.dialect.name == "postgresql" else 250
    per_process = [[(i * 7 + p) % 9 / 8 for i in range(updates)] for p in range(8)]
    workers = [
        context.Process(target=_reward_worker, args=(url, redis_url, rewards, start))
        for rewards in per_process
    ]
    for w in workers:
        w.start()
    start.set()
    for w in workers:
        w.join(180)
        assert w.exitcode == 0
    expected_sum = sum(map(sum, per_process))
    db = store.read_database()["surge_pricing"]
    assert db.pulls - before.pulls == 8 * updates
    assert db.reward_sum - before.reward_sum == expected_sum
    cached = json.loads(redis_of(redis_url).get(KEY_PREFIX + "surge_pricing"))
    assert cached["pulls"] == db.pulls
    assert cached["reward_sum"] == db.reward_sum
    assert cached["alpha"] == db.alpha and cached["beta"] == db.beta


def test_train_then_flush_redis_and_stats_come_back_from_the_database(world, redis_url, cli):
    env = env_for(world, redis_url)
    trained = cli("train", "mab", "--since", "1000d", "--json", env=env)
    assert trained.exit_code == 0, trained.output
    result = json.loads(trained.stdout)
    assert result["model"] == "pricing" and result["alias"] == "prod"
    assert sum(a["pulls"] for a in result["arms"].values()) == result["offers"]
    metrics = result["metrics"]
    assert metrics["replay_days"] > 3 and metrics["replay_matched"] > 0
    assert metrics["best_arm"] in ARMS
    assert metrics["gate"]["passed"] and set(metrics["baselines"]) == {
        "uniform_random",
        "logged_policy",
        "best_global_arm",
    }
    assert result["context"] == "event_type"
    context_keys = redis_of(redis_url).keys(KEY_PREFIX + "event_type=*")
    assert len(context_keys) == 5 * len(ARMS)  # five event types

    live = json.loads(cli("mab", "stats", "--json", env=env).stdout)
    assert live["source"] == "redis"
    assert {a: s["pulls"] for a, s in live["arms"].items()} == {
        a: s["pulls"] for a, s in result["arms"].items()
    }
    redis_of(redis_url).flushdb()
    reloaded = cli("mab", "stats", "--json", env=env)
    assert reloaded.exit_code == 0, reloaded.output
    again = json.loads(reloaded.stdout)
    assert again["source"] == "database"
    assert again["arms"] == live["arms"]
    assert (
        json.loads(redis_of(redis_url).get(KEY_PREFIX + "baseline"))["pulls"]
        == (live["arms"]["baseline"]["pulls"])
    )

    status = json.loads(cli("status", "--json", env=env).stdout)
    assert status["pricing"]["is_trained"] is True
    assert status["pricing"]["bandit"]["best_arm"] == live["best_arm"]


def test_recommend_prices_within_the_chosen_strategy(world, redis_url, cli):
    env = env_for(world, redis_url)
    with world.connect() as conn:
        event_id, base = conn.execute(
            sa.select(schema.events.c.event_id, schema.events.c.base_price).limit(1)
        ).one()
    config = load_config(env={"MLKIT_HOME": "."})
    seen = set()
    for policy in ("thompson", "ucb1", "egreedy"):
        out = cli(
            "mab", "recommend", "--event", str(event_id), "--policy", policy, "--json", env=env
        )
        assert out.exit_code == 0, out.output
        pick = json.loads(out.stdout)
        seen.add(pick["strategy"])
        ratio = pick["price"] / float(base)
        arm = ARMS[
            infer_arms(
                np.array([pick["price"]]),
                np.array([float(base)]),
                config.get("pricing.surge_ratio"),
                config.get("pricing.early_bird_ratio"),
            )[0]
        ]
        assert arm == pick["strategy"], (ratio, pick)
    assert seen


def test_bad_input_changes_nothing(world, redis_url, cli):
    env = env_for(world, redis_url)
    store = BanditStore(world, redis_of(redis_url))
    before = store.read_database()
    with world.connect() as conn:
        event_id = conn.execute(sa.select(schema.events.c.event_id).limit(1)).scalar_one()
    cases = [
        (["--event", str(event_id), "--arm", "discount", "--reward", "1"], "unknown arm"),
        (["--event", "99999999", "--arm", "baseline", "--reward", "1"], "no event"),
        (["--event", str(event_id), "--arm", "baseline", "--reward", "1.5"], "outside [0, 1]"),
        (["--event", str(event_id), "--arm", "baseline", "--reward", "nan"], "outside [0, 1]"),
    ]
    for args, message in cases:
        out = cli("mab", "reward", *args, env=env)
        assert out.exit_code == 1 and message in out.stderr, out.output
        assert "Traceback" not in out.output
    redis_of(redis_url).set(KEY_PREFIX + "baseline", b"{not json")
    out = cli(
        "mab", "reward", "--event", str(event_id), "--arm", "baseline", "--reward", "1", env=env
    )
    assert out.exit_code == 1 and "mab:baseline is not a bandit state" in out.stderr
    stats = cli("mab", "stats", env=env)
    assert stats.exit_code == 1 and "not a bandit state" in stats.stderr
    assert store.read_database() == before


def test_without_redis_everything_runs_on_the_database_with_a_warning(world, cli):
    env = env_for(world, UNREACHABLE_REDIS)
    before = BanditStore(world).read_database()["ml_pricing"]
    with world.connect() as conn:
        event_id = conn.execute(sa.select(schema.events.c.event_id).limit(1)).scalar_one()
    out = cli(
        *f"mab reward --event {event_id} --arm ml_pricing --reward 0.5 --json".split(), env=env
    )
    assert out.exit_code == 0, out.output
    assert "warning: Redis unreachable" in out.stderr
    assert json.loads(out.stdout)["pulls"] == before.pulls + 1
    stats = json.loads(cli("mab", "stats", "--json", env=env).stdout)
    assert stats["source"] == "database"
    assert stats["arms"]["ml_pricing"]["pulls"] == before.pulls + 1


def test_reset_needs_yes_and_clears_both_stores(world, redis_url, cli):
    env = env_for(world, redis_url)
    BanditStore(world, redis_of(redis_url)).record("early_bird", 1.0)
    refused = cli("mab", "reset", env=env)
    assert refused.exit_code == 1 and "--yes" in refused.stderr
    assert cli("mab", "reset", "--yes", env=env).exit_code == 0
    assert redis_of(redis_url).keys(KEY_PREFIX + "*") == []
    stats = json.loads(cli("mab", "stats", "--json", env=env).stdout)
    assert stats["total_pulls"] == 0 and stats["best_arm"] is None


def test_policies_find_the_best_arm():
    rates = np.array([0.05, 0.04, 0.03, 0.02])
    for policy in ("thompson", "ucb1", "egreedy"):
        result = simulate(policy, rates, 20_000, seed=3)
        assert sum(result["pulls"]) == 20_000
        assert result["best_arm"] == 0 and result["best_arm_share"] > 0.3, policy
        # pulling arms uniformly loses 0.015 per step
        assert 0 < result["cumulative_regret"] < 0.015 * 20_000 * 0.8, policy
    # Thompson beats pulling arms uniformly by far (regret 0.015 per step).
    assert simulate("thompson", rates, 20_000, seed=4)["cumulative_regret"] < 150


def test_a_batch_of_choices_follows_the_posterior():
    rng = np.random.default_rng(0)
    pulls, sums = np.array([1000.0, 1000.0]), np.array([600.0, 400.0])
    picks = choose("thompson", pulls, sums, rng, size=500)
    assert picks.shape == (500,) and (picks == 0).mean() > 0.99


def test_the_posterior_interval_matches_scipys_beta_quantiles():
    """The plain-Python Beta quantile that keeps scipy off `status` and the dashboard agrees
    with scipy.stats.beta.ppf, from a fresh arm to millions of pulls."""
    from scipy.stats import beta

    for a in (1.0, 1.5, 3.7, 51.3, 1_190.9, 19_200.5, 1e6):
        for b in (1.0, 1.2, 9.0, 80.5, 3_468.1, 15_000.0, 3e6):
            for p in (0.001, 0.05, 0.5, 0.95, 0.999):
                assert beta_quantile(p, a, b) == pytest.approx(beta.ppf(p, a, b), rel=1e-8)
    pulls, sums = [0, 10, 4_657, 2_000_000], [0.0, 10.0, 1_189.9, 35_000.25]
    expected = [
        beta.ppf([0.05, 0.95], 1 + s, 1 + max(n - s, 0)) for n, s in zip(pulls, sums, strict=True)
    ]
    assert np.allclose(posterior_interval(pulls, sums), expected, rtol=1e-9, atol=0)


def test_simulate_command(cli, world):
    out = cli(
        "mab",
        "simulate",
        "--arms",
        "0.05,0.04,0.03,0.02",
        "--horizon",
        "5000",
        "--seed",
        "1",
        "--policy",
        "thompson",
        "--json",
    )
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert set(result) >= {"cumulative_regret", "pulls", "best_arm_share"}
    assert sum(result["pulls"].values()) == 5000
    args = ("--arms", "0.05,0.04,0.03,0.02", "--horizon", "5000", "--seed", "1", "--json")
    assert json.loads(cli("mab", "simulate", *args, "--policy", "thompson").stdout) == result
    url = world.url.render_as_string(hide_password=False)
    demo = cli(
        "mab",
        "simulate",
        "--from-demo",
        "--horizon",
        "3000",
        "--json",
        env={"MLKIT_DATABASE_URL": url},
    )
    assert demo.exit_code == 0, demo.output
    assert set(json.loads(demo.stdout)["pulls"]) == set(ARMS)
    bad = cli("mab", "simulate", "--arms", "0.5,x")
    assert bad.exit_code == 1 and "cannot read --arms" in bad.stderr


def test_the_window_counts_back_from_now_and_too_few_offers_keep_the_live_bandit(
    world, redis_url, cli, monkeypatch
):
    env = env_for(world, redis_url)
    with world.connect() as conn:
        end = conn.execute(sa.select(sa.func.max(schema.demo_worlds.c.end_ts))).scalar()
        expected = len(
            load_history(conn, end - timedelta(days=5), until=end, surge=1.1, early=0.95)
        )
    assert expected >= load_config().get("pricing.min_offers")
    as_of = ("--as-of", f"{end:%Y-%m-%dT%H:%M:%S}")
    trained = cli(
        *as_of, "train", "mab", "--since", "5d", "--alias", "candidate", "--json", env=env
    )
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.stdout)["offers"] == expected

    store = BanditStore(world, redis_of(redis_url))
    live = store.read_database()

    def runs() -> int:
        with world.connect() as conn:
            query = sa.select(sa.func.count()).select_from(schema.training_runs)
            return conn.execute(query).scalar()

    before = runs()
    # Ten days after the world's last order, the last five days hold no offer at all.
    later = f"{end + timedelta(days=10):%Y-%m-%dT%H:%M:%S}"
    refused, skipped = refused_then_skipped(cli, env, f"--as-of {later} train mab --since 5d")
    assert "error: 0 priced primary orders between" in refused.stderr
    assert "fewer than pricing.min_offers (100)" in refused.stderr
    assert "hint: widen --since (it counts back from now" in refused.stderr
    assert skipped["status"] == "skipped"
    # `train all` (and so cron) with the default 90 days, half a year after the last order.
    monkeypatch.setenv("MLKIT_NOW", f"{end + timedelta(days=180):%Y-%m-%dT%H:%M:%S}")
    plan = [p for p in default_plan(world, load_config()) if p.model == "pricing"]
    document = train_all(world, load_config(), plan=plan)
    assert document["results"][0]["status"] == "skipped" and document["failed"] == 0
    assert "fewer than pricing.min_offers" in document["results"][0]["detail"]
    # A skip is not a failed run (no cooldown, no alert), and the live arms are untouched.
    assert runs() == before
    assert store.read_database() == live
    assert resolve(world, "pricing@candidate").version == json.loads(trained.stdout)["version"]


def test_the_event_type_bandit_finds_each_types_true_best_arm(world):
    from mlkit.toolkit.pricing.bandit import Bandit

    with world.connect() as conn:
        frame = load_history(conn, None, surge=1.1, early=0.95)
        truth = conn.execute(
            sa.select(
                schema.demo_truth_pricing.c.event_type, schema.demo_truth_pricing.c.arm
            ).where(schema.demo_truth_pricing.c.is_best)
        ).all()
    bandit = Bandit("thompson", "event_type", scale=reward_scale(frame["combined"].to_numpy()))
    bandit.learn(
        frame["arm"].to_numpy(), frame["combined"].to_numpy(), bandit.rows(frame["event_type"])
    )
    rng = np.random.default_rng(0)
    offers = frame["event_type"].value_counts()
    found = {}
    for event_type, _ in truth:
        if offers.get(event_type, 0) >= 1000:  # a few hundred offers per arm and more
            picks = bandit.pick(bandit.rows([event_type] * 400), rng)
            found[event_type] = ARMS[np.bincount(picks, minlength=len(ARMS)).argmax()]
    assert len(found) >= 3
    assert found == {t: arm for t, arm in truth if t in found}
    assert len(set(found.values())) >= 3  # one global arm could not be right for all


def test_a_small_window_never_replaces_a_bigger_prod(world, redis_url, cli, monkeypatch):
    """The 250-offer bandit of issue 17: from `train mab` and from `train all`."""
    env = env_for(world, redis_url)
    trained = cli("train", "mab", "--since", "1000d", "--json", env=env)
    assert trained.exit_code == 0, trained.output
    prod = resolve(world, "pricing@prod")
    store = BanditStore(world)
    live = store.read_database()
    with world.connect() as conn:
        first = conn.execute(sa.select(sa.func.min(schema.orders.c.created_at))).scalar()
        end = conn.execute(sa.select(sa.func.max(schema.demo_worlds.c.end_ts))).scalar()
    small = cli("--as-of", f"{end:%Y-%m-%dT%H:%M:%S}", "train", "mab", "--since", "1d", env=env)
    assert small.exit_code == 3, small.output  # a notice: prod serves on
    assert (
        f"under 50% of the {prod.metrics['training_offers'] + prod.metrics['replayed_offers']:,}"
        in (small.stderr)
    )
    assert f"pricing@prod still points at pricing:{prod.version}" in small.stderr
    monkeypatch.setenv("MLKIT_NOW", f"{first + timedelta(hours=20):%Y-%m-%dT%H:%M:%S}")
    plan = [p for p in default_plan(world, load_config()) if p.model == "pricing"]
    document = train_all(world, load_config(), plan=plan)
    entry = document["results"][0]
    assert entry["status"] == "rejected" and document["failed"] == 0, entry
    assert "under 50% of the" in entry["detail"]
    assert resolve(world, "pricing@prod").version == prod.version
    assert store.read_database() == live


def test_constant_prices_never_replace_prod(world, redis_url, cli):
    """Runs last: it rewrites every primary order at its event's base price."""
    env = env_for(world, redis_url)
    prod = resolve(world, "pricing@prod")
    live = BanditStore(world).read_database()
    o, e = schema.orders, schema.events
    base = sa.select(e.c.base_price).where(e.c.event_id == o.c.event_id).scalar_subquery()
    with world.begin() as conn:
        conn.execute(o.update().where(o.c.is_resale == sa.false()).values(price=base))
    out = cli("train", "mab", "--since", "1000d", env=env)
    assert out.exit_code == 3, out.output
    assert "arms never pulled in the window: surge_pricing, early_bird, ml_pricing" in out.stderr
    assert resolve(world, "pricing@prod").version == prod.version
    assert BanditStore(world).read_database() == live
