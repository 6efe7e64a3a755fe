"""Bandit policies over arms summarised by pulls and reward sums, rewards in [0, 1].

`thompson` samples each arm's Beta(1 + successes, 1 + failures) posterior (a fractional reward
counts as that fraction of a success) and never below its posterior mean (optimistic sampling,
May et al. 2012: on 50 seeds x 3 arm sets it loses less than plain sampling on low and close
rates and ties on spread ones; benchmarks/models_bandit.py measures both); `ucb1` is UCB1-Tuned
(Auer et al. 2002), whose bonus follows the rewards' variance, so low conversion rates are not
drowned by a bonus sized for [0, 1]; `egreedy` plays the best mean except a random arm with
probability epsilon.

Every function takes state arrays of shape (..., arms): one row per simulated seed, per
context or per offer, so whole batches are decided in one numpy call.
"""

from __future__ import annotations

import numpy as np

from ..errors import MlkitError

POLICIES = ("thompson", "ucb1", "egreedy")
EPSILON = 0.05


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise MlkitError(f"unknown policy {policy!r}", hint=f"choose one of {', '.join(POLICIES)}")
    return policy


def posterior(pulls: np.ndarray, sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Beta(alpha, beta) per arm from a uniform prior."""
    return 1.0 + sums, 1.0 + np.maximum(pulls - sums, 0.0)


def choose(
    policy: str,
    pulls: np.ndarray,
    sums: np.ndarray,
    rng: np.random.Generator,
    *,
    epsilon: float = EPSILON,
    size: int | None = None,
    squares: np.ndarray | None = None,
) -> np.ndarray | int:
    """The arm index to play next from one state of shape (arms,), or `size` choices made
    before any of their outcomes are known (a day of offers)."""
    pulls, sums = np.asarray(pulls, float), np.asarray(sums, float)
    if size is None:
        return int(choose_rows(policy, pulls, sums, rng, epsilon=epsilon, squares=squares))
    shape = (size, len(pulls))
    rows = [np.broadcast_to(a, shape) if a is not None else None for a in (pulls, sums, squares)]
    return choose_rows(policy, *rows[:2], rng, epsilon=epsilon, squares=rows[2])


def choose_rows(
    policy: str,
    pulls: np.ndarray,
    sums: np.ndarray,
    rng: np.random.Generator,
    *,
    epsilon: float = EPSILON,
    squares: np.ndarray | None = None,
    optimistic: bool = True,
) -> np.ndarray:
    """One arm per row of states shaped (..., arms), each row decided independently;
    `optimistic=False` is plain Thompson sampling (for measuring the difference)."""
    if policy == "thompson":
        alpha, beta = posterior(pulls, sums)
        draws = rng.beta(alpha, beta)
        if optimistic:
            draws = np.maximum(draws, alpha / (alpha + beta))
        return draws.argmax(axis=-1)
    played = pulls > 0
    means = np.divide(sums, pulls, out=np.zeros(pulls.shape), where=played)
    if policy == "egreedy":
        greedy = np.where(played, means, np.inf).argmax(axis=-1)
        explore = rng.random(greedy.shape) < epsilon
        return np.where(explore, rng.integers(0, pulls.shape[-1], greedy.shape), greedy)
    total = np.maximum(pulls.sum(axis=-1, keepdims=True), 1.0)
    n = np.maximum(pulls, 1.0)
    if policy == "ucb1":
        variance = means * (1 - means)
        if squares is not None:
            variance = np.maximum(np.divide(squares, n) - means**2, 0.0)
        spread = variance + np.sqrt(2.0 * np.log(total) / n)
        bound = means + np.sqrt(np.log(total) / n * np.minimum(0.25, spread))
    else:
        raise MlkitError(f"unknown policy {policy!r}", hint=f"choose one of {', '.join(POLICIES)}")
    return np.where(played, bound, np.inf).argmax(axis=-1)


def simulate_many(
    policy: str,
    expected: np.ndarray,
    horizon: int,
    seeds: list[int],
    *,
    epsilon: float = EPSILON,
    reward_scale: np.ndarray | None = None,
    optimistic: bool = True,
) -> dict:
    """Play `policy` on every seed at once against arms paying Bernoulli(expected[i]) x
    reward_scale[i]; seed s meets the outcomes `bernoulli_table(expected, horizon, s)`, the
    luck every policy (and a reference library) is given. Per seed: the cumulative expected
    regret and the pulls per arm."""
    check_policy(policy)
    expected = np.asarray(expected, dtype=float)
    scale = np.ones_like(expected) if reward_scale is None else np.asarray(reward_scale, float)
    outcomes = np.stack([bernoulli_table(expected, horizon, s) for s in seeds]) * scale
    rng = np.random.default_rng([*seeds, len(seeds), 1])
    runs, arms = len(seeds), len(expected)
    pulls, sums, squares = np.zeros((runs, arms)), np.zeros((runs, arms)), np.zeros((runs, arms))
    chosen = np.empty((runs, horizon), dtype=np.int64)
    row = np.arange(runs)
    for step in range(horizon):
        arm = choose_rows(
            policy, pulls, sums, rng, epsilon=epsilon, squares=squares, optimistic=optimistic
        )
        chosen[:, step] = arm
        reward = outcomes[row, step, arm]
        pulls[row, arm] += 1
        sums[row, arm] += reward
        squares[row, arm] += reward**2
    value = expected * scale
    return {
        "regret": value.max() * horizon - value[chosen].sum(axis=1),
        "pulls": pulls.astype(np.int64),
        "best_arm": int(np.argmax(value)),
    }


def simulate(
    policy: str,
    expected: np.ndarray,
    horizon: int,
    seed: int,
    *,
    epsilon: float = EPSILON,
    reward_scale: np.ndarray | None = None,
) -> dict:
    """One seed of `simulate_many`: the cumulative expected regret, pulls per arm and the best
    arm's share."""
    result = simulate_many(
        policy, expected, horizon, [seed], epsilon=epsilon, reward_scale=reward_scale
    )
    pulls = result["pulls"][0]
    best = result["best_arm"]
    return {
        "cumulative_regret": float(result["regret"][0]),
        "pulls": pulls.tolist(),
        "best_arm": best,
        "best_arm_share": float(pulls[best] / max(horizon, 1)),
    }


def bernoulli_table(expected: np.ndarray, horizon: int, seed: int) -> np.ndarray:
    """The outcome each arm would give at each step: (horizon, arms) of 0/1."""
    uniform = np.random.default_rng([seed, 0]).random((horizon, len(expected)))
    return (uniform < expected).astype(float)


def summarise(chosen: np.ndarray, value: np.ndarray) -> dict:
    best = int(np.argmax(value))
    counts = np.bincount(chosen, minlength=len(value))
    return {
        "cumulative_regret": float(value[best] * len(chosen) - value[chosen].sum()),
        "pulls": counts.tolist(),
        "best_arm": best,
        "best_arm_share": float(counts[best] / max(len(chosen), 1)),
    }
