"""The fraud features on Spark: the definitions of toolkit/fraud/features.py (columns.py names
them) as window functions over each wallet's, event's and ticket's timeline, and `etl run`'s
write of `fraud_features` through a staging table and one set-based upsert.

Times are whole seconds, as in the local engine: "before t" is a range frame ending one
second before the order's. A "last row before t" (previous order, a ticket's acquisition,
the wallet's holds so far) is the last non-null payload in a rows frame over a union of the
timeline with the asking orders, which sort before the timeline rows of their own second.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from .. import schema
from ..clock import utcnow
from ..db import explain_db_error
from ..errors import MlkitError
from ..fraud import etl
from ..fraud.columns import LABEL_HISTORY_WINDOWS_DAYS, NUMERIC_FEATURES
from ..fraud.features import DAY, HOUR
from ..geo import EARTH_RADIUS_KM, JET_SPEED_KMH
from ..imports.upsert import upsert_staged
from ..locks import job_lock
from .session import (
    choose_engine,
    config_jdbc_options,
    read_table,
    spark_errors,
    spark_session,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from sqlalchemy.engine import Engine

    from ..config import Config

STAGING_TABLE = "mlkit_spark_fraud_features"


def literal_sql(engine: Engine, query: sa.Select) -> str:
    """A select as SQL text with its values inlined, for a JDBC read of the same rows."""
    return str(query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))


def read_sources(
    spark: SparkSession,
    engine: Engine,
    jdbc: dict,
    until: datetime,
    partitions: int,
    scope: etl.HistoryScope | None = None,
) -> dict[str, DataFrame]:
    """The sources of the orders before `until` that features need, read over JDBC: every
    order's (orders and wallets by ranges of their ids in parallel), or only the history
    `scope` names, as the local extract reads it: one read per chunk of ids, each an
    indexed lookup in the database, their overlaps dropped here."""
    if scope is None:
        split = {"orders": "order_id", "wallets": "wallet_id"}
        return {
            name: read_table(
                spark, jdbc, literal_sql(engine, query), split.get(name), num_partitions=partitions
            )
            for name, query in etl.source_queries(until).items()
        }
    sources = {}
    for name, queries in etl.scoped_queries(scope, until).items():
        reads = [read_table(spark, jdbc, literal_sql(engine, query)) for query in queries]
        frame = reads[0]
        for read in reads[1:]:
            frame = frame.unionByName(read)
        sources[name] = frame.dropDuplicates([etl.ROW_IDS[name]]) if name in etl.ROW_IDS else frame
    return sources


def check_nulls(sources: dict[str, DataFrame]) -> None:
    """The local engine's check: the columns features need hold no NULL (one pass a table)."""
    from pyspark.sql import functions as F

    for table, columns in etl.REQUIRED.items():
        counts = (
            sources[table]
            .agg(*[F.sum(F.col(c).isNull().cast("long")).alias(c) for c in columns])
            .first()
        )
        for column in columns:
            if counts[column]:
                raise MlkitError(
                    f"{counts[column]} row(s) of {table}.{column} are NULL; features need it",
                    hint=f"fill or remove them: SELECT * FROM {table} WHERE {column} IS NULL",
                )


def _seconds(column: str) -> Column:
    from pyspark.sql import functions as F

    return F.unix_seconds(F.col(column).cast("timestamp"))


def _ratio(numerator: Column, denominator: Column) -> Column:
    """numerator / denominator as numpy divides doubles: x/0 is ±inf, 0/0 NaN (Spark's ANSI
    mode would raise)."""
    from pyspark.sql import functions as F

    n, d = numerator.cast("double"), denominator.cast("double")
    return (
        F.when(d != 0, n / d)
        .when(n == 0, F.lit(float("nan")))
        .otherwise(F.signum(n) * F.lit(float("inf")))
    )


