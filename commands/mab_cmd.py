"""`mlkit mab`: the pricing bandit online: recommend, reward, stats, reset, simulate."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import (
    JsonFlag,
    YesFlag,
    confirm_destructive,
    emit_json,
    err,
    fail,
    load_config,
    load_context,
    open_engine,
    stdout_console,
)

app = typer.Typer(
    help="The pricing bandit: recommend a strategy, record rewards, inspect and reset arms.",
    no_args_is_help=True,
)

PolicyOption = Annotated[
    str | None,
    typer.Option("--policy", help="thompson, ucb1 or egreedy (default: pricing.policy)."),
]


def _warn(text: str) -> None:
    err(f"warning: {text}")


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
    from mlkit.toolkit.pricing.service import recommend_price

    config, engine = load_context(ctx)
    result = recommend_price(engine, config, event, policy=policy, warn=_warn)
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
    from mlkit.toolkit.pricing.service import record_reward

    config, engine = load_context(ctx)
    state = record_reward(engine, config, event, arm, value, warn=_warn)
    if as_json:
        emit_json(state)
        return
    stdout_console().print(
        f"{arm}: {state['pulls']:,} pulls, mean reward {state['mean']:.4f} (event {event})"
    )


@app.command("stats")
def stats(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Per arm: pulls, mean reward, share of pulls, 90 % posterior interval, best arm.

    Read from Redis when it holds the database's current generation; otherwise (Redis
    down, flushed, behind a train or reset, or holding another database's state) from the
    database, and Redis is written again from it.

    Example: mlkit mab stats --json
    """
    from mlkit.toolkit.pricing.service import arm_stats

    config, engine = load_context(ctx)
    report = arm_stats(engine, config, warn=_warn)
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
    from mlkit.toolkit.pricing.service import reset_bandit
    from mlkit.toolkit.pricing.state import REDIS_UNREACHABLE

    confirm_destructive("mab reset forgets every arm's statistics", yes)
    config, engine = load_context(ctx)
    document = reset_bandit(engine, config, warn=_warn)
    if as_json:
        emit_json(document)
        return
    err(
        {
            "reset": "bandit state deleted from the database and Redis",
            "unreachable": f"bandit state deleted from the database; {REDIS_UNREACHABLE}",
            "disabled": "bandit state deleted from the database (Redis is disabled)",
        }[document["redis"]]
    )


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
    from mlkit.toolkit.pricing.service import simulate_configured

    config = load_config(ctx)
    if from_demo == (arms is not None):
        fail("give either --arms RATES or --from-demo", hint="e.g. --arms 0.05,0.04,0.03,0.02")
    result = simulate_configured(
        config,
        arms=arms,
        demo_engine=open_engine(ctx, config) if from_demo else None,
        horizon=horizon,
        seed=seed,
        policy=policy,
    )
    if as_json:
        emit_json(result)
        return
    pulls = ", ".join(f"{n} {p:,}" for n, p in result["pulls"].items())
    stdout_console().print(
        f"{result['policy']}, {horizon:,} steps: cumulative regret "
        f"{result['cumulative_regret']:.1f}, best arm {result['best_arm']} got "
        f"{result['best_arm_share']:.1%} (pulls: {pulls})"
    )
