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
    recommender and the bandit, run one trading signal; the summary. A family whose
    promotion gate keeps its model from prod says why under `rejected`; the others go on.

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
        "next": _next_commands(recommender.get("user_id"), seeded.end + timedelta(days=7)),
    }


def _gated(train: Callable[[], dict]) -> tuple[dict | None, str | None]:
    """A family's training, or None and why when its promotion gate kept it from prod (it
    stays candidate; the other families go on)."""
    from .validation import CandidateRejected

    try:
        return train(), None
    except CandidateRejected as exc:
        return None, exc.message


def _fraud(engine: Engine, config: Config, step: Callable[[], None]) -> dict[str, Any]:
    """A snapshot, a model trained on it (candidate, then prod through its gate), every
    order scored by the version serving; `model` is that version (the logreg fallback when
    the candidate was rejected on a fresh world), or the rejected candidate when none serves."""
    from .fraud.dataset import build_from_config
    from .fraud.pipeline import train_fraud_model
    from .fraud.scoring import Thresholds, score_orders
    from .registry import alias_target, resolve

    dataset = build_from_config(engine, config, set_current=True)
    step()
    _, rejected = _gated(
        lambda: train_fraud_model(engine, config, dataset="current", alias="prod", force=True)
    )
    step()
    latest = resolve(engine, "fraud")
    serving = alias_target(engine, "fraud", "prod")  # a rejected version leaves the previous
    prod = None if serving is None else resolve(engine, f"fraud:{serving}")
    scored = (
        score_orders(
            engine, prod, Thresholds.from_config(config), artifacts_dir=config.artifacts_dir
        )
        if prod is not None
        else None
    )
    step()
    shown = latest if prod is None else prod  # a rejected candidate's fallback serves
    model = {
        "model": "fraud",
        "version": shown.version,
        "kind": shown.params.get("model"),
        "alias": "candidate" if prod is None else "prod",
        "artifact": str(shown.artifact_path),
        "metrics": {k: v for k, v in shown.metrics.items() if isinstance(v, float)},
        "prod": None if prod is None else prod.version,
        "rejected": rejected,
    }
    return {
        "dataset": dataset.as_dict(),
        "model": model,
        "scoring": None if scored is None else scored.as_dict(),
    }


def _recommender(engine: Engine, config: Config) -> dict[str, Any]:
    """The recommender from the shop's interactions, and one shopper's picks."""
    from .recommender.serve import Recommender
    from .recommender.train import train_recommender

    # The world ends at the start of today; windows count back from now and hold all of it.
    shop, rejected = _gated(lambda: train_recommender(engine, config, days=365, force=True))
    if shop is None:
        return {"rejected": rejected}
    recommender = Recommender.open(engine, config)
    shopper = int(recommender.model.user_ids[0])
    picks = recommender.for_user(shopper, 3)
    return {
        "version": shop["version"],
        "metrics": shop["metrics"],
        "user_id": shopper,
        "items": picks["items"],
        "rejected": None,
    }


def _bandit(engine: Engine, config: Config) -> dict[str, Any]:
    """The pricing bandit from the same orders; its state goes to Redis when it answers."""
    from .cache import redis_client
    from .pricing.train import train_bandit

    redis = redis_client(config.redis_url, required=False)
    bandit, rejected = _gated(lambda: train_bandit(engine, config, redis, since="365d", force=True))
    if bandit is None:
        return {"rejected": rejected}
    return {
        "version": bandit["version"],
        "offers": bandit["offers"],
        "best_arm": bandit["metrics"]["best_arm"],
        "mean_reward": bandit["metrics"]["mean_reward"],
        "rejected": None,
    }


def _signal(engine: Engine, config: Config) -> dict[str, Any]:
    """One signal on the demo's hourly bars; the symbol's model is trained first when it
    has none (the automatic initial training)."""
    from .signal.run import run_signal

    signal = run_signal(engine, config, DEMO_SIGNAL_SYMBOL)
    keys = ("symbol", "ts", "signal", "confidence", "fallback", "model_version")
    training = signal["training"]
    return {k: signal[k] for k in keys} | {
        "training": training["outcome"],
        "training_detail": training.get("detail"),
    }


def _next_commands(shopper: int | None, appended_end) -> list[str]:
    return [
        "mlkit db status",
        "mlkit features show --order 1",
        "mlkit inspect dataset --pointer current",
        "mlkit models list",
        "mlkit status",
        "mlkit signal status",
        "mlkit mab stats",
        "mlkit recommend popular" if shopper is None else f"mlkit recommend user {shopper}",
        "mlkit config show",
        # The appended week lies after now: drift looks at it as of its end.
        "mlkit demo seed --append --days 7 --shift price=1.5 && "
        f"mlkit --as-of {appended_end:%Y-%m-%d} drift check",
    ]