def _window_counts(
    asking: DataFrame, timeline: DataFrame, group: str, counts: dict[str, tuple[str, int | None]]
) -> DataFrame:
    """For each asking order (order_id, `group`, t): per output name, how many rows of the
    timeline (`group`, t, one 0/1 column per hit kind) with that hit fall in [t - window, t)
    (all before t when the window is None)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    hits = sorted({hit for hit, _ in counts.values()})
    rows = asking.select("order_id", group, "t", *[F.lit(0).alias(h) for h in hits]).unionByName(
        timeline.select(F.lit(None).cast("long").alias("order_id"), group, "t", *hits)
    )
    ordered = Window.partitionBy(group).orderBy("t")
    out = [
        F.coalesce(
            F.sum(hit).over(
                ordered.rangeBetween(
                    -window if window is not None else Window.unboundedPreceding, -1
                )
            ),
            F.lit(0),
        )
        .cast("long")
        .alias(name)
        for name, (hit, window) in counts.items()
    ]
    return rows.select("order_id", *out).where(F.col("order_id").isNotNull())


def _last_before(
    asking: DataFrame, timeline: DataFrame, group: str, payload: str, ties: tuple[str, ...]
) -> DataFrame:
    """For each asking row (key, `group`, t): the `payload` struct of the timeline's last row
    (by t, then `ties`) strictly before second t, or NULL."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    none = F.lit(None).cast(timeline.schema[payload].dataType)
    tie_types = {tie: timeline.schema[tie].dataType for tie in ties}
    rows = asking.select(
        "key",
        group,
        "t",
        F.lit(0).alias("kind"),
        *[F.lit(None).cast(kind).alias(tie) for tie, kind in tie_types.items()],
        none.alias(payload),
    ).unionByName(
        timeline.select(
            F.lit(None).cast("long").alias("key"),
            group,
            "t",
            F.lit(1).alias("kind"),
            *ties,
            payload,
        )
    )
    earlier = (
        Window.partitionBy(group)
        .orderBy("t", "kind", *ties)
        .rowsBetween(Window.unboundedPreceding, -1)
    )
    found = F.last(payload, ignorenulls=True).over(earlier)
    return rows.select("key", found.alias(payload)).where(F.col("key").isNotNull())


def _haversine_km(lat1: Column, lon1: Column, lat2: Column, lon2: Column) -> Column:
    from pyspark.sql import functions as F

    lat1, lon1, lat2, lon2 = (F.radians(c) for c in (lat1, lon1, lat2, lon2))
    a = F.pow(F.sin((lat2 - lat1) / 2), 2) + F.cos(lat1) * F.cos(lat2) * F.pow(
        F.sin((lon2 - lon1) / 2), 2
    )
    return 2 * EARTH_RADIUS_KM * F.asin(F.sqrt(F.least(F.greatest(a, F.lit(0.0)), F.lit(1.0))))


def compute_features(sources: dict[str, DataFrame]) -> DataFrame:
    """Feature rows (order_id, wallet_id, event_id, feature_ts, features..., payment_method,
    is_resale) of every order in `sources["orders"]`, as toolkit.fraud.features defines them."""
    from pyspark.sql import functions as F

    orders = (
        sources["orders"]
        .withColumn("t", _seconds("created_at"))
        .withColumn("micros", F.unix_micros(F.col("created_at").cast("timestamp")))
        .withColumn("is_resale", F.col("is_resale").cast("boolean"))
        .withColumn("completed", F.col("status") == "COMPLETED")
    )
    labels = sources["labels"].withColumn("t", _seconds("label_available_at"))
    asking = orders.select("order_id", F.col("buyer_wallet_id").alias("wallet"), "t", "event_id")

    wallet_counts = _wallet_counts(orders, sources["transfers"], labels, asking)
    event_counts = _event_counts(orders, labels, asking)
    own_label = labels.groupBy("order_id").agg(F.min("t").alias("own_label_t"))
    method_first = orders.groupBy("buyer_wallet_id", "payment_method").agg(
        F.min("t").alias("method_first")
    )
    wallets = sources["wallets"].select(
        F.col("wallet_id").alias("buyer_wallet_id"), _seconds("created_at").alias("wallet_born")
    )
    events = sources["events"].select(
        "event_id",
        F.col("base_price").cast("double").alias("base_price"),
        F.col("capacity").cast("double").alias("capacity"),
    )
    frame = (
        orders.join(wallet_counts, "order_id", "left")
        .join(event_counts, "order_id", "left")
        .join(own_label, "order_id", "left")
        .join(method_first, ["buyer_wallet_id", "payment_method"], "left")
        .join(wallets, "buyer_wallet_id", "left")
        .join(events, "event_id", "left")
        .join(_geo_velocity(orders), "order_id", "left")
        .join(_hold_features(orders), "order_id", "left")
    )
    t = F.col("t")
    features = {
        "txn_velocity_1h": F.col("orders_1h"),
        "wallet_age_days": (t - F.col("wallet_born")).cast("double") / DAY,
        "avg_ticket_hold_time": F.col("avg_ticket_hold_time"),
        "event_popularity_score": _ratio(F.col("primary_sales"), F.col("capacity")),
        "price_deviation_ratio": _ratio(F.col("price"), F.col("base_price")) - 1.0,
        "cross_event_attendance": F.col("events_attended"),
        "geo_velocity_flag": F.col("geo_velocity_flag"),
        "payment_method_diversity": F.col("methods_before")
        + F.when(F.col("method_first") >= t, 1).otherwise(0),
        "social_graph_centrality": F.col("counterparties"),
        "time_to_first_resale": F.col("time_to_first_resale"),
    }
    for days in LABEL_HISTORY_WINDOWS_DAYS:
        own = F.when(
            (F.col("own_label_t") >= t - days * DAY) & (F.col("own_label_t") < t), 1
        ).otherwise(0)
        for scope in ("wallet", "event"):
            features[f"{scope}_labels_{days}d"] = F.col(f"{scope}_labels_{days}d") - own
    return frame.select(
        "order_id",
        F.col("buyer_wallet_id").alias("wallet_id"),
        "event_id",
        F.col("created_at").alias("feature_ts"),
        *[features[name].cast("double").alias(name) for name in NUMERIC_FEATURES],
        "payment_method",
        "is_resale",
    )


