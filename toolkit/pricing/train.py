"""`mlkit train mab`: the pricing bandit learned from order history.

The window's first fifth initialises the arms; the rest is replayed day by day with the replay
estimate of Li et al. (2011), unbiased because strategies were assigned independently of the buyer.
"""

from __future__ import annotations

import itertools
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
from .history import ARMS, load_history, normalised_reward, reward_scale
from .policies import check_policy, choose
from .state import ArmState, BanditStore

log = logging.getLogger("mlkit.train")

WARMUP_SHARE = 0.2


def replay(frame: pd.DataFrame, rewards: np.ndarray, policy: str, *, epsilon: float, seed: int):
    """Arm totals after the whole window and the replay's figures."""
    n_arms = len(ARMS)
    arms = frame["arm"].to_numpy()
    warm = max(int(len(frame) * WARMUP_SHARE), 1)
    pulls = np.bincount(arms[:warm], minlength=n_arms).astype(float)
    sums = np.bincount(arms[:warm], weights=rewards[:warm], minlength=n_arms)
    squares = np.bincount(arms[:warm], weights=rewards[:warm] ** 2, minlength=n_arms)
    rng = np.random.default_rng(seed)
    days = pd.to_datetime(frame["created_at"]).dt.floor("D").to_numpy()[warm:]
    bounds = np.flatnonzero(np.r_[True, days[1:] != days[:-1], True]) + warm
    matched = matched_reward = 0.0
    for start, end in itertools.pairwise(bounds):
        picked = choose(policy, pulls, sums, rng, epsilon=epsilon, size=end - start)
        agree = picked == arms[start:end]
        matched += agree.sum()
        matched_reward += rewards[start:end][agree].sum()
        pulls += np.bincount(arms[start:end], minlength=n_arms)
        sums += np.bincount(arms[start:end], weights=rewards[start:end], minlength=n_arms)
        squares += np.bincount(arms[start:end], weights=rewards[start:end] ** 2, minlength=n_arms)
    replayed = len(frame) - warm
    figures = {
        "warmup_offers": warm,
        "replayed_offers": replayed,
        "replay_days": len(bounds) - 1,
        "replay_matched": int(matched),
        "policy_replay_reward": float(matched_reward / matched) if matched else None,
        "logged_reward": float(rewards[warm:].mean()) if replayed else None,
    }
    return pulls, sums, squares, figures


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
    alias: str | None = "prod",
    force: bool = False,
    seed: int = 0,
) -> dict:
    """Learn the arms from the priced orders of [now - since, now), register and save them; fewer
    than `pricing.min_offers` offers raise TooLittleData before any run is recorded."""
    from ..runs import training_run
    from ..validation import promote_trained

    policy = check_policy(policy or config.get("pricing.policy"))
    surge = float(config.get("pricing.surge_ratio"))
    early = float(config.get("pricing.early_bird_ratio"))
    epsilon = float(config.get("pricing.epsilon"))
    cooldown = int(config.get("training.retry_cooldown_sec"))
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
    with training_run(engine, "pricing", cooldown_seconds=cooldown, force=force) as run:
        scale = reward_scale(frame["combined"].to_numpy())
        rewards = normalised_reward(frame["combined"].to_numpy(), scale)
        counts = np.bincount(frame["arm"], minlength=len(ARMS))
        log.info(
            "[TRAIN] Offers: %d since %s (%s)",
            len(frame),
            f"{start:%Y-%m-%d}",
            ", ".join(f"{a}: {c}" for a, c in zip(ARMS, counts, strict=True)),
        )
        pulls, sums, squares, figures = replay(frame, rewards, policy, epsilon=epsilon, seed=seed)
        states = _arm_states(pulls, sums, squares, now)
        means = {arm: s.mean for arm, s in states.items()}
        best = max(means, key=means.get)
        metrics = {
            "best_arm": best,
            "mean_reward": means,
            "conversion": _per_arm(frame, "conversion"),
            "revenue_ratio": _per_arm(frame, "revenue"),
            **figures,
        }
        truth = best_pricing_arm(engine, frame)
        if truth:
            metrics["oracle_best_arm"] = truth
        log.info(
            "[TRAIN] Best arm: %s (mean reward %.4f); replay reward %s vs logged %s",
            best,
            means[best],
            _fmt(figures["policy_replay_reward"]),
            _fmt(figures["logged_reward"]),
        )
        params = {
            "policy": policy,
            "reward_scale": scale,
            "surge_ratio": surge,
            "early_bird_ratio": early,
            "since": start.isoformat(),
            "until": now.isoformat(),
        }
        mv = _register(engine, config, states, metrics, params)
        # The live state changes only once the snapshot is safely registered.
        BanditStore(engine, redis).save(states)
        run.finish(
            version=mv.version,
            n_samples=len(frame),
            class_distribution=dict(zip(ARMS, counts.tolist(), strict=True)),
            metrics={
                "best_arm_mean_reward": means[best],
                **{k: v for k, v in figures.items() if isinstance(v, float)},
            },
        )
        if alias:  # inside the run: a version failing its gate makes the run `rejected`
            promote_trained(engine, config, mv, alias, reason=f"trained on {len(frame)} offers")
    return {
        "model": "pricing",
        "version": mv.version,
        "policy": policy,
        "offers": len(frame),
        "since": start.isoformat(),
        "reward_scale": scale,
        "arms": {arm: s.as_dict() for arm, s in states.items()},
        "metrics": metrics,
        "alias": alias or None,
    }


def _arm_states(pulls, sums, squares, now) -> dict[str, ArmState]:
    """Each arm's state from its totals: counts, reward sums and a Beta(1 + wins, 1 + losses)."""
    return {
        arm: ArmState(
            arm=arm,
            pulls=int(pulls[i]),
            reward_sum=float(sums[i]),
            reward_sq_sum=float(squares[i]),
            alpha=1.0 + float(sums[i]),
            beta=1.0 + float(pulls[i] - sums[i]),
            updated_at=now,
        )
        for i, arm in enumerate(ARMS)
    }


def _register(engine: Engine, config, states: dict, metrics: dict, params: dict):
    """Register the arms' snapshot (state.json) as a new pricing version."""
    from ..registry import register_model

    snapshot = {
        "bandit": "pricing",
        "policy": params["policy"],
        "reward_scale": params["reward_scale"],
        "arms": {arm: s.as_dict() for arm, s in states.items()},
    }
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
