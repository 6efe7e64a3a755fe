"""The quickstart: from an empty database to a demo world with every model family serving."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from .config import Config

DEMO_SIGNAL_SYMBOL = "BTCUSDT"
STEPS = 8  # seed, features, dataset, training, scoring, recommender, bandit, signal
# The step bar's label beside the seed's and the ETL's own bars.
STEP_LABEL = "quickstart"

Progress = Callable[[str, int, int | None], None]


def _no_progress(label: str, done: int, total: int | None) -> None:
    return None


def run_quickstart(
    engine: Engine,
    config: Config,
    *,
    orders: int,
    seed: int,
    confirm_replace: Callable[[str], None],
    progress: Progress = _no_progress,
) -> dict[str, Any]:
    """Seed a demo world, build and promote the fraud model, score every order, train the
    recommender and the bandit, run one trading signal; the summary.

    `confirm_replace(what)` is called before an existing demo world is replaced and raises to stop;
    a database holding rows no demo world wrote is refused untouched."""
    from .db import dialect_name, init_schema, masked, table_counts
    from .demo.seed import require_own_database, seed_demo
    from .fraud.etl import resolve_range, run_etl

    init_schema(engine)
    if require_own_database(engine):
        confirm_replace("the database already holds a demo world: quickstart replaces it")
    steps = iter(range(1, STEPS + 1))

    def step() -> None:
        progress(STEP_LABEL, next(steps), STEPS)

    seeded = seed_demo(engine, orders=orders, seed=seed, replace=True, progress=progress)
    step()
    etl = run_etl(engine, *resolve_range(engine, None, None), progress=progress)
    step()
    fraud = _fraud(engine, config, step)
    recommender = _recommender(engine, config)
    step()
    bandit = _bandit(engine, config)
    step()
    signal = _signal(engine, config)
    step()
    counts = table_counts(engine)
    return {
        "database": masked(engine),
        "dialect": dialect_name(engine),
        "seed": seeded.as_dict(),
        "etl": etl.as_dict(),
        **fraud,
        "recommender": recommender,
        "bandit": bandit,
        "signal": signal,
        "tables": counts,
        "live": "mlkit demo stream --rate 20 --duration 600 &  mlkit dashboard",
        "next": _next_commands(recommender["user_id"], seeded.end + timedelta(days=7)),
    }


def _fraud(engine: Engine, config: Config, step: Callable[[], None]) -> dict[str, Any]:
    """A snapshot, a model trained on it as candidate, validated into prod, every order scored."""
    from .fraud.dataset import build_from_config
    from .fraud.pipeline import train_fraud_model
    from .fraud.scoring import Thresholds, score_orders
    from .registry import promote
    from .validation import validation_failures

    dataset = build_from_config(engine, config, set_current=True)
    step()
    trained = train_fraud_model(engine, config, dataset="current", alias="candidate", force=True)
    step()
    prod = promote(
        engine,
        "fraud",
        trained["version"],
        "prod",
        validate=lambda mv: validation_failures(mv, config),
        reason="mlkit quickstart",
    )
    scored = score_orders(
        engine, prod, Thresholds.from_config(config), artifacts_dir=config.artifacts_dir
    )
    step()
    metrics = {k: v for k, v in trained["metrics"].items() if isinstance(v, float)}
    model = {k: trained[k] for k in ("model", "version", "kind", "alias", "artifact")}
    return {
        "dataset": dataset.as_dict(),
        "model": model | {"metrics": metrics, "prod": prod.version},
        "scoring": scored.as_dict(),
    }


def _recommender(engine: Engine, config: Config) -> dict[str, Any]:
    """The recommender from the shop's interactions, and one shopper's picks."""
    from .recommender.serve import Recommender
    from .recommender.train import train_recommender

    # The world ends at the start of today; windows count back from now and hold all of it.
    shop = train_recommender(engine, config, days=365, force=True)
    recommender = Recommender.open(engine, config)
    shopper = int(recommender.model.user_ids[0])
    picks = recommender.for_user(shopper, 3)
    return {
        "version": shop["version"],
        "metrics": shop["metrics"],
        "user_id": shopper,
        "items": picks["items"],
    }


def _bandit(engine: Engine, config: Config) -> dict[str, Any]:
    """The pricing bandit from the same orders; its state goes to Redis when it answers."""
    from .cache import redis_client
    from .pricing.train import train_bandit

    redis = redis_client(config.redis_url, required=False)
    bandit = train_bandit(engine, config, redis, since="365d", force=True)
    return {
        "version": bandit["version"],
        "offers": bandit["offers"],
        "best_arm": bandit["metrics"]["best_arm"],
        "mean_reward": bandit["metrics"]["mean_reward"],
    }


def _signal(engine: Engine, config: Config) -> dict[str, Any]:
    """One signal on the demo's hourly bars; the symbol's model is trained first when it
    has none (the automatic initial training)."""
    from .signal.run import run_signal

    signal = run_signal(engine, config, DEMO_SIGNAL_SYMBOL)
    keys = ("symbol", "ts", "signal", "confidence", "fallback", "model_version")
    return {k: signal[k] for k in keys} | {"training": signal["training"]["outcome"]}


def _next_commands(shopper: int, appended_end) -> list[str]:
    return [
        "mlkit db status",
        "mlkit features show --order 1",
        "mlkit inspect dataset --pointer current",
        "mlkit models list",
        "mlkit status",
        "mlkit signal status",
        "mlkit mab stats",
        f"mlkit recommend user {shopper}",
        "mlkit config show",
        # The appended week lies after now: drift looks at it as of its end.
        "mlkit demo seed --append --days 7 --shift price=1.5 && "
        f"mlkit --as-of {appended_end:%Y-%m-%d} drift check",
    ]
