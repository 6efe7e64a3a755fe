"""The arms as `mlkit mab stats`, `mlkit status` and the dashboard report them: pulls, mean
reward, share of pulls and the 90 % credible interval of each arm's Beta posterior.

Plain Python on purpose: `mlkit status` and the dashboard's poll import neither numpy nor
scipy (scipy.stats alone costs about a second of start-up). The Beta quantile is the
incomplete beta function's continued fraction inverted by Halley steps (Numerical Recipes,
3rd ed., 6.4); tests/test_pricing.py checks it against scipy.stats.beta.ppf.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .state import ArmState

_TINY = 1e-300  # keeps the continued fraction's denominators off zero
_MAX_TERMS = 100_000  # terms grow with sqrt(alpha + beta): millions of pulls need thousands


def stats_report(states: dict[str, ArmState], source: str) -> dict:
    """Per arm: pulls, mean, share of pulls, 90 % posterior interval; the best arm."""
    total = sum(state.pulls for state in states.values())
    interval = posterior_interval(
        [state.pulls for state in states.values()], [state.reward_sum for state in states.values()]
    )
    best = max(states, key=lambda a: states[a].mean) if total else None
    arms = {}
    for (arm, state), (low, high) in zip(states.items(), interval, strict=True):
        arms[arm] = state.as_dict() | {
            "share": state.pulls / total if total else 0.0,
            "interval_90": [low, high],
            "best": arm == best,
        }
    return {
        "bandit": "pricing",
        "source": source,
        "total_pulls": int(total),
        "best_arm": best,
        "arms": arms,
    }


def posterior_interval(
    pulls: Iterable[float], sums: Iterable[float], level: float = 0.9
) -> list[tuple[float, float]]:
    """Equal-tailed credible interval of each arm's mean reward under its Beta(1 + successes,
    1 + failures) posterior (`policies.posterior`), one (low, high) per arm."""
    tail = (1.0 - level) / 2.0
    intervals = []
    for n, s in zip(pulls, sums, strict=True):
        alpha, beta = 1.0 + float(s), 1.0 + max(float(n) - float(s), 0.0)
        intervals.append((beta_quantile(tail, alpha, beta), beta_quantile(1 - tail, alpha, beta)))
    return intervals


def beta_quantile(p: float, a: float, b: float) -> float:
    """The x with regularized_beta(x, a, b) = p (the Beta(a, b) distribution's quantile)."""
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    if a >= 1.0 and b >= 1.0:  # a normal approximation to start from
        tail = p if p < 0.5 else 1.0 - p
        t = math.sqrt(-2.0 * math.log(tail))
        z = (2.30753 + t * 0.27061) / (1.0 + t * (0.99229 + t * 0.04481)) - t
        if p < 0.5:
            z = -z
        lam = (z * z - 3.0) / 6.0
        h = 2.0 / (1.0 / (2.0 * a - 1.0) + 1.0 / (2.0 * b - 1.0))
        w = z * math.sqrt(lam + h) / h - (1.0 / (2.0 * b - 1.0) - 1.0 / (2.0 * a - 1.0)) * (
            lam + 5.0 / 6.0 - 2.0 / (3.0 * h)
        )
        x = a / (a + b * math.exp(2.0 * w))
    else:  # the distribution's power-law tails
        t = math.exp(a * math.log(a / (a + b))) / a
        u = math.exp(b * math.log(b / (a + b))) / b
        w = t + u
        x = (a * w * p) ** (1.0 / a) if p < t / w else 1.0 - (b * w * (1.0 - p)) ** (1.0 / b)
    log_norm = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    for step in range(100):
        if x in (0.0, 1.0):
            return x
        error = regularized_beta(x, a, b) - p
        density = math.exp((a - 1.0) * math.log(x) + (b - 1.0) * math.log1p(-x) + log_norm)
        u = error / density
        dx = u / (1.0 - 0.5 * min(1.0, u * ((a - 1.0) / x - (b - 1.0) / (1.0 - x))))
        x -= dx
        if x <= 0.0:
            x = 0.5 * (x + dx)
        if x >= 1.0:
            x = 0.5 * (x + dx + 1.0)
        if abs(dx) < 1e-13 * x and step > 0:
            break
    return x


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), the Beta(a, b) distribution's cumulative probability at x."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):  # the side where the fraction converges fast
        return front * _beta_fraction(x, a, b) / a
    return 1.0 - front * _beta_fraction(1.0 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float) -> float:
    """The incomplete beta function's continued fraction, by the modified Lentz method."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_TERMS):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1.0) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1.0)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h
