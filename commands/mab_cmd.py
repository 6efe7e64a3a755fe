"""`mlkit mab`: the pricing bandit online: recommend, reward, stats, reset, simulate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ._common import (
    JsonFlag,
    YesFlag,
    confirm_destructive,
    emit_json,
    err,
    fail,
    load_config,
    open_engine,
    stdout_console,
)

if TYPE_CHECKING:
    from mlkit.toolkit.pricing.state import BanditStore

app = typer.Typer(
    help="The pricing bandit: recommend a strategy, record rewards, inspect and reset arms.",
    no_args_is_help=True,
)

PolicyOption = Annotated[
    str | None,
    typer.Option("--policy", help="thompson, ucb1 or egreedy (default: pricing.policy)."),
]


def bandit_store(ctx: typer.Context) -> BanditStore:
    """The store over the configured database and Redis; says so when Redis is missing."""
    from mlkit.toolkit.cache import redis_client
    from mlkit.toolkit.config import mask_url
    from mlkit.toolkit.pricing.state import BanditStore

    config = load_config(ctx)
    redis = redis_client(config.redis_url, required=False)
    if redis is None:
        where = f"unreachable at {mask_url(config.redis_url)}" if config.redis_url else "disabled"
        err(f"warning: Redis {where}: the bandit reads and writes the database only")
    return BanditStore(open_engine(ctx, config), redis)


@app.command("recommend")
def recommend(
    ctx: typer.Context,
    event: Annotated[int, typer.Option("--event", help="Event id to price.")],
    policy: PolicyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Pick a pricing strategy for an event with the bandit's policy, and its price.

    Example: mlkit mab recommend --event 42 --json
    """
    from mlkit.toolkit.pricing.service import recommend as recommend_strategy

    store = bandit_store(ctx)
    result = recommend_strategy(store.engine, store, load_config(ctx), event, policy=policy)
    if not result["trained"]:
        err("warning: the bandit has no pulls yet (run: mlkit train mab); this pick is a guess")
    if as_json:
        emit_json(result)
        return
    stdout_console().print(
        f"event {result['event_id']} ({result['event']}): {result['strategy']} at "
        f"{result['price']:.2f} (base {result['base_price']:.2f}, {result['policy']}, "
        f"state from {result['source']})"
    )


@app.command("reward")
def reward(
    ctx: typer.Context,
    event: Annotated[int, typer.Option("--event", help="Event the offer was for.")],
    arm: Annotated[str, typer.Option("--arm", help="Strategy that priced it.")],
    value: Annotated[
        float, typer.Option("--reward", help="Normalised reward in [0, 1] (1 = converted).")
    ],
    as_json: JsonFlag = False,
) -> None:
    """Record one reward: an atomic increment in the database, mirrored to Redis.

    Concurrent rewards never lose an update, in either store.

    Example: mlkit mab reward --event 42 --arm surge_pricing --reward 1
    """
    from mlkit.toolkit.pricing.service import event_demand
    from mlkit.toolkit.pricing.state import check_arm, check_reward

    check_arm(arm)
    check_reward(value)
    store = bandit_store(ctx)
    event_demand(store.engine, event)  # an unknown event is refused before anything is written
    state = store.record(arm, value)
    if as_json:
        emit_json({"event_id": event, **state.as_dict()})
        return
    stdout_console().print(
        f"{arm}: {state.pulls:,} pulls, mean reward {state.mean:.4f} (event {event})"
    )


@app.command("stats")
def stats(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Per arm: pulls, mean reward, share of pulls, 90 % posterior interval, best arm.

    Read from Redis when it holds the database's current generation; otherwise (Redis
    down, flushed, behind a train or reset, or holding another database's state) from the
    database, and Redis is written again from it.

    Example: mlkit mab stats --json
    """
    from mlkit.toolkit.pricing.service import stats_report

    store = bandit_store(ctx)
    report = stats_report(*store.read())
    if as_json:
        emit_json(report)
        return
    from rich.table import Table

    table = Table(
        title=f"pricing bandit ({report['total_pulls']:,} pulls, from {report['source']})"
    )
    for column in ("arm", "pulls", "share", "mean reward", "90% interval", "updated"):
        table.add_column(column, justify="left" if column in ("arm", "updated") else "right")
    for arm, a in report["arms"].items():
        low, high = a["interval_90"]
        table.add_row(
            f"[bold green]{arm} *[/]" if a["best"] else arm,
            f"{a['pulls']:,}",
            f"{a['share']:.1%}",
            f"{a['mean']:.4f}",
            f"{low:.4f}-{high:.4f}",
            a["updated_at"] or "",
        )
    stdout_console().print(table)


@app.command("reset")
def reset(ctx: typer.Context, yes: YesFlag = False, as_json: JsonFlag = False) -> None:
    """Forget the bandit's state in the database and Redis (retrain with `mlkit train mab`).

    Asks first on a terminal; needs --yes elsewhere.

    The database starts a new generation, so a Redis that missed the reset is rewritten
    from the database on its next read, never served.

    Example: mlkit mab reset --yes
    """
    from mlkit.toolkit.pricing.state import REDIS_UNREACHABLE

    confirm_destructive("mab reset forgets every arm's statistics", yes)
    store = bandit_store(ctx)
    if store.reset():
        redis, said = "reset", "bandit state deleted from the database and Redis"
    elif load_config(ctx).redis_url:
        redis, said = "unreachable", f"bandit state deleted from the database; {REDIS_UNREACHABLE}"
    else:
        redis, said = "disabled", "bandit state deleted from the database (Redis is disabled)"
    if as_json:
        emit_json({"database": "reset", "redis": redis})
    else:
        err(said)


@app.command("simulate")
def simulate(
    ctx: typer.Context,
    arms: Annotated[
        str | None, typer.Option("--arms", help="True success rates, e.g. 0.05,0.04,0.03,0.02.")
    ] = None,
    horizon: Annotated[int, typer.Option("--horizon", help="Steps to play.")] = 20_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of outcomes and policy.")] = 1,
    policy: PolicyOption = None,
    from_demo: Annotated[
        bool, typer.Option("--from-demo", help="Use the demo truth's arm curves instead.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Play a policy against Bernoulli arms and report its regret.

    Cumulative regret is the expected reward lost against always playing the best arm.

    Example: mlkit mab simulate --arms 0.05,0.04,0.03,0.02 --horizon 20000 --seed 1 --json
    """
    from mlkit.toolkit.pricing import service

    config = load_config(ctx)
    policy = policy or config.get("pricing.policy")
    if from_demo == (arms is not None):
        fail("give either --arms RATES or --from-demo", hint="e.g. --arms 0.05,0.04,0.03,0.02")
    scale = None
    if from_demo:
        names, rates, scale = service.demo_environment(open_engine(ctx, config))
    else:
        rates = service.parse_rates(arms)
        names = [f"arm{i}" for i in range(len(rates))]
    result = service.run_simulation(
        names,
        rates,
        horizon=horizon,
        seed=seed,
        policy=policy,
        epsilon=float(config.get("pricing.epsilon")),
        scale=scale,
    )
    if as_json:
        emit_json(result)
        return
    pulls = ", ".join(f"{n} {p:,}" for n, p in result["pulls"].items())
    stdout_console().print(
        f"{policy}, {horizon:,} steps: cumulative regret {result['cumulative_regret']:.1f}, "
        f"best arm {result['best_arm']} got {result['best_arm_share']:.1%} (pulls: {pulls})"
    )
