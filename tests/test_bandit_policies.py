"""Bandit policies and the pricing gate on synthetic offers: regret, per-event-type learning,
and no promotion of a bandit where every arm pays the same."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlkit.toolkit.pricing.bandit import Bandit
from mlkit.toolkit.pricing.history import ARMS
from mlkit.toolkit.pricing.policies import POLICIES, simulate_many
from mlkit.toolkit.pricing.train import learn_and_judge

LOW = np.array([0.05, 0.04, 0.03, 0.02])
SPREAD = np.array([0.5, 0.3, 0.2, 0.1])


def offers(pays, *, n: int = 8000, days: int = 40, seed: int = 0) -> pd.DataFrame:
    """Logged offers with uniformly random arms over `days`; `pays[type][arm]` is the chance
    an offer of that event type and arm converts (reward 1)."""
    rng = np.random.default_rng(seed)
    types = rng.integers(0, len(pays), n)
    arms = rng.integers(0, len(ARMS), n)
    rate = np.asarray(pays)[types, arms]
    start = pd.Timestamp("2024-01-01")
    return pd.DataFrame(
        {
            "created_at": start + pd.to_timedelta(np.sort(rng.random(n)) * days, unit="D"),
            "event_type": np.array(["concert", "sports", "theatre"])[types],
            "arm": arms,
            "combined": (rng.random(n) < rate).astype(float),
        }
    )


def test_every_policy_loses_far_less_than_random_and_tails_stay_short():
    seeds = list(range(10))
    for rates, horizon in ((LOW, 20_000), (SPREAD, 5000)):
        random_regret = (rates.max() - rates.mean()) * horizon
        for policy in POLICIES:
            regret = simulate_many(policy, rates, horizon, seeds)["regret"]
            assert regret.shape == (10,) and (regret >= 0).all()
            # (UCB1 with the bonus sized for [0, 1] spends about 0.6 of random on LOW)
            assert regret.mean() < 0.4 * random_regret, (policy, rates, regret.mean())
            if policy != "egreedy":  # its fixed exploration aside, no seed locks on a wrong arm
                assert regret.max() < 0.5 * random_regret, (policy, rates, regret.max())


def test_thompson_beats_egreedy_where_arms_are_far_apart():
    seeds = list(range(10))
    thompson = simulate_many("thompson", SPREAD, 5000, seeds)["regret"]
    egreedy = simulate_many("egreedy", SPREAD, 5000, seeds)["regret"]
    # egreedy keeps spending 5 % of offers at random: 0.05 x 0.225 x 5000 = 56
    assert thompson.mean() < egreedy.mean() / 2


def test_the_event_type_bandit_learns_each_types_best_arm():
    pays = [[0.3, 0.6, 0.3, 0.3], [0.3, 0.3, 0.6, 0.3], [0.6, 0.3, 0.3, 0.4]]
    frame = offers(pays)
    bandit = Bandit("thompson", "event_type")
    bandit.learn(
        frame["arm"].to_numpy(), frame["combined"].to_numpy(), bandit.rows(frame["event_type"])
    )
    rng = np.random.default_rng(0)
    for name, rates in zip(["concert", "sports", "theatre"], pays, strict=True):
        picks = bandit.pick(bandit.rows([name] * 300), rng)
        assert np.bincount(picks, minlength=len(ARMS)).argmax() == int(np.argmax(rates)), name
    # the global bandit sees one mixture and cannot: its pick is the same for every type
    single = Bandit("thompson", "none")
    single.learn(
        frame["arm"].to_numpy(), frame["combined"].to_numpy(), single.rows(frame["event_type"])
    )
    assert (
        len(
            {
                int(single.pick(single.rows([n] * 300), rng).mean().round())
                for n in ["concert", "sports"]
            }
        )
        == 1
    )


def test_identical_arms_never_pass_the_gate():
    frame = offers([[0.4] * 4, [0.4] * 4, [0.4] * 4], n=20000)
    metrics = learn_and_judge(Bandit("thompson", "event_type"), frame, (None, None, None))
    gate = metrics["gate"]
    assert not gate["passed"]
    assert any("not above the" in reason for reason in gate["reasons"])


def test_arms_that_differ_pass_and_a_single_logged_arm_never_does():
    frame = offers([[0.3, 0.6, 0.3, 0.3], [0.3, 0.3, 0.6, 0.3], [0.6, 0.3, 0.3, 0.4]])
    metrics = learn_and_judge(Bandit("thompson", "event_type"), frame, (None, None, None))
    assert metrics["gate"]["passed"], metrics["gate"]["reasons"]
    constant = frame.assign(arm=0)  # constant prices: every offer at the base price
    metrics = learn_and_judge(Bandit("thompson", "event_type"), constant, (None, None, None))
    assert not metrics["gate"]["passed"]
    assert (
        "arms never pulled in the window: surge_pricing, early_bird, ml_pricing"
        in (metrics["gate"]["reasons"])
    )
    forced = learn_and_judge(Bandit("thompson"), constant, (None, None, None), force=True)
    assert "--force: arms never pulled" in forced["gate"]["notes"][0]


def test_a_window_far_smaller_than_prods_is_refused_a_dip_is_not():
    from types import SimpleNamespace

    from mlkit.toolkit.pricing.family import structural_reasons

    prod = SimpleNamespace(ref="pricing:3")
    frame = offers([[0.5, 0.3, 0.2, 0.1]], n=2000)
    bandit = Bandit("thompson")
    bandit.learn(frame["arm"].to_numpy(), frame["combined"].to_numpy(), np.zeros(2000, int))
    prod_bandit = SimpleNamespace(offers=20_917)
    tiny = structural_reasons(bandit, 250, prod, prod_bandit, 0.5)
    assert tiny == [
        "trained on 250 offers, under 50% of the 20,917 of pricing:3 "
        "(pricing.min_offers_share_of_prod)"
    ]
    assert structural_reasons(bandit, 19_000, prod, prod_bandit, 0.5) == []
    assert structural_reasons(bandit, 19_000, prod, prod_bandit, 1.0) != []
