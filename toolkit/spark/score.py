"""`mlkit score fraud --engine spark`: the batch scoring as a Spark job. Executors read the
feature rows over JDBC in order-id ranges, score them with the registered model (the same
`predict_proba` and thresholds as the local engine) and load the predictions into a staging
table; one transaction here then replaces this version's predictions from it, as the local
engine's write does: the rows of `fraud_predictions` come out the same.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from .. import schema
from ..clock import utcnow
from ..fraud.columns import DECISIONS, FEATURES

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ..config import Config
    from ..fraud.scoring import ScoringResult, Thresholds

STAGING = "mlkit_spark_fraud_predictions"


def score_configured(
    engine: Engine,
    config: Config,
    model_ref: str,
    *,
    since: str | None = None,
    catch_up: bool = True,
    requested: str | None = None,
) -> tuple[ScoringResult, str]:
    """`mlkit score fraud [--engine]`: `scoring.score_configured` on the chosen engine, and
    why that one (`auto` counts orders against engine.auto_rows)."""
    from ..clock import parse_moment
    from ..fraud import scoring
    from ..outputs import outputs_of
    from ..registry import resolve
    from .features import order_count, run_configured
    from .session import choose_engine

    chosen, reason = choose_engine(config, requested, lambda: order_count(engine))
    if chosen == "local":
        return scoring.score_configured(
            engine, config, model_ref, since=since, catch_up=catch_up
        ), reason
    start = parse_moment(since, now=utcnow(), option="--since") if since else None
    mv = resolve(engine, model_ref)
    model = scoring.load_verified_model(mv, config.artifacts_dir)
    caught_up = run_configured(engine, config, "last", None, "spark")[0].rows if catch_up else 0
    result = score_orders(
        engine,
        config,
        model,
        scoring.model_version_label(mv),
        scoring.Thresholds.from_config(config),
        start,
        output=outputs_of(config).fraud_predictions,
    )
    result.features_caught_up = caught_up
    return result, reason


def score_orders(
    engine: Engine,
    config: Config,
    model,
    label: str,
    thresholds: Thresholds,
    since: datetime | None,
    *,
    output=None,
) -> ScoringResult:
    """Score every featured order since `since` on Spark and replace the predictions of
    version `label` for them in one transaction (an `output` gets them too)."""
    from ..fraud.scoring import ScoringResult
    from ..locks import job_lock

    started = time.perf_counter()
    with job_lock(engine, "scoring", "fraud"):
        rows = _score_into_staging(engine, config, model, thresholds, since)
        scored = time.perf_counter()
        counts, written = {}, None
        try:
            if rows:
                counts, written = _replace_predictions(engine, label, since, output)
        finally:
            _drop_staging(engine)
    if rows:
        _analyze(engine, output)
    return ScoringResult(
        model=label,
        rows=rows,
        decisions={d: int(counts.get(d, 0)) for d in DECISIONS},
        predict_seconds=scored - started,
        seconds=time.perf_counter() - started,
        since=since,
        output=written,
        write_seconds=time.perf_counter() - scored,
    )


def _score_into_staging(engine: Engine, config: Config, model, thresholds, since) -> int:
    """The Spark job: feature rows read in order-id ranges, scored where they are read,
    appended to the staging table; returns the rows scored."""
    import numpy as np
    import pandas as pd

    from .session import config_jdbc_options, read_table, spark_session

    spark = spark_session(config)
    jdbc = config_jdbc_options(config)
    columns = ", ".join(["order_id", *FEATURES])
    query = f"SELECT {columns} FROM {schema.fraud_features.name}"
    if since is not None:
        query += f" WHERE feature_ts >= '{since:%Y-%m-%d %H:%M:%S}'"
    features = read_table(
        spark,
        jdbc,
        query,
        "order_id",
        num_partitions=int(config.get("engine.spark.partitions")),
    )

    def score(batches):
        for batch in batches:
            scores = model.predict_proba(batch)
            yield pd.DataFrame(
                {
                    "order_id": batch["order_id"].to_numpy(dtype=np.int64),
                    "fraud_score": np.round(scores.astype(np.float64), 6),  # as the local write
                    "decision": thresholds.decide(scores),
                }
            )

    predictions = features.mapInPandas(
        score, schema="order_id long, fraud_score double, decision string"
    ).cache()
    try:
        rows = predictions.count()
        if rows:
            predictions.write.jdbc(jdbc["url"], STAGING, mode="overwrite", properties=jdbc)
    finally:
        predictions.unpersist()
    return rows


def _replace_predictions(engine: Engine, label: str, since, output) -> tuple[dict, dict | None]:
    """In one transaction, what the local write does: delete the version's predictions of
    the scored orders, insert the staged ones, write the `output` table from them; returns
    the decision counts and what the output got."""
    from ..db import prepare_bulk_transaction

    p, f = schema.fraud_predictions, schema.fraud_features
    staged = sa.table(
        STAGING, sa.column("order_id"), sa.column("fraud_score"), sa.column("decision")
    )
    scope = p.c.model_version == label
    if since is not None:
        scope = sa.and_(
            scope, p.c.order_id.in_(sa.select(f.c.order_id).where(f.c.feature_ts >= since))
        )
    with engine.begin() as conn:
        prepare_bulk_transaction(conn)
        conn.execute(p.delete().where(scope))
        moved = sa.select(
            staged.c.order_id,
            staged.c.fraud_score,
            staged.c.decision,
            sa.literal(label, sa.String(64)),
            sa.literal(utcnow(), sa.DateTime()),
        )
        conn.execute(
            p.insert().from_select(
                ["order_id", "fraud_score", "decision", "model_version", "created_at"], moved
            )
        )
        counts = dict(
            conn.execute(
                sa.select(staged.c.decision, sa.func.count()).group_by(staged.c.decision)
            ).all()
        )
        written = None
        if output is not None:
            from ..outputs import write_fraud_predictions

            written = {"table": output.table, "rows": write_fraud_predictions(conn, output, scope)}
    return counts, written


def _drop_staging(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {STAGING}")


def _analyze(engine: Engine, output) -> None:
    """Fresh PostgreSQL statistics for the predictions written, as the local engine keeps."""
    from ..db import analyze

    if engine.dialect.name == "postgresql":
        analyze(engine, [schema.fraud_predictions.name] + ([output.table] if output else []))
