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
    symbol (the family is trained when any symbol is, and its last run and cooldown are its
    symbols' newest). Each family's `state` and `state_detail` (see `family_state`) are what
    `mlkit status` and the dashboard show. Reads no pandas: the dashboard polls it."""
    from .families import status
    from .runs import training_status

    document = training_status(engine)
    for name, info in document.items():
        info["waiting"] = status(engine, name)["waiting"] if info["is_trained"] else None
    if bandit and "pricing" in document:
        document["pricing"]["bandit"] = bandit_report(engine, redis)
    if "signal" in document:
        names = [f"signal-{symbol}" for symbol in model_symbols(engine)]
        symbols = {
            name.removeprefix("signal-"): entry
            for name, entry in (training_status(engine, names) if names else {}).items()
        }
        for symbol, entry in symbols.items():
            entry["waiting"] = status(engine, f"signal-{symbol}")["waiting"]
            entry["state"], entry["state_detail"] = family_state(entry)
        _roll_up_symbols(document["signal"], symbols)
    for info in document.values():
        info["state"], info["state_detail"] = family_state(info)
    return document


def model_symbols(engine: Engine) -> list[str]:
    """Symbols whose signal model has a version or a training run."""
    with engine.connect() as conn:
        names = conn.execute(
            sa.union(
                sa.select(model_versions.c.name).where(model_versions.c.name.like("signal-%")),
                sa.select(training_runs.c.model_name).where(
                    training_runs.c.model_name.like("signal-%")
                ),
            )
        ).scalars()
        return sorted(name.removeprefix("signal-") for name in names)


def _roll_up_symbols(info: dict, symbols: dict[str, dict]) -> None:
    """The signal family's own fields from its symbols' (its runs are named per symbol): trained
    when one is, the newest last run and last success, cooling down when one is."""
    info["symbols"] = symbols
    if not symbols:
        return
    info["is_trained"] = info["is_trained"] or any(e["is_trained"] for e in symbols.values())
    for field in ("last_training", "last_success"):
        runs = [e[field] for e in symbols.values() if e[field] is not None]
        if info[field] is None and runs:
            info[field] = max(runs, key=lambda run: (run["started_at"], run["run_id"]))
    cooling = [e["next_retry_at"] for e in symbols.values() if e["cooldown"]]
    if cooling and not info["cooldown"]:
        info["cooldown"], info["next_retry_at"] = True, min(cooling)
    if info["prod"] is None and any(e["prod"] is not None for e in symbols.values()):
        info["prod_symbols"] = {s: e["prod"] for s, e in symbols.items() if e["prod"] is not None}


STATES = ("ok", "running", "candidate-rejected", "cooling-down", "failed", "untrained")


def family_state(info: dict) -> tuple[str, str]:
    """One family's (or signal symbol's) state, one of STATES, and a one-line detail: its last
    run failed and waits for a retry (cooling-down), failed, was rejected by the promotion
    gate while prod keeps serving (candidate-rejected), is running, or is ok; untrained when
    nothing was ever trained or run."""
    run = info.get("last_training")
    if run is None:
        return ("ok", "trained, no run recorded") if info["is_trained"] else ("untrained", "")
    error = (run.get("last_error") or "").splitlines()[0] if run.get("last_error") else ""
    if info.get("cooldown"):
        return "cooling-down", f"retry after {info['next_retry_at']:%Y-%m-%d %H:%M} UTC: {error}"
    if run["status"] == "failed":
        return "failed", error
    if run["status"] == "rejected":
        return "candidate-rejected", error
    if run["status"] == "running":
        return "running", f"since {run['started_at']:%Y-%m-%d %H:%M} UTC"
    return "ok", f"run {run['run_id']} at {run['started_at']:%Y-%m-%d %H:%M} UTC"


def bandit_report(engine: Engine, redis=None) -> dict | None:
    """The pricing bandit's arms as `mlkit mab stats` reports them; None when untrained."""
    from .pricing.posterior import stats_report
    from .pricing.state import BanditStore

    store = BanditStore(engine, redis)
    return stats_report(*store.read()) if store.is_trained() else None