# The kinds of row on a wallet's timeline, one 0/1 column each.
WALLET_HITS = ("order", "event", "method", "counterparty", "label")


def _wallet_counts(
    orders: DataFrame, transfers: DataFrame, labels: DataFrame, asking: DataFrame
) -> DataFrame:
    """Counts over each buyer wallet's timeline: its orders in the last hour, the events it
    completed a purchase for, the payment methods it used, its transfer counterparties (each
    from its first time on) and the labels on its orders per window."""
    from pyspark.sql import functions as F

    def hits(frame: DataFrame, wallet: str, when: str, kind: str) -> DataFrame:
        marks = {h: F.lit(1 if h == kind else 0) for h in WALLET_HITS}
        return frame.select(
            F.col(wallet).alias("wallet"),
            F.col(when).alias("t"),
            *[m.alias(h) for h, m in marks.items()],
        )

    completed = orders.where("completed")
    ends = transfers.select(
        F.col("from_wallet_id").alias("end"),
        F.col("to_wallet_id").alias("other"),
        _seconds("transferred_at").alias("t"),
    )
    edges = ends.unionByName(
        ends.select(F.col("other").alias("end"), F.col("end").alias("other"), "t")
    )
    first = F.min("t").alias("first")
    timeline = (
        hits(orders, "buyer_wallet_id", "t", "order")
        .unionByName(
            hits(
                completed.groupBy("buyer_wallet_id", "event_id").agg(first),
                "buyer_wallet_id",
                "first",
                "event",
            )
        )
        .unionByName(
            hits(
                orders.groupBy("buyer_wallet_id", "payment_method").agg(first),
                "buyer_wallet_id",
                "first",
                "method",
            )
        )
        .unionByName(
            hits(
                edges.where(F.col("end").isNotNull() & F.col("other").isNotNull())
                .groupBy("end", "other")
                .agg(first),
                "end",
                "first",
                "counterparty",
            )
        )
        .unionByName(hits(labels.where(F.col("wallet_id").isNotNull()), "wallet_id", "t", "label"))
    )
    counts = {
        "orders_1h": ("order", HOUR),
        "events_attended": ("event", None),
        "methods_before": ("method", None),
        "counterparties": ("counterparty", None),
    }
    for days in LABEL_HISTORY_WINDOWS_DAYS:
        counts[f"wallet_labels_{days}d"] = ("label", days * DAY)
    return _window_counts(asking, timeline, "wallet", counts)


