"""What `mlkit mab` does online: recommend a strategy and price, report the arms,
simulate policies. Importable by a backend as is."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import schema
from ..errors import MlkitError
from ..inputs import positive_id
from .posterior import stats_report
from .state import ARMS, ArmState, BanditStore, check_arm, check_reward

if TYPE_CHECKING:  # numpy where a pick is drawn: `mab reward` and `mab stats` go without it
    import numpy as np


def strategy_price(arm: str, base_price: float, sell_through: float, config) -> float:
    """The price a strategy asks: surge and early bird apply their configured multiplier;
    ml_pricing moves between the early-bird and surge thresholds with the event's
    sell-through, so it always reads back as ml_pricing."""
    surge = float(config.get("pricing.surge_ratio"))
    early = float(config.get("pricing.early_bird_ratio"))
    if arm == "surge_pricing":
        ratio = float(config.get("pricing.surge_multiplier"))
    elif arm == "early_bird":
        ratio = float(config.get("pricing.early_bird_multiplier"))
    elif arm == "ml_pricing":
        low, high = early + 0.01, surge - 0.01
        ratio = low + (high - low) * min(max(sell_through, 0.0), 1.0)
        if abs(ratio - 1.0) < 1e-9:
            ratio += 0.01
    else:
        ratio = 1.0
    return round(base_price * ratio, 2)


def event_demand(engine: Engine, event_id: int) -> dict:
    """An event's base price, capacity and completed primary sales so far (indexed)."""
    event_id = positive_id(event_id, "--event")  # a huge id would overflow the driver
    e, o = schema.events, schema.orders
    sold = (
        sa.select(sa.func.count())
        .select_from(o)
        .where(o.c.event_id == event_id, o.c.status == "COMPLETED", o.c.is_resale == sa.false())
        .scalar_subquery()
        .label("sold")
    )
    with engine.connect() as conn:  # one statement: a recommendation is latency-bound
        event = conn.execute(
            sa.select(
                e.c.event_id, e.c.name, e.c.event_type, e.c.base_price, e.c.capacity, sold
            ).where(e.c.event_id == event_id)
        ).first()
    if event is None:
        raise MlkitError(f"no event {event_id}", hint="check the id in the events table")
    return {**event._asdict(), "sold": int(event.sold)}


@functools.cache
def _demands_statement() -> sa.Select:
    """`event_demand`'s read for a list of events (:event_ids), built once."""
    e, o = schema.events, schema.orders
    sold = (
        sa.select(sa.func.count())
        .select_from(o)
        .where(o.c.event_id == e.c.event_id, o.c.status == "COMPLETED", o.c.is_resale == sa.false())
        .scalar_subquery()
        .label("sold")
    )
    return sa.select(
        e.c.event_id, e.c.name, e.c.event_type, e.c.base_price, e.c.capacity, sold
    ).where(e.c.event_id.in_(sa.bindparam("event_ids", expanding=True)))


def event_demands(engine: Engine, event_ids: list[int]) -> dict[int, dict]:
    """`event_demand` of each of `event_ids` that exists, in one statement (set-based)."""
    with engine.connect() as conn:
        rows = conn.execute(_demands_statement(), {"event_ids": sorted(set(event_ids))}).all()
    return {row.event_id: {**row._asdict(), "sold": int(row.sold)} for row in rows}


def recommend(
    engine: Engine,
    store: BanditStore,
    config,
    event_id: int,
    *,
    policy: str | None = None,
    rng: np.random.Generator | None = None,
) -> dict:
    """A strategy and its price for one event, from the global arms or (pricing.context:
    event_type) the event type's arms shrunk towards the global ones."""
    (result,) = recommend_many(engine, store, config, [(event_id, policy)], rng=rng)
    if isinstance(result, MlkitError):
        raise result
    return result


