"""Fraud scores and decisions: batch into `fraud_predictions`, or one order online."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import schema
from ..clock import utcnow
from ..config import Settings, config_key
from ..db import analyze, bulk_insert, prepare_bulk_transaction, read_frame
from ..errors import MlkitError
from ..locks import job_lock
from ..pgbinary import copy_binary
from ..pgbinary import read_frame as read_binary
from .columns import DECISIONS, FEATURES
from .model import load_model


@dataclass(frozen=True)
class Thresholds(Settings):
    """The fraud score cut-offs of the decisions above APPROVED."""

    section = "fraud"

    block: float = config_key("threshold_block")
    review: float = config_key("threshold_review")
    two_factor: float = config_key("threshold_2fa")

    def levels(self, scores: np.ndarray) -> np.ndarray:
        """Each score's decision as its index in DECISIONS: the highest whose threshold it
        reaches."""
        return np.select(
            [scores >= self.block, scores >= self.review, scores >= self.two_factor], [3, 2, 1]
        )

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """Each score's decision: the highest of DECISIONS whose threshold it reaches."""
        return np.asarray(DECISIONS)[self.levels(scores)]


def load_verified_model(mv, artifacts_dir: Path):
    """The model of a registry version, deserialised from the artifact bytes whose sha256
    matched (read once, never reopened)."""
    from ..registry import read_artifact

    if mv.family != "fraud":
        raise MlkitError(
            f"{mv.ref} is a {mv.family} model, not a fraud model",
            hint="name a fraud version, e.g. --model fraud@prod (see `mlkit models list`)",
        )
    return load_model(read_artifact(mv, artifacts_dir), mv.params)


def model_version_label(mv) -> str:
    return f"{mv.name}:{mv.version}"


@dataclass
class ScoringResult:
    model: str
    rows: int
    decisions: dict[str, int]
    predict_seconds: float
    seconds: float
    since: datetime | None = None
    features_caught_up: int = 0  # feature rows the catch-up wrote first
    output: dict | None = None  # {"table", "rows"}: the platform's table written too
    write_seconds: float = 0.0  # deleting the replaced rows, COPY, the output, commit
    write_phases: dict[str, float] | None = None  # those seconds phase by phase

    def as_dict(self) -> dict:
        return {
            "model": self.model,
            "since": self.since.isoformat() if self.since else None,
            "rows": self.rows,
            "features_caught_up": self.features_caught_up,
            "decisions": self.decisions,
            "predict_seconds": round(self.predict_seconds, 3),
            "orders_per_second_predict": round(self.rows / self.predict_seconds)
            if self.predict_seconds
            else None,
            "seconds": round(self.seconds, 2),
            "write_seconds": round(self.write_seconds, 2),
            "write_phases": {k: round(v, 3) for k, v in (self.write_phases or {}).items()},
            "output": self.output,
        }


