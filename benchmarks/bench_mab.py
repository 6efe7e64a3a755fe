"""Pricing bandit: regret beside MABWiser, and `reward` update throughput.

Regret: our Thompson sampling and UCB1 beside MABWiser's on the same Bernoulli arms and
the same outcome table per seed (horizon 20,000, 20 seeds, cumulative expected regret);
target: ours / MABWiser <= 1.0 for Thompson sampling. MABWiser is installed only for
this script (pip install mabwiser); it is given one pull of each arm to start, since it
cannot predict before a first fit.

Throughput: `BanditStore.record` (the `mlkit mab reward` path: a database increment, then
the Lua compare-and-set into Redis) on PostgreSQL + the local Redis, 1 and 4 processes,
beside the Redis compare-and-set alone.

Run: python benchmarks/bench_mab.py [--seeds 20] [--horizon 20000] [--database URL]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

import numpy as np

from mlkit.toolkit.pricing.policies import bernoulli_table, simulate, summarise

ENVIRONMENTS = {
    "rates 0.05/0.04/0.03/0.02": np.array([0.05, 0.04, 0.03, 0.02]),
    "rates 0.50/0.45/0.40/0.30": np.array([0.50, 0.45, 0.40, 0.30]),
}
REDIS = "redis://127.0.0.1:6379/13"


def mabwiser_regret(policy: str, rates: np.ndarray, horizon: int, seed: int) -> float:
    from mabwiser.mab import MAB, LearningPolicy

    outcomes = bernoulli_table(rates, horizon, seed)
    learning = (
        LearningPolicy.ThompsonSampling() if policy == "thompson" else LearningPolicy.UCB1(1.0)
    )
    arms = list(range(len(rates)))
    bandit = MAB(arms=arms, learning_policy=learning, seed=seed)
    chosen = np.empty(horizon, dtype=np.int64)
    first = np.arange(len(rates))
    bandit.fit(first, outcomes[first, first])
    chosen[: len(rates)] = first
    for step in range(len(rates), horizon):
        arm = bandit.predict()
        chosen[step] = arm
        bandit.partial_fit([arm], [outcomes[step, arm]])
    return summarise(chosen, rates)["cumulative_regret"]


def regret(args) -> None:
    for name, rates in ENVIRONMENTS.items():
        for policy in ("thompson", "ucb1"):
            ours = [
                simulate(policy, rates, args.horizon, s)["cumulative_regret"]
                for s in range(args.seeds)
            ]
            started = time.perf_counter()
            theirs = [mabwiser_regret(policy, rates, args.horizon, s) for s in range(args.seeds)]
            seconds = time.perf_counter() - started
            ratio = np.mean(ours) / np.mean(theirs)
            verdict = ("ok" if ratio <= 1.0 else "MISSED") if policy == "thompson" else ""
            print(
                f"{name}, {policy}: regret ours {np.mean(ours):.1f} "
                f"(se {np.std(ours) / np.sqrt(len(ours)):.1f}), MABWiser {np.mean(theirs):.1f} "
                f"(se {np.std(theirs) / np.sqrt(len(theirs)):.1f}, {seconds:.0f} s): ratio "
                f"{ratio:.2f}" + (f" (target <= 1.0) {verdict}" if verdict else "")
            )


def _record(url: str, redis_url: str, count: int, start, done) -> None:
    from mlkit.toolkit.cache import redis_client
    from mlkit.toolkit.db import make_engine
    from mlkit.toolkit.pricing.state import BanditStore

    store = BanditStore(make_engine(url), redis_client(redis_url))
    store.record("baseline", 1.0)  # connect before the clock starts
    start.wait()
    for i in range(count):
        store.record("baseline", (i % 2) * 0.5)
    done.put(count)


def throughput(args) -> None:
    import redis
    from _scratch import scratch_postgres

    from mlkit.toolkit.cache import redis_client
    from mlkit.toolkit.db import init_schema, make_engine
    from mlkit.toolkit.pricing.state import SET_IF_NEWER_SCRIPT, BanditStore

    with scratch_postgres(args.server, "mlkit_bench_mab") as url:
        init_schema(make_engine(url))
        store = BanditStore(make_engine(url), redis_client(REDIS))
        store.reset()
        for processes in (1, 4):
            context = multiprocessing.get_context("fork")
            start, done = context.Event(), context.Queue()
            count = 2000 if processes == 1 else 1000
            workers = [
                context.Process(target=_record, args=(url, REDIS, count, start, done))
                for _ in range(processes)
            ]
            for w in workers:
                w.start()
            time.sleep(1.0)
            started = time.perf_counter()
            start.set()
            total = sum(done.get() for _ in workers)
            seconds = time.perf_counter() - started
            for w in workers:
                w.join()
            print(
                f"mab reward path (PostgreSQL increment + Redis compare-and-set), {processes} "
                f"process{'es' if processes > 1 else ''}: {total / seconds:,.0f} updates/s"
            )
        state = store.read_database()["baseline"]
        client = redis.Redis.from_url(REDIS)
        script = client.register_script(SET_IF_NEWER_SCRIPT)
        stamp = store.stamp()
        value = state.to_json(stamp)
        started = time.perf_counter()
        n = 5000
        for i in range(n):
            script(
                keys=["mab:bench"],
                args=[value, state.pulls + i + 1, stamp.generation, stamp.database_id],
            )
        rate = n / (time.perf_counter() - started)
        print(f"reference: the Redis compare-and-set alone, 1 process: {rate:,.0f} updates/s")
        client.delete("mab:bench")
        store.reset()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--horizon", type=int, default=20_000)
    parser.add_argument(
        "--server",
        default="postgresql+psycopg2://postgres@127.0.0.1:5432",
        help="PostgreSQL server URL (no database)",
    )
    args = parser.parse_args()
    regret(args)
    throughput(args)


if __name__ == "__main__":
    main()