def recommend_many(
    engine: Engine,
    store: BanditStore,
    config,
    asks: list[tuple[int, str | None]],
    *,
    rng: np.random.Generator | None = None,
) -> list[dict | MlkitError]:
    """`recommend` for each (event_id, policy) of `asks`, read together: one statement for
    their events, one stamp read and one Redis MGET for the arms they need; then the picks,
    drawn for every ask independently in one call per policy. An ask that is refused alone
    (an unknown policy or event) gets its MlkitError in its place."""
    import numpy as np

    from .bandit import Bandit, check_context
    from .policies import check_policy

    try:
        context, refusal = check_context(config.get("pricing.context")), None
    except MlkitError as exc:  # after the policy's check, as the bandit checks them
        context, refusal = "none", exc
    epsilon = float(config.get("pricing.epsilon"))
    results: list = [None] * len(asks)
    valid: list[tuple[int, int, str]] = []
    for i, (event_id, policy) in enumerate(asks):
        try:
            policy = check_policy(policy or config.get("pricing.policy"))
            if refusal is not None:
                raise refusal
            valid.append((i, positive_id(event_id, "--event"), policy))  # a huge id: overflow
        except MlkitError as exc:
            results[i] = exc
    events = event_demands(engine, [event_id for _, event_id, _ in valid]) if valid else {}
    contexts: list[str | None] = [None]
    if context == "event_type":
        contexts += sorted({event["event_type"] for event in events.values()})
    tables = store.read_many(contexts) if valid else {}
    rng = rng or np.random.default_rng()
    chosen: list[tuple] = []  # (ask, event, policy, its bandit, its row, the arms' source)
    bandits: dict[str, Bandit] = {}
    for i, event_id, policy in valid:
        event = events.get(event_id)
        if event is None:
            results[i] = MlkitError(f"no event {event_id}", hint="check the id in the events table")
            continue
        needed = [None, event["event_type"]] if context == "event_type" else [None]
        refused = [tables[c] for c in needed if isinstance(tables[c], MlkitError)]
        if refused:
            results[i] = refused[0]
            continue
        if policy not in bandits:  # one bandit per policy: row 0 global, 1 + k the types
            bandits[policy] = Bandit(policy, context, epsilon=epsilon)
            bandits[policy].types = [c for c in contexts if c is not None]
            bandits[policy].totals = np.array(
                [
                    np.zeros((3, len(ARMS)))
                    if isinstance(tables[c], MlkitError)
                    else _totals(tables[c][0])
                    for c in contexts  # a refused table's rows are never drawn
                ]
            )
        row = contexts.index(event["event_type"]) if context == "event_type" else 0
        chosen.append((i, event, policy, bandits[policy], row, tables[None][1]))
    # Each policy draws every pick of the batch in one call; rows are drawn independently,
    # as one call per pick would.
    arms: dict[int, str] = {}
    for policy, bandit in bandits.items():
        mine = [c for c in chosen if c[2] == policy]
        picked = bandit.pick(np.array([c[4] for c in mine]), rng)
        arms |= {c[0]: ARMS[int(a)] for c, a in zip(mine, picked, strict=True)}
    for i, event, policy, _, _, source in chosen:
        arm = arms[i]
        base = float(event["base_price"])
        sell_through = event["sold"] / event["capacity"] if event["capacity"] else 0.0
        results[i] = {
            "event_id": event["event_id"],
            "event": event["name"],
            "strategy": arm,
            "price": strategy_price(arm, base, sell_through, config),
            "base_price": base,
            "sell_through": round(sell_through, 4),
            "policy": policy,
            "context": event["event_type"] if context == "event_type" else None,
            "trained": sum(s.pulls for s in tables[None][0].values()) > 0,
            "source": source,
        }
    return results


def parse_rates(text: str) -> np.ndarray:
    import numpy as np

    try:
        rates = np.array([float(x) for x in text.split(",") if x.strip()])
    except ValueError:
        raise MlkitError(
            f"cannot read --arms {text!r}", hint="e.g. --arms 0.05,0.04,0.03,0.02"
        ) from None
    if len(rates) < 2 or not np.all((rates >= 0) & (rates <= 1)):
        raise MlkitError(
            "--arms needs two or more success rates in [0, 1]",
            hint="e.g. --arms 0.05,0.04,0.03,0.02",
        )
    return rates


def demo_environment(engine: Engine) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The demo truth's arms, conversion rates and payoff scale, to simulate against."""
    from ..demo.truth import pricing_arms

    return pricing_arms(engine, ARMS)


def run_simulation(
    names: list[str],
    rates: np.ndarray,
    *,
    horizon: int,
    seed: int,
    policy: str,
    epsilon: float,
    scale: np.ndarray | None = None,
) -> dict:
    from .policies import check_policy, simulate

    check_policy(policy)
    if horizon < 1:
        raise MlkitError("--horizon must be at least 1")
    result = simulate(policy, rates, horizon, seed, epsilon=epsilon, reward_scale=scale)
    value = rates * (scale if scale is not None else 1.0)
    return {
        "policy": policy,
        "horizon": horizon,
        "seed": seed,
        "arms": {n: float(v) for n, v in zip(names, value, strict=True)},
        "cumulative_regret": result["cumulative_regret"],
        "pulls": dict(zip(names, result["pulls"], strict=True)),
        "best_arm": names[result["best_arm"]],
        "best_arm_share": result["best_arm_share"],
    }


