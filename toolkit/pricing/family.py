"""The pricing family's side of the contract (`families.py`): its training, the references a
bandit must beat, its promotion gate and its validation checks.

The gate replays the window's last fifth of offers (the holdout) with the replay estimator of
Li et al. (2011): a policy earns an offer's reward when it picks the arm the platform logged,
each match weighted by 1 / the logged arm's share in the training offers (the logging policy
assigned arms independently of the buyer, so matched offers are a fair sample). The candidate
bandit learned from the earlier offers, then learns the holdout day by day as it would online;
pricing@prod learns it the same way from its own state.

What a bandit must show: that it earns significantly more than pricing without learning (the
better of a uniformly random arm and the platform's logged policy), and that it is not
significantly worse than the best single arm of the training offers, nor than prod. A bandit
is not required to beat the best single arm: in a stationary world that arm is the limit the
bandit itself converges to, so requiring it would freeze every retrain. Where arms are truly
equal nothing beats random pricing, so no new version replaces prod; that costs nothing (any
arm is as good) and the live arms keep learning online from `mlkit mab reward` meanwhile.
Structural refusals (unless `--force`): fewer offers than prod's, or arms never pulled.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from .history import ARMS

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.engine import Engine

    from ..gate import Verdict
    from ..validation import Check
    from .bandit import Bandit

METRIC = "replay_reward"
UNIT = "offer"
HOLDOUT_SHARE = 0.2
NO_SKILL = ("uniform_random", "logged_policy")


def train(engine: Engine, config, **options: Any) -> dict:
    """`mlkit train mab`: `train_bandit` with its options (`redis` among them)."""
    from .train import train_bandit

    return train_bandit(engine, config, options.pop("redis", None), **options)


def holdout_start(offers: int) -> int:
    """The first holdout offer: the window's last HOLDOUT_SHARE, at least one offer each side."""
    return min(max(round(offers * (1 - HOLDOUT_SHARE)), 1), max(offers - 1, 1))


def replay_value(truth: np.ndarray, picks: np.ndarray) -> float:
    """Weighted mean reward of the offers where `picks` equals the logged arm; `truth` rows
    are (logged arm, reward, 1 / the arm's logging share). NaN without a match."""
    weight = (np.asarray(picks) == truth[:, 0]) * truth[:, 2]
    total = weight.sum()
    return float((weight * truth[:, 1]).sum() / total) if total > 0 else float("nan")


def holdout_truth(training: pd.DataFrame, holdout: pd.DataFrame) -> np.ndarray:
    """The rows `replay_value` scores: logged arm, combined reward, inverse logging share
    (estimated on the training offers; an arm they never logged counts as half an offer)."""
    counts = np.bincount(training["arm"], minlength=len(ARMS)).astype(float)
    share = np.maximum(counts, 0.5) / max(len(training), 1)
    arms = holdout["arm"].to_numpy()
    return np.stack([arms, holdout["combined"].to_numpy(dtype=float), 1.0 / share[arms]], axis=1)


def best_arm(training: pd.DataFrame) -> int:
    """The arm with the best mean combined reward on the training offers."""
    means = training.groupby("arm")["combined"].mean()
    return int(means.idxmax())


def baselines(training: pd.DataFrame, holdout: pd.DataFrame, *, seed: int = 0) -> dict:
    """Each reference's arm per holdout offer, from the training offers only: a uniformly
    random arm, the arm the platform logged (its own policy), and the training offers' best
    single arm for every offer."""
    rng = np.random.default_rng([seed, 7])
    return {
        "uniform_random": rng.integers(0, len(ARMS), len(holdout)),
        "logged_policy": holdout["arm"].to_numpy(),
        "best_global_arm": np.full(len(holdout), best_arm(training)),
    }


def serving_bandit(engine: Engine, config) -> tuple[Any, Bandit | None, str | None]:
    """pricing@prod's version and bandit, or None with why it cannot be compared."""
    from ..errors import MlkitError
    from ..registry import read_artifact, resolve
    from .bandit import Bandit

    try:
        mv = resolve(engine, "pricing@prod")
    except MlkitError:
        return None, None, None
    try:
        document = json.loads(read_artifact(mv, config.artifacts_dir))
        return mv, Bandit.from_snapshot(document), None
    except (MlkitError, ValueError) as exc:
        message = exc.message if isinstance(exc, MlkitError) else str(exc)
        return mv, None, f"{mv.ref} not compared: {message}"