def _event_counts(orders: DataFrame, labels: DataFrame, asking: DataFrame) -> DataFrame:
    """Counts over each event's timeline: its completed primary sales before t and the labels
    on its orders per window."""
    from pyspark.sql import functions as F

    sales = orders.where(F.col("completed") & ~F.col("is_resale")).select(
        "event_id", "t", F.lit(1).alias("sale"), F.lit(0).alias("label")
    )
    labelled = labels.join(orders.select("order_id", "event_id"), "order_id").select(
        "event_id", "t", F.lit(0).alias("sale"), F.lit(1).alias("label")
    )
    counts = {"primary_sales": ("sale", None)}
    for days in LABEL_HISTORY_WINDOWS_DAYS:
        counts[f"event_labels_{days}d"] = ("label", days * DAY)
    return _window_counts(asking, sales.unionByName(labelled), "event_id", counts)


def _geo_velocity(orders: DataFrame) -> DataFrame:
    """geo_velocity_flag: 1.0 when the speed from the wallet's previous order (before t)
    beats a jet, else 0.0; NULL without a previous order or a location."""
    from pyspark.sql import functions as F

    asking = orders.select(
        F.col("order_id").alias("key"), "buyer_wallet_id", "t", "geo_lat", "geo_lon"
    )
    timeline = orders.select(
        "buyer_wallet_id",
        "t",
        "micros",
        "order_id",
        F.struct(
            F.col("t").alias("t"), F.col("geo_lat").alias("lat"), F.col("geo_lon").alias("lon")
        ).alias("previous"),
    )
    previous = _last_before(asking, timeline, "buyer_wallet_id", "previous", ("micros", "order_id"))
    km = _haversine_km(
        F.col("previous.lat"), F.col("previous.lon"), F.col("geo_lat"), F.col("geo_lon")
    )
    hours = (F.col("t") - F.col("previous.t")).cast("double") / HOUR
    flag = F.when(F.col("previous").isNull() | km.isNull(), None).otherwise(
        F.when(km / hours > JET_SPEED_KMH, 1.0).otherwise(0.0)
    )
    return asking.join(previous, "key").select(
        F.col("key").alias("order_id"), flag.alias("geo_velocity_flag")
    )


def _hold_features(orders: DataFrame) -> DataFrame:
    """avg_ticket_hold_time and time_to_first_resale: for each completed resale, how long
    its seller held the ticket since the ticket's previous completed sale, to that seller
    (hours); per wallet the mean over its resales before t and its first resale's."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    sold = orders.where(F.col("completed") & F.col("ticket_id").isNotNull())
    acquisitions = sold.select(
        "ticket_id",
        "t",
        "micros",
        "order_id",
        F.struct(F.col("t").alias("t"), F.col("buyer_wallet_id").alias("buyer")).alias("sale"),
    )
    resales = sold.where("is_resale").select(
        F.col("order_id").alias("key"), "ticket_id", "t", "micros", "seller_wallet_id"
    )
    acquired = _last_before(resales, acquisitions, "ticket_id", "sale", ("micros", "order_id"))
    holds = (
        resales.join(acquired, "key")
        .where(F.col("sale.buyer") == F.col("seller_wallet_id"))
        .select(
            F.col("seller_wallet_id").alias("wallet"),
            "t",
            "micros",
            F.col("key").alias("order_id"),
            ((F.col("t") - F.col("sale.t")).cast("double") / HOUR).alias("hours"),
        )
    )
    so_far = Window.partitionBy("wallet").orderBy("t", "micros", "order_id")
    running = holds.select(
        "wallet",
        "t",
        "micros",
        "order_id",
        F.struct(
            F.sum("hours").over(so_far.rowsBetween(Window.unboundedPreceding, 0)).alias("total"),
            F.count("hours").over(so_far.rowsBetween(Window.unboundedPreceding, 0)).alias("n"),
        ).alias("holds"),
    )
    first = holds.groupBy("wallet").agg(
        F.min_by(F.struct("hours", "t"), F.struct("t", "micros", "order_id")).alias("first")
    )
    asking = orders.select(
        F.col("order_id").alias("key"), F.col("buyer_wallet_id").alias("wallet"), "t"
    )
    averages = _last_before(asking, running, "wallet", "holds", ("micros", "order_id"))
    return (
        asking.join(averages, "key")
        .join(first, "wallet", "left")
        .select(
            F.col("key").alias("order_id"),
            (F.col("holds.total") / F.col("holds.n")).alias("avg_ticket_hold_time"),
            F.when(F.col("first.t") < F.col("t"), F.col("first.hours")).alias(
                "time_to_first_resale"
            ),
        )
    )


def _label_columns(features: DataFrame, labels: DataFrame) -> DataFrame:
    """The order's own label (first available before `until`) beside its features."""
    from pyspark.sql import functions as F

    own = labels.groupBy("order_id").agg(F.min("label_available_at").alias("label_available_at"))
    return (
        features.join(own, "order_id", "left")
        .withColumn("label", F.col("label_available_at").isNotNull())
        .withColumn("computed_at", F.lit(utcnow()).cast("timestamp"))
    )