def score_orders(
    engine: Engine,
    mv,
    thresholds: Thresholds,
    since: datetime | None = None,
    *,
    lookback: timedelta | None = None,
    artifacts_dir: Path,
    output=None,
) -> ScoringResult:
    """Score every featured order since `since` and replace this version's predictions for
    them in one transaction, so a re-run never duplicates; with a `lookback` the features
    are caught up first, so orders without features yet are scored too. An `output`
    (toolkit.outputs.PredictionOutput) gets them too, in the platform's shape, in the same
    transaction."""
    from .etl import catch_up

    started = time.perf_counter()
    model = load_verified_model(mv, artifacts_dir)
    caught_up = catch_up(engine, lookback=lookback).rows if lookback is not None else 0
    f = schema.fraud_features
    query = sa.select(f.c.order_id, *[f.c[name] for name in FEATURES])
    if since is not None:
        query = query.where(f.c.feature_ts >= since)
    label = model_version_label(mv)
    with job_lock(engine, "scoring", "fraud"), engine.begin() as conn:
        binary = conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg2"
        # Binary COPY on PostgreSQL: the server formats no double as text, nor parses the
        # client one (the same frame as read_frame's, half its client time).
        frame = (read_binary if binary else read_frame)(conn, query.order_by(f.c.order_id))
        if frame.empty:
            return ScoringResult(
                label,
                0,
                {d: 0 for d in DECISIONS},
                0.0,
                time.perf_counter() - started,
                since,
                caught_up,
            )
        predicting = time.perf_counter()
        scores = model.predict_proba(frame)
        predict_seconds = time.perf_counter() - predicting
        levels = thresholds.levels(scores)
        decisions = np.asarray(DECISIONS)[levels]
        # No copy of the feature vector per prediction: fraud_features holds it by order id
        # (the drill-down and an `outputs:` features column read it there), so the write is
        # five narrow columns, built column-wise.
        predictions = {
            "order_id": frame["order_id"].to_numpy(dtype=np.int64),
            # Rounded as doubles, as the online path rounds: every dialect stores the
            # same value (a rounded float32 reached PostgreSQL's COPY as its shortest
            # text but the other drivers as its double, 0.00091 against 0.00091000000247).
            "fraud_score": np.round(scores.astype(np.float64), 6),
            "decision": decisions,
            "model_version": label,
            "created_at": utcnow(),
        }
        p = schema.fraud_predictions
        scope = p.c.model_version == label
        if since is not None:
            scope = sa.and_(
                scope, p.c.order_id.in_(sa.select(f.c.order_id).where(f.c.feature_ts >= since))
            )
        import pandas as pd  # the batch's frames; one order (predict fraud) never needs it

        phases = _Phases()
        prepare_bulk_transaction(conn)
        conn.execute(p.delete().where(scope))
        phases.mark("delete")
        if binary:
            # Binary COPY: the server stores the doubles and times without parsing text;
            # the decisions go as codes, each text encoded once.
            copy_binary(
                conn,
                p,
                predictions | {"decision": pd.Categorical.from_codes(levels, DECISIONS)},
            )
        else:
            bulk_insert(conn, p, pd.DataFrame(predictions))
        phases.mark("copy")
        written = None
        if output is not None:
            from ..outputs import write_fraud_predictions

            written = {"table": output.table, "rows": write_fraud_predictions(conn, output, scope)}
            phases.mark("output")
    phases.mark("commit")
    if output is not None:
        _analyze_output(engine, output)
        phases.mark("analyze")
    counts = np.bincount(levels, minlength=len(DECISIONS))
    return ScoringResult(
        model=label,
        rows=len(frame),
        decisions={d: int(n) for d, n in zip(DECISIONS, counts, strict=True)},
        predict_seconds=predict_seconds,
        seconds=time.perf_counter() - started,
        since=since,
        features_caught_up=caught_up,
        output=written,
        write_seconds=sum(phases.seconds.values()),
        write_phases=phases.seconds,
    )


class _Phases:
    """Seconds of each phase of the write, each from the end of the one before."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = now - self._last
        self._last = now


def _analyze_output(engine: Engine, output) -> None:
    """Fresh PostgreSQL statistics for the platform's table just written (a sample): its
    readers are the platform's, whose plans may need them before autovacuum comes by.
    mlkit's readers of fraud_predictions (kpi refresh, the dashboard, the drill-down, alerts,
    retention) plan through its indexes without statistics, so it is left to autovacuum:
    an ANALYZE is a tenth of the write."""
    if engine.dialect.name == "postgresql":
        analyze(engine, [output.table])


class FraudPredictor:
    """One order at a time, for a backend: keep one instance, call `predict(order)`."""

    def __init__(
        self, engine: Engine, mv, thresholds: Thresholds, redis=None, *, artifacts_dir: Path
    ):
        self.engine = engine
        self.mv = mv
        self.model = load_verified_model(mv, artifacts_dir)
        self.thresholds = thresholds
        self.redis = redis

    def predict(self, order: dict) -> dict:
        """Score one order, checked first by `toolkit.inputs.validate_order` (a bad field
        raises MlkitError naming it)."""
        from ..inputs import PAYMENT_METHODS, validate_order
        from .online import online_features

        # Known methods: the platform's, plus any the serving model was trained on.
        methods = (*PAYMENT_METHODS, *(self.mv.params or {}).get("categories", ()))
        request = validate_order(order, now=utcnow(), payment_methods=methods)
        features, source = online_features(self.engine, request, client=self.redis)
        score = self.model.predict_one(features)
        clean = {
            k: (None if isinstance(v, float) and np.isnan(v) else v)
            for k, v in features.items()
            if k in FEATURES
        }
        return {
            "fraud_score": round(score, 6),
            "decision": str(self.thresholds.decide(np.array([score]))[0]),
            "model_version": model_version_label(self.mv),
            "features": clean,
            "feature_source": source,
        }


def score_configured(
    engine: Engine, config, model_ref: str, *, since: str | None = None, catch_up: bool = True
) -> ScoringResult:
    """`mlkit score fraud`: the version `model_ref` names scores the orders since `since`
    (30d, a date; None: every order) with the configured thresholds, the features caught
    up first unless `catch_up` is off."""
    from ..clock import parse_moment
    from ..outputs import outputs_of
    from ..registry import resolve
    from .etl import lookback_from_config

    start = parse_moment(since, now=utcnow(), option="--since") if since else None
    output = outputs_of(config).fraud_predictions
    return score_orders(
        engine,
        resolve(engine, model_ref),
        Thresholds.from_config(config),
        start,
        lookback=lookback_from_config(config) if catch_up else None,
        artifacts_dir=config.artifacts_dir,
        output=output,
    )