def block_size(holdout: pd.DataFrame) -> int:
    """A day's offers per bootstrap block, and never fewer than 20 blocks (a single block
    would resample nothing)."""
    days = max(holdout["created_at"].dt.floor("D").nunique(), 1)
    return max(min(len(holdout) // days, len(holdout) // 20), 1)


def judge_bandit(
    candidate: np.ndarray,
    training: pd.DataFrame,
    holdout: pd.DataFrame,
    *,
    prod: tuple[str, np.ndarray] | None,
    seed: int = 0,
) -> tuple[Verdict, dict]:
    """The gate's verdict on the candidate's holdout picks and each reference's figure with
    the candidate's margin over it (90 % interval). Resampled by blocks of a day's offers."""
    from ..gate import judge

    truth = holdout_truth(training, holdout)
    references = baselines(training, holdout, seed=seed)
    options = {"block": block_size(holdout), "unit": UNIT, "seed": seed}
    no_skill = {name: references[name] for name in NO_SKILL}
    verdict = judge(METRIC, replay_value, truth, candidate, no_skill, prod=prod, **options)
    best = judge(
        METRIC,
        replay_value,
        truth,
        candidate,
        {"best_global_arm": references["best_global_arm"]},
        **options,
    ).best
    verdict.baselines["best_global_arm"] = best.value
    if best.significantly_worse:
        low, high = best.interval
        verdict.reasons.append(
            f"worse than the best single arm ({ARMS[best_arm(training)]}): margin "
            f"{best.margin:+.4f}, interval [{low:+.4f}, {high:+.4f}]"
        )
    comparisons = {
        c.reference: {"value": c.value, "margin": c.margin, "interval": list(c.interval)}
        for c in (verdict.best, best, verdict.prod)
        if c is not None
    }
    figures = {
        name: comparisons.get(name, {"value": verdict.baselines.get(name)}) for name in references
    }
    return verdict, figures


def structural_reasons(
    candidate: Bandit, offers: int, prod, prod_bandit, min_share: float
) -> list[str]:
    """Why this bandit must not replace prod whatever its replay: arms it never saw pulled,
    or far fewer offers than the bandit serving (`--force` turns these into notes). A share
    below 1 lets a sliding window whose count dips from week to week through, while a
    window a fraction of prod's size (250 offers against 20,917) is refused."""
    reasons = []
    if candidate.unpulled():
        reasons.append(f"arms never pulled in the window: {', '.join(candidate.unpulled())}")
    if prod_bandit is not None and offers < min_share * prod_bandit.offers:
        reasons.append(
            f"trained on {offers:,} offers, under {min_share:.0%} of the "
            f"{prod_bandit.offers:,} of {prod.ref} (pricing.min_offers_share_of_prod)"
        )
    return reasons


def validation_checks(mv, artifact: bytes, config) -> list[Check]:
    """The state loads as a bandit over the current strategies and picks an arm."""
    from ..errors import MlkitError
    from ..validation import Check
    from .bandit import Bandit

    try:
        bandit = Bandit.from_snapshot(json.loads(artifact))
    except (MlkitError, ValueError) as exc:
        detail = exc.message if isinstance(exc, MlkitError) else f"{type(exc).__name__}: {exc}"
        return [Check("loads", False, detail)]
    checks = [Check("loads", True, f"{bandit.policy} bandit, {bandit.offers:,} offers")]
    same = list(mv.features or []) == list(ARMS)
    checks.append(
        Check(
            "features",
            same,
            "arms match the strategies" if same else f"arms {mv.features}, strategies {ARMS}",
        )
    )
    pick = int(bandit.pick(np.zeros(1, dtype=np.int64), np.random.default_rng(0))[0])
    checks.append(Check("predicts", 0 <= pick < len(ARMS), f"picks {ARMS[pick]}"))
    return checks