def _staging_table(columns: list[str], dialect: str) -> sa.Table:
    """A plain table (Spark's JDBC connections cannot see a session's temporary table) shaped
    like fraud_features, unlogged on PostgreSQL: a lost run's rows need no crash safety."""
    table = schema.fraud_features
    return sa.Table(
        STAGING_TABLE,
        sa.MetaData(),
        *[sa.Column(c, table.c[c].type, primary_key=c == "order_id") for c in columns],
        prefixes=["UNLOGGED"] if dialect == "postgresql" else [],
    )


def store_features(
    engine: Engine,
    jdbc: dict,
    frame: DataFrame,
    since: datetime | None,
    until: datetime,
    labels_since: datetime | None = None,
) -> dict[str, int]:
    """Make fraud_features' rows of [since, until) equal `frame`: Spark writes the rows to a
    staging table in parallel, then one transaction deletes the range's rows whose orders are
    gone, upserts (only changed rows are written), labels the stored rows whose labels became
    available since `labels_since` (the nightly run, as the local one) and moves the
    watermark."""
    staging = _staging_table(frame.columns, engine.dialect.name)
    options = dict(jdbc)
    if engine.dialect.name == "postgresql":
        options["reWriteBatchedInserts"] = "true"  # one multi-row INSERT per batch
    with engine.begin() as conn:
        staging.drop(conn, checkfirst=True)
        staging.create(conn)
    try:
        frame.write.format("jdbc").options(
            **options, dbtable=STAGING_TABLE, batchsize="10000"
        ).mode("append").save()
        with engine.begin() as conn:
            table = schema.fraud_features
            in_range = table.c.feature_ts < until
            if since is not None:
                in_range = sa.and_(in_range, table.c.feature_ts >= since)
            gone = ~sa.exists().where(staging.c.order_id == table.c.order_id)
            deleted = conn.execute(table.delete().where(in_range, gone)).rowcount
            counts = upsert_staged(conn, table, staging, ["order_id"], stamp=("computed_at",))
            counts["deleted"] = deleted
            counts["labelled"] = conn.execute(
                sa.select(sa.func.count()).select_from(staging).where(staging.c.label.is_(True))
            ).scalar_one()
            if labels_since is not None:
                counts["relabelled"] = etl.sync_labels(conn, labels_since, until)
            counts["watermark"] = etl.move_watermark(conn)
    finally:
        with engine.begin() as conn:
            staging.drop(conn, checkfirst=True)
    return counts


def _history_rows(engine: Engine, until: datetime) -> int:
    o = schema.orders
    with engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).select_from(o).where(o.c.created_at < until)
        ).scalar_one()


