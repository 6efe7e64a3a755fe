"""`mlkit train mab`: the pricing bandit learned from order history.

The window's first four fifths train the candidate; the last fifth is replayed with the replay
estimate of Li et al. (2011), unbiased because strategies were assigned independently of the
buyer, and judged by the promotion gate (`family.py`). The registered bandit has learned the whole
window; the live arms (Redis and the database) change only when it reaches prod.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from ..clock import parse_moment, utcnow
from ..demo.truth import best_pricing_arm
from ..errors import MlkitError, TooLittleData
from . import family
from .bandit import Bandit
from .history import ARMS, load_history, reward_scale
from .policies import check_policy
from .state import ArmState, BanditStore

log = logging.getLogger("mlkit.train")


def check_enough_offers(offers: int, minimum: int, start, now) -> None:
    """Too few offers in the window would replace the live arms with noise: refuse."""
    if offers < minimum:
        raise TooLittleData(
            f"{offers:,} priced primary orders between {start:%Y-%m-%d %H:%M} and "
            f"{now:%Y-%m-%d %H:%M} UTC, fewer than pricing.min_offers ({minimum}): "
            "the bandit is left as it is",
            hint="widen --since (it counts back from now; --as-of moves now), "
            "or load orders (try: mlkit demo seed)",
        )


def train_bandit(
    engine: Engine,
    config,
    redis=None,
    *,
    since: str = "90d",
    policy: str | None = None,
    context: str | None = None,
    alias: str | None = "prod",
    force: bool = False,
    seed: int = 0,
) -> dict:
    """Learn the arms from the priced orders of [now - since, now), register them, promote
    through the gate and, once prod, save them as the live arms; fewer than
    `pricing.min_offers` offers raise TooLittleData before any run is recorded. `force` also
    ignores a failure cooldown, and lets a bandit of fewer offers than prod's, or with arms
    never pulled, through (the gate's notes say so)."""
    from ..runs import training_run
    from ..validation import promote_trained

    policy = check_policy(policy or config.get("pricing.policy"))
    bandit = Bandit(
        policy,
        context or config.get("pricing.context"),
        epsilon=float(config.get("pricing.epsilon")),
    )
    surge = float(config.get("pricing.surge_ratio"))
    early = float(config.get("pricing.early_bird_ratio"))
    now = utcnow()
    start = parse_moment(since, now=now, option="--since")
    if start >= now:
        raise MlkitError(
            f"--since {since} is not before now ({now:%Y-%m-%d %H:%M} UTC)",
            hint="give a duration like 90d or an earlier date",
        )
    with engine.connect() as conn:
        frame = load_history(conn, start, surge=surge, early=early, until=now)
    check_enough_offers(len(frame), int(config.get("pricing.min_offers")), start, now)
    cooldown = int(config.get("training.retry_cooldown_sec"))
    with training_run(engine, "pricing", cooldown_seconds=cooldown, force=force) as run:
        counts = np.bincount(frame["arm"], minlength=len(ARMS))
        log.info(
            "[TRAIN] Offers: %d since %s (%s)",
            len(frame),
            f"{start:%Y-%m-%d}",
            ", ".join(f"{a}: {c}" for a, c in zip(ARMS, counts, strict=True)),
        )
        serving = family.serving_bandit(engine, config)
        metrics = learn_and_judge(
            bandit,
            frame,
            serving,
            force=force,
            seed=seed,
            min_share=float(config.get("pricing.min_offers_share_of_prod")),
        )
        metrics["conversion"] = _per_arm(frame, "conversion")
        metrics["revenue_ratio"] = _per_arm(frame, "revenue")
        truth = best_pricing_arm(engine, frame)
        if truth:
            metrics["oracle_best_arm"] = truth
        log.info("[TRAIN] %s", metrics["gate"]["summary"])
        params = {
            "policy": policy,
            "context": bandit.context,
            "reward_scale": bandit.scale,
            "surge_ratio": surge,
            "early_bird_ratio": early,
            "since": start.isoformat(),
            "until": now.isoformat(),
        }
        mv = _register(engine, config, bandit, metrics, params)
        run.finish(
            version=mv.version,
            n_samples=len(frame),
            class_distribution=dict(zip(ARMS, counts.tolist(), strict=True)),
            metrics={k: v for k, v in metrics.items() if isinstance(v, float)},
        )
        if alias:  # inside the run: a version failing its gate makes the run `rejected`
            promote_trained(engine, config, mv, alias, reason=f"trained on {len(frame)} offers")
    states = _arm_states(bandit, 0, now)
    if alias == "prod":  # the live arms are prod's
        contexts = {name: _arm_states(bandit, i + 1, now) for i, name in enumerate(bandit.types)}
        BanditStore(engine, redis).save(states, contexts)
    return {
        "model": "pricing",
        "version": mv.version,
        "policy": policy,
        "context": bandit.context,
        "offers": len(frame),
        "since": start.isoformat(),
        "reward_scale": bandit.scale,
        "arms": {arm: s.as_dict() for arm, s in states.items()},
        "metrics": metrics,
        "alias": alias or None,
    }


def learn_and_judge(
    bandit: Bandit,
    frame: pd.DataFrame,
    serving: tuple,
    *,
    force: bool = False,
    seed: int = 0,
    min_share: float = 1.0,
) -> dict:
    """Train `bandit` on the window's first offers, replay the rest (it learns them too),
    judge it against the references and `serving` (`family.serving_bandit`: pricing@prod's
    version, bandit and why it is left out): the version's metrics."""
    cut = family.holdout_start(len(frame))
    training, holdout = frame.iloc[:cut], frame.iloc[cut:]
    bandit.scale = reward_scale(training["combined"].to_numpy())
    bandit.learn(
        training["arm"].to_numpy(),
        training["combined"].to_numpy(dtype=float),
        bandit.rows(training["event_type"].tolist()),
    )
    picks = bandit.replay(holdout, np.random.default_rng([seed, 1]))
    prod_mv, prod_bandit, left_out = serving
    structural = family.structural_reasons(
        bandit,
        len(frame),
        prod_mv,
        prod_bandit,
        min_share,
    )
    prod = None
    if prod_bandit is not None:  # it learns the holdout as it goes, like the candidate
        prod = (prod_mv.ref, prod_bandit.replay(holdout, np.random.default_rng([seed, 2])))
    verdict, baselines = family.judge_bandit(picks, training, holdout, prod=prod, seed=seed)
    if left_out:
        verdict.notes.append(left_out)
    if force:
        verdict.notes += [f"--force: {reason}" for reason in structural]
    else:
        verdict.reasons += structural
    totals = bandit.totals[0]
    means = {
        arm: float(totals[1, i] / totals[0, i]) if totals[0, i] else 0.0
        for i, arm in enumerate(ARMS)
    }
    truth = family.holdout_truth(training, holdout)
    return {
        "best_arm": max(means, key=means.get),
        "mean_reward": means,
        "training_offers": len(training),
        "replayed_offers": len(holdout),
        "replay_days": int(holdout["created_at"].dt.floor("D").nunique()),
        "replay_matched": int((picks == truth[:, 0]).sum()),
        "policy_replay_reward": _finite(family.replay_value(truth, picks)),
        "logged_reward": float(holdout["combined"].mean()),
        "baselines": baselines,
        "gate": verdict.as_dict() | {"summary": verdict.summary()},
    }


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None


def _arm_states(bandit: Bandit, row: int, now) -> dict[str, ArmState]:
    """One row's arms as states: counts, reward sums and a Beta(1 + wins, 1 + losses)."""
    return {
        arm: ArmState(
            arm=arm,
            pulls=t["pulls"],
            reward_sum=t["reward_sum"],
            reward_sq_sum=t["reward_sq_sum"],
            alpha=1.0 + t["reward_sum"],
            beta=1.0 + t["pulls"] - t["reward_sum"],
            updated_at=now,
        )
        for arm, t in bandit.arm_table(row).items()
    }


def _register(engine: Engine, config, bandit: Bandit, metrics: dict, params: dict):
    """Register the bandit's snapshot (state.json) as a new pricing version."""
    from ..registry import register_model

    snapshot = bandit.snapshot()
    return register_model(
        engine,
        config.artifacts_dir,
        name="pricing",
        family="pricing",
        write_artifact=lambda path: Path(path).write_text(json.dumps(snapshot, indent=2)),
        filename="state.json",
        metrics=metrics,
        params=params,
        features=list(ARMS),
    )


def _per_arm(frame: pd.DataFrame, column: str) -> dict:
    means = frame.groupby("arm")[column].mean()
    return {arm: float(means.get(i, float("nan"))) for i, arm in enumerate(ARMS)}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def bandit_redis(config, warn: Callable[[str], None]):
    """A Redis client for the bandit's state, or None after `warn` heard it goes to the
    database only."""
    from ..cache import redis_client

    redis = redis_client(config.redis_url, required=False)
    if redis is None:
        warn(
            "the bandit state is saved to the database only; "
            "Redis unreachable, it will be rewritten on the next read"
        )
    return redis


def train_bandit_configured(
    engine: Engine,
    config,
    *,
    since: str,
    policy: str | None,
    alias: str | None,
    force: bool,
    warn: Callable[[str], None],
) -> dict:
    """`mlkit train mab`: `train_bandit` saving to the configured Redis when it answers."""
    redis = bandit_redis(config, warn)
    return train_bandit(engine, config, redis, since=since, policy=policy, alias=alias, force=force)
