"""`mlkit train all`: every family in turn, one failure never stopping the others; a model cooling
down, busy or short of data is skipped and keeps serving, and one its promotion gate keeps from
serving is `rejected` (it stays candidate, the serving version stays, or the family's fallback
serves when nothing did).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .errors import MlkitError, TooLittleData
from .locks import JobBusy
from .schema import orders, product_interactions
from .validation import CandidateRejected

log = logging.getLogger("mlkit.train")

Trainer = Callable[[], dict]
OUTCOMES = ("ok", "rejected", "failed", "skipped")


@dataclass
class Planned:
    family: str
    model: str  # the registry name, as training_runs records it
    train: Trainer | None  # None: skipped for `reason`
    reason: str | None = None


def _has_rows(engine: Engine, table: sa.Table) -> bool:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(table.name):
            return False
        first = conn.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first()
        return first is not None


def default_plan(engine: Engine, config, redis=None) -> list[Planned]:
    """What `train all` trains, with each family's contract `train` (families.py)."""
    from functools import partial

    from .families import train

    fraud = partial(train, engine, config, "fraud")
    pricing = partial(train, engine, config, "pricing", redis=redis)
    recommender = partial(train, engine, config, "recommender")

    has_orders = _has_rows(engine, orders)
    no_orders = "no orders to learn from"
    plan = [
        Planned("fraud", "fraud", fraud if has_orders else None, None if has_orders else no_orders),
        Planned(
            "pricing", "pricing", pricing if has_orders else None, None if has_orders else no_orders
        ),
    ]
    has_interactions = _has_rows(engine, product_interactions)
    plan.append(
        Planned(
            "recommender",
            "recommender",
            recommender if has_interactions else None,
            None if has_interactions else "no product interactions to learn from",
        )
    )
    plan += _signal_plan(engine, config)
    return plan


def _signal_plan(engine: Engine, config) -> list[Planned]:
    from .signal.market import model_name, symbols_overview

    with engine.connect() as conn:
        has_market = sa.inspect(conn).has_table("market_data")
    symbols = symbols_overview(engine) if has_market else {}
    if not symbols:
        return [Planned("signal", "signal", None, "no market data (mlkit ingest market)")]
    minimum = int(config.get("signal.min_initial_train_samples"))
    plan = []
    for symbol, info in symbols.items():

        def train(symbol: str = symbol) -> dict:
            from .families import train as train_family

            return train_family(engine, config, "signal", symbol=symbol)

        if info["bars"] < minimum:
            plan.append(
                Planned(
                    "signal",
                    model_name(symbol),
                    None,
                    f"{info['bars']} bars, fewer than signal.min_initial_train_samples ({minimum})",
                )
            )
        else:
            plan.append(Planned("signal", model_name(symbol), train))
    return plan


def _describe(engine: Engine, exc: Exception) -> str:
    """One line, never a password: database errors as `explain_db_error` words them."""
    from sqlalchemy.exc import DBAPIError

    from .db import explain_db_error

    if isinstance(exc, DBAPIError):
        return explain_db_error(exc, engine.url).message
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:500]


def _outcome(result: dict) -> tuple[int | None, str]:
    version = result.get("version")
    alias = result.get("alias")
    detail = f"v{version}" if version is not None else "trained"
    if alias:
        detail += f", {alias} -> v{version}"
    return version, detail


def train_all(
    engine: Engine,
    config,
    *,
    redis=None,
    plan: list[Planned] | None = None,
    on_start: Callable[[Planned], None] | None = None,
) -> dict[str, Any]:
    """Train each planned model in turn; returns one entry per model (status one of
    `OUTCOMES`) and the totals."""
    from .runs import training_status

    plan = default_plan(engine, config, redis) if plan is None else plan
    names = [p.model for p in plan if p.train is not None]
    status = training_status(engine, names) if names else {}
    results = []
    for item in plan:
        entry: dict[str, Any] = {
            "family": item.family,
            "model": item.model,
            "status": "skipped",
            "version": None,
            "seconds": None,
            "detail": item.reason,
            "fallback": None,  # the baseline serving in a rejected candidate's place
        }
        results.append(entry)
        if item.train is None:
            continue
        info = status.get(item.model, {})
        if info.get("cooldown"):
            retry = info.get("next_retry_at")
            entry["detail"] = (
                f"cooling down after a failed run until {retry:%Y-%m-%d %H:%M:%S} UTC"
                if retry
                else "cooling down after a failed run"
            )
            continue
        if on_start is not None:
            on_start(item)
        started = time.perf_counter()
        try:
            result = item.train()
        except TooLittleData as exc:  # the serving model stays; not a failure
            entry["seconds"] = round(time.perf_counter() - started, 3)
            entry["detail"] = exc.message
            log.info("[TRAIN] %s skipped: %s", item.model, exc.message)
            continue
        except CandidateRejected as exc:  # the serving version stays: not a failure
            entry["seconds"] = round(time.perf_counter() - started, 3)
            entry["status"], entry["detail"] = "rejected", exc.message
            entry["fallback"] = exc.fallback
            log.info("[TRAIN] %s rejected: %s", item.model, exc.message)
            continue
        except MlkitError as exc:
            entry["seconds"] = round(time.perf_counter() - started, 3)
            if isinstance(exc, JobBusy):
                entry["detail"] = exc.message  # someone else is training it right now
                continue
            entry["status"], entry["detail"] = "failed", exc.message
            log.warning("[TRAIN] %s failed: %s", item.model, exc.message)
            continue
        except Exception as exc:  # one family's bug must not stop the others
            entry["seconds"] = round(time.perf_counter() - started, 3)
            entry["status"], entry["detail"] = "failed", _describe(engine, exc)
            log.warning("[TRAIN] %s failed", item.model, exc_info=True)
            continue
        entry["seconds"] = round(time.perf_counter() - started, 3)
        entry["status"] = "ok"
        entry["version"], entry["detail"] = _outcome(result or {})
    totals = {s: sum(1 for r in results if r["status"] == s) for s in OUTCOMES}
    return {"results": results, **totals}


def train_every_family(
    engine: Engine,
    config,
    *,
    on_start: Callable[[Planned], None] | None,
    warn: Callable[[str], None],
) -> dict[str, Any]:
    """`mlkit train all`: `train_all` on the default plan, the bandit saving to the
    configured Redis when it answers."""
    from .pricing.train import bandit_redis

    return train_all(engine, config, redis=bandit_redis(config, warn), on_start=on_start)