def _run(
    engine: Engine,
    config: Config,
    since: datetime | None,
    until: datetime,
    scope: etl.HistoryScope | None,
    progress: etl.ProgressCallback,
    labels_since: datetime | None = None,
) -> dict:
    """Compute on Spark the features of the target orders of `scope` (every order before
    `until` from `since` on when None) and store them."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    jdbc = config_jdbc_options(config)  # an SQLite database fails here, before Spark starts
    spark = spark_session(config)
    partitions = int(config.get("engine.spark.partitions"))
    progress("extract", 0, 3)
    sources = read_sources(spark, engine, jdbc, until, partitions, scope)
    # Every feature reads the orders and labels again: one JDBC read each, kept by the
    # executors (spilling to disk) for the run.
    for name in ("orders", "labels"):
        sources[name] = sources[name].persist(StorageLevel.MEMORY_AND_DISK)
    check_nulls(sources)
    progress("extract", 1, 3)
    features = compute_features(sources)
    if scope is not None:
        wanted = spark.createDataFrame([(i,) for i in scope.targets], "order_id long")
        features = features.join(wanted, "order_id", "left_semi")
    elif since is not None:
        features = features.where(F.col("feature_ts") >= F.lit(since).cast("timestamp"))
    frame = _label_columns(features, sources["labels"])
    progress("extract", 2, 3)
    try:
        counts = store_features(engine, jdbc, frame, since, until, labels_since)
        counts["history"] = sources["orders"].count()  # cached: the orders read
    finally:
        for name in ("orders", "labels"):
            sources[name].unpersist()
    progress("extract", 3, 3)
    return counts


def _result(started: float, since, until, counts: dict, **extra) -> etl.EtlResult:
    labelled, watermark, history = (counts.pop(k) for k in ("labelled", "watermark", "history"))
    rows = counts["inserted"] + counts["updated"] + counts["skipped"]
    return etl.EtlResult(
        since,
        until,
        rows,
        labelled,
        history,
        time.perf_counter() - started,
        watermark=watermark,
        written=counts,
        **extra,
    )


def run_job(
    engine: Engine,
    config: Config,
    since: str | None,
    until: str | None,
    progress: etl.ProgressCallback | None = None,
) -> etl.EtlResult:
    """`mlkit etl run --engine spark`: the local engine's run (range or `--since last`) with
    the features computed on Spark and written back in bulk."""
    from ..clock import parse_moment

    report = progress or (lambda label, done, total: None)
    started = time.perf_counter()
    etl.require_tables(engine)
    incremental = since is not None and since.strip() == "last"
    try:
        with job_lock(engine, "etl", etl.JOB):
            if incremental:
                end = parse_moment(until, now=utcnow(), option="--until") if until else utcnow()
                return _catch_up(engine, config, end, started, report)
            start, end = etl.resolve_range(engine, since, until)
            o = schema.orders
            in_range = o.c.created_at < end
            if start is not None:
                in_range = sa.and_(in_range, o.c.created_at >= start)
            with engine.connect() as conn:
                targets = conn.execute(
                    sa.select(sa.func.count()).select_from(o).where(in_range)
                ).scalar_one()
            if not targets:
                if since is None:
                    raise MlkitError(
                        f"no orders between {start or 'the beginning'} and {end}",
                        hint="widen --since/--until, or load orders first (`mlkit demo seed`)",
                    )
                return etl.EtlResult(
                    start,
                    end,
                    0,
                    0,
                    _history_rows(engine, end),
                    time.perf_counter() - started,
                    watermark=etl.read_watermark(engine),
                )
            counts = _run(engine, config, start, end, None, report)
            return _result(started, start, end, counts)
    except sa.exc.DBAPIError as exc:
        raise explain_db_error(exc, engine.url) from None


def _catch_up(
    engine: Engine, config: Config, until: datetime, started: float, report
) -> etl.EtlResult:
    """The local engine's incremental run (etl.plan_catch_up) with the features computed on
    Spark; labels that arrived since are stored either way."""
    with engine.connect() as conn:
        plan = etl.plan_catch_up(conn, until, etl.lookback_from_config(config))
        scope = None if plan.targets is None else etl.history_scope(conn, until, plan.targets)
    if not plan.new_orders:
        with engine.begin() as conn:
            return etl.quiet_night(conn, plan, until, started)
    counts = _run(engine, config, plan.since, until, scope, report, plan.labels_since)
    return _result(
        started, plan.since, until, counts, mode="incremental", new_orders=plan.new_orders
    )


def order_count(engine: Engine) -> int:
    """Every order: what `--engine auto` weighs."""
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(schema.orders)).scalar_one()


def run_configured(
    engine: Engine,
    config: Config,
    since: str | None,
    until: str | None,
    requested: str | None = None,
    progress: etl.ProgressCallback | None = None,
) -> tuple[etl.EtlResult, str]:
    """`mlkit etl run [--engine]`: the run on the chosen engine, and why that one."""
    chosen, reason = choose_engine(config, requested, lambda: order_count(engine))
    if chosen == "spark":
        with spark_errors():
            return run_job(engine, config, since, until, progress), reason
    return etl.run_job_configured(engine, config, since, until, progress=progress), reason