def _totals(states: dict[str, ArmState]) -> np.ndarray:
    """Pulls, reward sums and squared sums per arm: shape (3, arms)."""
    import numpy as np

    return np.array(
        [[getattr(states[a], k) for a in ARMS] for k in ("pulls", "reward_sum", "reward_sq_sum")],
        dtype=float,
    )


# ---------------------------------------------------------------- what `mlkit mab` does

Warn = Callable[[str], None]


def open_store(engine: Engine, config, warn: Warn) -> BanditStore:
    """The bandit's state over the database and Redis; `warn` is told when Redis is missing."""
    from ..cache import redis_client
    from ..config import mask_url

    redis = redis_client(config.redis_url, required=False)
    if redis is None:
        where = f"unreachable at {mask_url(config.redis_url)}" if config.redis_url else "disabled"
        warn(f"Redis {where}: the bandit reads and writes the database only")
    return BanditStore(engine, redis)


def recommend_price(
    engine: Engine,
    config,
    event_id: int,
    *,
    policy: str | None,
    warn: Warn,
    store: BanditStore | None = None,
) -> dict:
    """`mlkit mab recommend`: `recommend` on `store` (default: the configured stores); `warn`
    is told when the bandit has never been trained."""
    (result,) = recommend_prices(engine, config, [(event_id, policy)], warn=warn, store=store)
    if isinstance(result, MlkitError):
        raise result
    return result


def recommend_prices(
    engine: Engine,
    config,
    asks: list[tuple[int, str | None]],
    *,
    warn: Warn,
    store: BanditStore | None = None,
) -> list[dict | MlkitError]:
    """`recommend_price` of each (event_id, policy) of `asks`, together (`recommend_many`);
    `warn` is told once when the bandit has never been trained."""
    store = store or open_store(engine, config, warn)
    results = recommend_many(engine, store, config, asks)
    if any(isinstance(r, dict) and not r["trained"] for r in results):
        warn("the bandit has no pulls yet (run: mlkit train mab); this pick is a guess")
    return results


def record_reward(
    engine: Engine,
    config,
    event_id: int,
    arm: str,
    reward: float,
    *,
    warn: Warn,
    store: BanditStore | None = None,
) -> dict:
    """`mlkit mab reward`: one reward added to an arm of the global bandit and of the event
    type's, on `store` (default: the configured stores); the global arm's state after it."""
    check_arm(arm)
    check_reward(reward)
    store = store or open_store(engine, config, warn)
    event = event_demand(engine, event_id)  # an unknown event is refused before any write
    return {"event_id": event_id, **store.record(arm, reward, event["event_type"]).as_dict()}


def arm_stats(engine: Engine, config, *, warn: Warn) -> dict:
    """`mlkit mab stats`: `stats_report` of the state as read now."""
    return stats_report(*open_store(engine, config, warn).read())


def reset_bandit(engine: Engine, config, *, warn: Warn) -> dict:
    """`mlkit mab reset`: every arm forgotten; `redis` says whether Redis was reset,
    unreachable or disabled."""
    if open_store(engine, config, warn).reset():
        redis = "reset"
    else:
        redis = "unreachable" if config.redis_url else "disabled"
    return {"database": "reset", "redis": redis}


def simulate_configured(
    config,
    *,
    arms: str | None,
    demo_engine: Engine | None,
    horizon: int,
    seed: int,
    policy: str | None,
) -> dict:
    """`mlkit mab simulate`: `run_simulation` against the rates `arms` lists, or against the
    demo truth's arms of `demo_engine`; the policy defaults to pricing.policy."""
    scale = None
    if demo_engine is not None:
        names, rates, scale = demo_environment(demo_engine)
    else:
        rates = parse_rates(arms or "")
        names = [f"arm{i}" for i in range(len(rates))]
    return run_simulation(
        names,
        rates,
        horizon=horizon,
        seed=seed,
        policy=policy or config.get("pricing.policy"),
        epsilon=float(config.get("pricing.epsilon")),
        scale=scale,
    )
