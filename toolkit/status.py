"""Per model family: what is trained, promoted, running or cooling down."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .errors import MlkitError
from .schema import bandit_arms, bandit_generations, model_aliases, model_versions, training_runs

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from .config import Config

STATUS_TABLES = (model_versions, model_aliases, training_runs, bandit_arms, bandit_generations)


def status_report(engine: Engine, config: Config) -> dict[str, dict[str, Any]]:
    """`mlkit status`: every family's status with the pricing bandit's arms; an error
    naming the fix when the registry tables are missing."""
    from .cache import redis_client

    with engine.connect() as conn:
        existing = set(sa.inspect(conn).get_table_names())
    if any(table.name not in existing for table in STATUS_TABLES):
        raise MlkitError(
            "the registry tables are missing in this database",
            hint="create them with `mlkit db init`",
        )
    return family_status(engine, redis_client(config.redis_url, required=False))


def family_status(engine: Engine, redis=None, *, bandit: bool = True) -> dict[str, dict]:
    """Per family: trained or not, prod/candidate/latest versions, the last training run and
    any cooldown, and under `waiting` the latest version when it does not serve and why (its
    gate's verdict); pricing adds its bandit's arms (with `bandit`), signal its models per
    symbol (the family is trained when any symbol is)."""
    from .families import status
    from .runs import training_status
    from .signal.run import family_training_status

    document = training_status(engine)
    for name, info in document.items():
        info["waiting"] = status(engine, name)["waiting"] if info["is_trained"] else None
    if bandit and "pricing" in document:
        document["pricing"]["bandit"] = bandit_report(engine, redis)
    if "signal" in document:
        symbols = family_training_status(engine)
        for symbol, entry in symbols.items():
            entry["waiting"] = status(engine, f"signal-{symbol}")["waiting"]
        document["signal"]["symbols"] = symbols
        document["signal"]["is_trained"] = document["signal"]["is_trained"] or any(
            entry["is_trained"] for entry in symbols.values()
        )
    return document


def bandit_report(engine: Engine, redis=None) -> dict | None:
    """The pricing bandit's arms as `mlkit mab stats` reports them; None when untrained."""
    from .pricing.service import stats_report
    from .pricing.state import BanditStore

    store = BanditStore(engine, redis)
    return stats_report(*store.read()) if store.is_trained() else None
