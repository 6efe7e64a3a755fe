"""Training runs: one at a time per model, recorded from start to end, with a cooldown after a
failure, and the per-family status a dashboard or `mlkit status` shows.

A run ends `ok`, `rejected` (its version failed the validation gate; the alias stays) or `failed`
(it crashed; the retry cooldown starts). A rejection starts no cooldown, so a changed gate or
setting can be tried at once.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from .clock import utcnow
from .db import explain_db_error
from .errors import MlkitError
from .formats import json_safe
from .locks import JobBusy, job_lock
from .schema import model_aliases, model_versions, training_runs
from .validation import CandidateRejected

log = logging.getLogger(__name__)

FAMILIES = ("fraud", "pricing", "signal", "recommender")
STATUS_ALIASES = ("prod", "candidate")


@dataclass
class TrainingRun:
    """The run in progress; `finish(...)` records what the training produced."""

    run_id: int
    model_name: str
    started_at: datetime
    version: int | None = None
    n_samples: int | None = None
    n_features: int | None = None
    class_distribution: dict | None = None
    metrics: dict | None = field(default=None)

    def finish(
        self,
        version: int | None = None,
        n_samples: int | None = None,
        n_features: int | None = None,
        class_distribution: dict | None = None,
        metrics: dict | None = None,
    ) -> None:
        """Fill the success fields; may be called more than once, None leaves a field as is."""
        if version is not None:
            self.version = int(version)
        if n_samples is not None:
            self.n_samples = int(n_samples)
        if n_features is not None:
            self.n_features = int(n_features)
        if class_distribution is not None:
            self.class_distribution = json_safe(class_distribution)
        if metrics is not None:
            self.metrics = json_safe(metrics)

    def _fields(self) -> dict[str, Any]:
        """What the run produced, as `training_runs` columns."""
        produced = ("version", "n_samples", "n_features", "class_distribution", "metrics")
        return {name: getattr(self, name) for name in produced}


# ---------------------------------------------------------------- the run


def _error_line(exc: BaseException, engine: Engine) -> str:
    """One line about a failure, never a password: MlkitError messages as they are, database
    errors as `explain_db_error` words them, anything else by its type name."""
    if isinstance(exc, MlkitError):
        text = exc.message
    elif isinstance(exc, DBAPIError):
        text = explain_db_error(exc, engine.url).message
    elif isinstance(exc, (KeyboardInterrupt, SystemExit)):
        text = f"interrupted ({type(exc).__name__})"
    else:
        text = type(exc).__name__
    line = " ".join(str(text).split())
    return line[:1000]


def _running_description(engine: Engine, model_name: str) -> str:
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sa.select(training_runs.c.run_id, training_runs.c.started_at, training_runs.c.host)
                .where(
                    training_runs.c.model_name == model_name, training_runs.c.status == "running"
                )
                .order_by(training_runs.c.run_id.desc())
                .limit(1)
            ).first()
    except DBAPIError:
        row = None
    if row is None:
        return "just started"
    host = f" on {row.host}" if row.host else ""
    return f"run {row.run_id}, started at {row.started_at:%Y-%m-%d %H:%M:%S} UTC{host}"


@contextmanager
def training_run(
    engine: Engine, model_name: str, *, cooldown_seconds: int, force: bool = False
) -> Iterator[TrainingRun]:
    """Run the body as the one training run of `model_name`, recorded in `training_runs`; refused
    while another run holds the lock or, unless `force`, within a failure's cooldown.

    The row ends `ok`, `rejected` when the body raises CandidateRejected, or `failed` with
    `next_retry_at`; either exception is re-raised."""
    with ExitStack() as held:
        try:
            held.enter_context(job_lock(engine, "train", model_name))
        except JobBusy as busy:
            running = _running_description(engine, model_name)
            raise JobBusy(f"{busy.message} ({running})", hint=busy.hint) from None
        run = _start(engine, model_name, cooldown_seconds=cooldown_seconds, force=force)
        try:
            yield run
        except CandidateRejected as exc:
            _end_rejected(engine, run, exc)
            raise
        except BaseException as exc:
            _end_failed(engine, run, exc, cooldown_seconds)
            raise
        _end(engine, run, status="ok")


def _start(engine: Engine, model_name: str, *, cooldown_seconds: int, force: bool) -> TrainingRun:
    now = utcnow()
    with engine.begin() as conn:
        # We hold the lock, so a row still `running` belongs to a process that died.
        conn.execute(
            training_runs.update()
            .where(training_runs.c.model_name == model_name, training_runs.c.status == "running")
            .values(
                status="failed",
                finished_at=now,
                last_error="interrupted: the process ended without recording a result",
            )
        )
        last = conn.execute(
            sa.select(training_runs.c.run_id, training_runs.c.status, training_runs.c.next_retry_at)
            .where(training_runs.c.model_name == model_name)
            .order_by(training_runs.c.run_id.desc())
            .limit(1)
        ).first()
        if (
            not force
            and last is not None
            and last.status == "failed"
            and last.next_retry_at is not None
            and last.next_retry_at > now
        ):
            wait = int((last.next_retry_at - now).total_seconds()) + 1
            raise MlkitError(
                f"{model_name} is cooling down after failed run {last.run_id}: next retry at "
                f"{last.next_retry_at:%Y-%m-%d %H:%M:%S} UTC (in {wait} s)",
                hint="fix the cause (see `mlkit status`) and pass --force to train now",
            )
        started_at = utcnow()
        result = conn.execute(
            training_runs.insert().values(
                model_name=model_name,
                status="running",
                started_at=started_at,
                host=socket.gethostname()[:128],
            )
        )
        run_id = int(result.inserted_primary_key[0])
    return TrainingRun(run_id=run_id, model_name=model_name, started_at=started_at)


def _end(engine: Engine, run: TrainingRun, *, status: str, **extra: Any) -> None:
    finished = utcnow()
    with engine.begin() as conn:
        conn.execute(
            training_runs.update()
            .where(training_runs.c.run_id == run.run_id)
            .values(
                status=status,
                finished_at=finished,
                duration_seconds=max((finished - run.started_at).total_seconds(), 0.0),
                **run._fields(),
                **extra,
            )
        )


def _end_rejected(engine: Engine, run: TrainingRun, exc: CandidateRejected) -> None:
    try:
        _end(engine, run, status="rejected", last_error="; ".join(exc.failures)[:1000])
    except Exception:  # the rejection itself is what the caller must hear about
        log.warning("could not record the rejection of training run %s", run.run_id, exc_info=True)


def _end_failed(engine: Engine, run: TrainingRun, exc: BaseException, cooldown: int) -> None:
    interrupted = not isinstance(exc, Exception)  # Ctrl-C is no reason to cool down
    retry = None if interrupted or cooldown <= 0 else utcnow() + timedelta(seconds=cooldown)
    try:
        _end(
            engine,
            run,
            status="failed",
            last_error=_error_line(exc, engine),
            next_retry_at=retry,
        )
    except Exception:  # the database may be what failed; the original error matters more
        log.warning("could not record the failure of training run %s", run.run_id, exc_info=True)


# ---------------------------------------------------------------- status


def training_status(engine: Engine, families: tuple[str, ...] | list[str] | None = None) -> dict:
    """Per family (model name == family; default `FAMILIES`): is it trained, which versions
    `prod`, `candidate` and the latest are, its last training run, and whether it is
    cooling down. Four grouped queries; timestamps are naive UTC datetimes."""
    names = list(FAMILIES if families is None else families)
    now = utcnow()
    with engine.connect() as conn:
        latest = dict(
            conn.execute(
                sa.select(model_versions.c.name, sa.func.max(model_versions.c.version))
                .where(model_versions.c.name.in_(names))
                .group_by(model_versions.c.name)
            ).all()
        )
        aliases: dict[str, dict[str, int]] = {}
        for name, alias, version in conn.execute(
            sa.select(model_aliases.c.name, model_aliases.c.alias, model_aliases.c.version).where(
                model_aliases.c.name.in_(names), model_aliases.c.alias.in_(STATUS_ALIASES)
            )
        ):
            aliases.setdefault(name, {})[alias] = int(version)
        last_ids = (
            sa.select(
                training_runs.c.model_name,
                sa.func.max(training_runs.c.run_id).label("last_id"),
                sa.func.max(
                    sa.case((training_runs.c.status == "ok", training_runs.c.run_id))
                ).label("ok_id"),
            )
            .where(training_runs.c.model_name.in_(names))
            .group_by(training_runs.c.model_name)
            .subquery()
        )
        runs = conn.execute(
            sa.select(training_runs, last_ids.c.last_id, last_ids.c.ok_id).join(
                last_ids,
                sa.and_(
                    training_runs.c.model_name == last_ids.c.model_name,
                    sa.or_(
                        training_runs.c.run_id == last_ids.c.last_id,
                        training_runs.c.run_id == last_ids.c.ok_id,
                    ),
                ),
            )
        ).fetchall()
    last_run: dict[str, Any] = {}
    last_ok: dict[str, Any] = {}
    for row in runs:
        if row.run_id == row.last_id:
            last_run[row.model_name] = row
        if row.run_id == row.ok_id:
            last_ok[row.model_name] = row
    status: dict[str, dict] = {}
    for name in names:
        run = last_run.get(name)
        ok = last_ok.get(name)
        cooling = bool(
            run is not None
            and run.status == "failed"
            and run.next_retry_at is not None
            and run.next_retry_at > now
        )
        status[name] = {
            "is_trained": name in latest,
            "latest_version": int(latest[name]) if name in latest else None,
            "prod": aliases.get(name, {}).get("prod"),
            "candidate": aliases.get(name, {}).get("candidate"),
            "last_training": _run_dict(run) if run is not None else None,
            "last_success": _run_dict(ok) if ok is not None else None,
            "cooldown": cooling,
            "next_retry_at": run.next_retry_at
            if run is not None and run.status == "failed"
            else None,
        }
    return status


def _run_dict(row: Any) -> dict[str, Any]:
    return {
        "run_id": int(row.run_id),
        "status": row.status,
        "version": row.version,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "duration_seconds": row.duration_seconds,
        "n_samples": row.n_samples,
        "n_features": row.n_features,
        "class_distribution": row.class_distribution,
        "metrics": row.metrics,
        "last_error": row.last_error,
        "host": row.host,
    }
