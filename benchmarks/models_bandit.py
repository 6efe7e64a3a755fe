"""The pricing bandit beside its references, for `bench_models.py`.

Regret: each policy (and plain Thompson sampling, to measure the optimistic floor) beside
MABWiser's Thompson sampling on three arm sets, 50 seeds each at horizon 20,000, every policy
meeting the same outcome table per seed (`bernoulli_table`); MABWiser is given one pull of each
arm to start, since it cannot predict before a first fit, and is driven through its learning
policy object (the public `MAB` adds input checks that take half the time of a step). Target:
Thompson sampling's mean and 90th-percentile regret at most MABWiser's on every set.

Demo world, per seed (`seeds`): `mlkit demo seed --orders 20000 --days 60` (pricing only), the
window's first four fifths train, the last fifth is replayed as `train mab` does (replay
estimate, each match weighted by 1 / the logged arm's training share). The event-type bandit
and the global one beside the best global arm of the training offers, the logged policy and
the oracle: each event type's truly best arm (`demo_truth_pricing`). Margins carry 90 %
block-bootstrap intervals. Target: the event-type bandit above the best global arm.
"""

from __future__ import annotations

import time

import numpy as np
from _common import fresh_home

from mlkit.toolkit.gate import judge
from mlkit.toolkit.pricing.bandit import Bandit
from mlkit.toolkit.pricing.family import (
    baselines,
    block_size,
    holdout_start,
    holdout_truth,
    replay_value,
)
from mlkit.toolkit.pricing.history import ARMS, reward_scale
from mlkit.toolkit.pricing.policies import bernoulli_table, simulate_many, summarise

ARM_SETS = {
    "low": np.array([0.05, 0.04, 0.03, 0.02]),
    "close": np.array([0.50, 0.48, 0.46, 0.44]),
    "spread": np.array([0.5, 0.3, 0.2, 0.1]),
}
HORIZON = 20_000
REGRET_SEEDS = 50
ORDERS, DAYS = 20_000, 60


def mabwiser_regret(rates: np.ndarray, horizon: int, seed: int) -> float:
    from mabwiser.mab import MAB, LearningPolicy

    outcomes = bernoulli_table(rates, horizon, seed)
    bandit = MAB(
        arms=list(range(len(rates))), learning_policy=LearningPolicy.ThompsonSampling(), seed=seed
    )
    first = np.arange(len(rates))
    bandit.fit(first, outcomes[first, first])
    policy = bandit._imp  # the same learning policy without the wrapper's checks
    chosen = np.empty(horizon, dtype=np.int64)
    chosen[: len(rates)] = first
    for step in range(len(rates), horizon):
        arm = policy.predict()
        chosen[step] = arm
        policy.partial_fit(np.array([arm]), np.array([outcomes[step, arm]]))
    return summarise(chosen, rates)["cumulative_regret"]


def regret_lines(seeds: list[int], horizon: int = HORIZON) -> list[str]:
    lines = []
    for name, rates in ARM_SETS.items():
        started = time.perf_counter()
        theirs = np.array([mabwiser_regret(rates, horizon, s) for s in seeds])
        seconds = time.perf_counter() - started
        reference = f"MABWiser TS mean {theirs.mean():.1f} p90 {np.quantile(theirs, 0.9):.1f}"
        runs = [(p, p, True) for p in ("thompson", "ucb1", "egreedy")]
        runs.insert(1, ("thompson (plain)", "thompson", False))
        for label, policy, optimistic in runs:
            started = time.perf_counter()
            ours = simulate_many(policy, rates, horizon, seeds, optimistic=optimistic)["regret"]
            ours_seconds = time.perf_counter() - started
            verdict = ""
            if label == "thompson":
                met = ours.mean() <= theirs.mean() and np.quantile(ours, 0.9) <= np.quantile(
                    theirs, 0.9
                )
                verdict = " (target: both at most MABWiser's) " + ("met" if met else "MISSED")
            lines.append(
                f"regret {name} {'/'.join(f'{r:g}' for r in rates)}, {len(seeds)} seeds x "
                f"{horizon:,}: {label} mean {ours.mean():.1f} p90 {np.quantile(ours, 0.9):.1f} "
                f"max {ours.max():.1f} ({ours_seconds:.1f} s) vs {reference} ({seconds:.0f} s)"
                + verdict
            )
    return lines


def oracle_arms(engine, holdout) -> np.ndarray:
    """Each holdout offer's truly best arm for its event type."""
    import sqlalchemy as sa

    from mlkit.toolkit import schema

    t = schema.demo_truth_pricing
    with engine.connect() as conn:
        best = dict(conn.execute(sa.select(t.c.event_type, t.c.arm).where(t.c.is_best)).all())
    return np.array([ARMS.index(best[name]) for name in holdout["event_type"]])


def demo_lines(seed: int) -> list[str]:
    from mlkit.toolkit.demo.seed import seed_demo
    from mlkit.toolkit.pricing.history import load_history

    _, engine = fresh_home()
    seed_demo(engine, orders=ORDERS, days=DAYS, seed=seed, families=("pricing",))
    with engine.connect() as conn:
        frame = load_history(conn, None, surge=1.1, early=0.95)
    cut = holdout_start(len(frame))
    training, holdout = frame.iloc[:cut], frame.iloc[cut:]
    truth = holdout_truth(training, holdout)
    references = baselines(training, holdout, seed=seed)
    picks = {}
    for context in ("event_type", "none"):
        bandit = Bandit("thompson", context, scale=reward_scale(training["combined"].to_numpy()))
        bandit.learn(
            training["arm"].to_numpy(),
            training["combined"].to_numpy(dtype=float),
            bandit.rows(training["event_type"].tolist()),
        )
        picks[context] = bandit.replay(holdout, np.random.default_rng([seed, 1]))
    picks["oracle"] = oracle_arms(engine, holdout)
    block = block_size(holdout)
    best = references["best_global_arm"]
    figures = []
    for label, key in (
        ("event-type bandit", "event_type"),
        ("global bandit", "none"),
        ("oracle", "oracle"),
    ):
        c = judge(
            "replay",
            replay_value,
            truth,
            picks[key],
            {"best_global_arm": best},
            block=block,
            seed=seed,
        ).best
        low, high = c.interval
        value = replay_value(truth, picks[key])
        figures.append(
            f"{label} {value:.4f} (vs best arm {c.margin:+.4f} [{low:+.4f}, {high:+.4f}])"
        )
    met = (
        "met" if replay_value(truth, picks["event_type"]) > replay_value(truth, best) else "MISSED"
    )
    return [
        f"demo seed {seed}: {len(frame):,} offers, {len(holdout):,} replayed; "
        + ", ".join(figures)
        + f"; best global arm ({ARMS[int(best[0])]}) {replay_value(truth, best):.4f}, "
        f"logged {replay_value(truth, references['logged_policy']):.4f}, uniform random "
        f"{replay_value(truth, references['uniform_random']):.4f} (target: event-type bandit "
        f"above the best global arm) {met}",
    ]


def measure(seeds: list[int]) -> list[str]:
    """Regret over 50 simulation seeds beside MABWiser, then the demo world for each seed."""
    lines = regret_lines(list(range(REGRET_SEEDS)))
    for seed in seeds:
        lines += demo_lines(seed)
    return lines


if __name__ == "__main__":
    import sys

    for line in measure(
        [int(s) for s in (sys.argv[1] if len(sys.argv) > 1 else "0,1,2").split(",")]
    ):
        print(line, flush=True)
