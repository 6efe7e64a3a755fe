"""Bandit policies (thompson, ucb1, egreedy) over arms summarised by pulls and reward sums, rewards
in [0, 1]; Thompson counts a fractional reward as that fraction of a success.
"""

from __future__ import annotations

import numpy as np

from ..errors import MlkitError

POLICIES = ("thompson", "ucb1", "egreedy")
# Posterior counts multiplier when sampling (variance / 2): loses less than plain sampling
# (Chapelle & Li 2011).
THOMPSON_SHARPENING = 2.0


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
    epsilon: float = 0.1,
    size: int | None = None,
) -> np.ndarray | int:
    """The arm index to play next (or `size` independent choices, for a batch that is
    decided before any of its outcomes are known)."""
    n_arms = len(pulls)
    shape = (n_arms,) if size is None else (size, n_arms)
    if policy == "thompson":
        alpha, beta = posterior(THOMPSON_SHARPENING * pulls, THOMPSON_SHARPENING * sums)
        return rng.beta(alpha, beta, size=shape).argmax(axis=-1)
    means = np.divide(sums, pulls, out=np.full(n_arms, np.inf), where=pulls > 0)
    if policy == "ucb1":
        total = max(float(pulls.sum()), 1.0)
        bonus = np.sqrt(2.0 * np.log(total) / np.maximum(pulls, 1))
        best = int(np.argmax(np.where(pulls > 0, means + bonus, np.inf)))
        return best if size is None else np.full(size, best)
    if policy == "egreedy":
        best = int(np.argmax(means))
        if size is None:
            return int(rng.integers(n_arms)) if rng.random() < epsilon else best
        explore = rng.random(size) < epsilon
        return np.where(explore, rng.integers(0, n_arms, size), best)
    raise MlkitError(f"unknown policy {policy!r}", hint=f"choose one of {', '.join(POLICIES)}")


def posterior_interval(pulls: np.ndarray, sums: np.ndarray, level: float = 0.9) -> np.ndarray:
    """Equal-tailed credible interval of each arm's mean reward, shape (arms, 2)."""
    from scipy.stats import beta as beta_dist

    alpha, beta = posterior(np.asarray(pulls, float), np.asarray(sums, float))
    tail = (1.0 - level) / 2.0
    return np.stack([beta_dist.ppf(tail, alpha, beta), beta_dist.ppf(1 - tail, alpha, beta)], 1)


def simulate(
    policy: str,
    expected: np.ndarray,
    horizon: int,
    seed: int,
    *,
    epsilon: float = 0.1,
    reward_scale: np.ndarray | None = None,
) -> dict:
    """Play `policy` for `horizon` steps against arms paying Bernoulli(expected[i]) x
    reward_scale[i], with outcomes drawn up front from `seed` so policies meet the same luck: the
    cumulative expected regret, pulls per arm and the best arm's share."""
    expected = np.asarray(expected, dtype=float)
    scale = np.ones_like(expected) if reward_scale is None else np.asarray(reward_scale, float)
    outcomes = bernoulli_table(expected, horizon, seed) * scale
    rng = np.random.default_rng([seed, 1])
    pulls = np.zeros(len(expected))
    sums = np.zeros(len(expected))
    chosen = np.empty(horizon, dtype=np.int64)
    for step in range(horizon):
        arm = choose(policy, pulls, sums, rng, epsilon=epsilon)
        chosen[step] = arm
        pulls[arm] += 1
        sums[arm] += outcomes[step, arm]
    value = expected * scale
    return summarise(chosen, value)


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
