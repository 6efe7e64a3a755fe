"""The fraud training snapshot on Spark: orders as-of-joined to their wallet's feature rows,
labels as of the cut-off, written as Parquet with the manifest and pointers of
toolkit/fraud/dataset.py, so `train fraud`, `inspect dataset` and drift read it unchanged.

Spark writes the rows range-partitioned by (event_ts, order_id), one sorted part per task;
the driver then streams the parts, one row group at a time, into the snapshot's single
data.parquet in the same order the local build writes (its memory stays one row group).
"""

from __future__ import annotations

import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from ..clock import utcnow
from ..datasets import new_run_id, private_mkdir, write_snapshot
from ..errors import MlkitError
from ..fraud import dataset as local_dataset
from ..fraud.columns import DATASET_COLUMNS, FEATURES
from ..fraud.labels import label_query
from .features import literal_sql, order_count
from .session import (
    choose_engine,
    config_jdbc_options,
    read_table,
    spark_errors,
    spark_session,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from sqlalchemy.engine import Engine

    from ..config import Config

TIMESTAMPS = ("event_ts", "feature_ts", "label_available_at")
# The parts' row groups, which the driver streams into data.parquet one at a time: Spark's
# 128 MB default made the driver's peak grow with the orders until a part reached it (0.30 GB
# at 1M orders, 0.59 GB at 5M); at 8 MB it stays flat.
ROW_GROUP_BYTES = 8 * 1024 * 1024


def asof_join(entities: DataFrame, feature_rows: DataFrame) -> DataFrame:
    """Each order (order_id, buyer_wallet_id, created_at, ...) with the latest feature row of
    its wallet at or before it in (created_at, order_id) order, as join_features defines it:
    a feature row sorts by its own order's place, so a tie within one second resolves to the
    order's own row; rows of orders outside the entities are left out. Adds `matched`, the
    feature row's columns (a struct, NULL without one)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    placed = feature_rows.join(
        entities.select("order_id", F.col("created_at").alias("placed_at")), "order_id"
    )
    payload = F.struct(*[F.col(c) for c in feature_rows.columns])
    rows = entities.select(
        F.col("order_id").alias("key"),
        F.col("buyer_wallet_id").alias("wallet"),
        F.col("created_at").alias("at"),
        F.col("order_id").alias("seq"),
        F.lit(1).alias("kind"),
        F.lit(None).cast(feature_rows.select(payload.alias("m")).schema["m"].dataType).alias("m"),
    ).unionByName(
        placed.select(
            F.lit(None).cast("long").alias("key"),
            F.col("wallet_id").alias("wallet"),
            F.col("placed_at").alias("at"),
            F.col("order_id").alias("seq"),
            F.lit(0).alias("kind"),  # before the order of the same place: its own row
            payload.alias("m"),
        )
    )
    so_far = (
        Window.partitionBy("wallet")
        .orderBy("at", "seq", "kind")
        .rowsBetween(Window.unboundedPreceding, 0)
    )
    matched = rows.select("key", F.last("m", ignorenulls=True).over(so_far).alias("matched"))
    return entities.join(
        matched.where(F.col("key").isNotNull()).withColumnRenamed("key", "order_id"), "order_id"
    )


def _stream_parts(parts: Path):
    """A writer of data.parquet from Spark's sorted parts, in part order, one row group at
    a time, with the dataset's columns only."""

    def write(target: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        files = sorted(parts.glob("part-*.parquet"))
        every = pq.read_schema(files[0])
        columns = pa.schema([every.field(name) for name in DATASET_COLUMNS])
        with pq.ParquetWriter(target, columns) as writer:
            for file in files:
                part = pq.ParquetFile(file)
                for group in range(part.num_row_groups):
                    rows = part.read_row_group(group, columns=list(DATASET_COLUMNS))
                    writer.write_table(rows.cast(columns))

    return write


def build_fraud_dataset(
    engine: Engine,
    config: Config,
    datasets_dir: Path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    label_cutoff: datetime | None = None,
    label_delay_days: float = 7.0,
    set_current: bool = False,
) -> local_dataset.DatasetResult:
    """toolkit.fraud.dataset.build_fraud_dataset on Spark: the same rows, labels, manifest
    and pointers."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    started = time.perf_counter()
    window = local_dataset.SnapshotWindow.of(since, until, label_cutoff, label_delay_days)
    cutoff = window.cutoff
    entity_query, feature_query = window.queries()

    jdbc = config_jdbc_options(config)  # an SQLite database fails here, before Spark starts
    spark = spark_session(config)
    partitions = int(config.get("engine.spark.partitions"))

    def read(query: sa.Select, split: str | None = "order_id") -> DataFrame:
        return read_table(spark, jdbc, literal_sql(engine, query), split, num_partitions=partitions)

    entities = read(entity_query).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        if entities.isEmpty():
            raise window.no_orders()
        labels = read(label_query(available_at_or_before=cutoff), None)
        own_label = labels.groupBy("order_id").agg(
            F.min("label_available_at").alias("label_available_at")
        )
        joined = asof_join(entities, read(feature_query)).join(own_label, "order_id", "left")
        columns = {
            "order_id": F.col("order_id"),
            "wallet_id": F.col("buyer_wallet_id"),
            "event_id": F.col("event_id"),
            "event_ts": F.col("created_at"),
            "feature_ts": F.col("matched.feature_ts"),
            **{name: F.col(f"matched.{name}") for name in FEATURES},
            "amount": F.col("price").cast("double"),
            "label": F.col("label_available_at").isNotNull().cast("byte"),
            "label_available_at": F.col("label_available_at"),
        }
        columns["is_resale"] = F.coalesce(columns["is_resale"].cast("boolean"), F.lit(False))
        for name in TIMESTAMPS:  # naive UTC in the file, as the local build writes them
            columns[name] = columns[name].cast("timestamp_ntz")
        frame = joined.select(
            *[columns[name].alias(name) for name in DATASET_COLUMNS],
            (F.col("matched.order_id") == F.col("order_id")).alias("own_row"),
        )
        # Absolute: Spark takes a file URI, and its tasks may run in another directory.
        root = Path(datasets_dir).resolve() / local_dataset.NAME
        private_mkdir(root)
        parts = root / f".spark-{new_run_id(utcnow())}"
        try:
            stats = _write_parts(frame, parts, partitions)
            return _snapshot(
                engine,
                parts,
                stats,
                datasets_dir,
                manifest_for={
                    "cutoff": cutoff,
                    "since": since,
                    "until": until,
                    "label_delay_days": label_delay_days,
                    "queries": (entity_query, feature_query),
                },
                set_current=set_current,
                started=started,
            )
        finally:
            shutil.rmtree(parts, ignore_errors=True)
    finally:
        entities.unpersist()


def _write_parts(frame: DataFrame, parts: Path, partitions: int):
    """The rows as sorted Parquet parts, range-partitioned by (event_ts, order_id); their
    counts and time range. A row without its own order's feature row fails the build, as in
    the local one."""
    from pyspark.sql import functions as F

    (
        frame.repartitionByRange(max(partitions, 1), "event_ts", "order_id")
        .sortWithinPartitions("event_ts", "order_id")
        .write.option("compression", "snappy")
        .option("parquet.block.size", str(ROW_GROUP_BYTES))
        .parquet(parts.as_uri())
    )
    written = frame.sparkSession.read.parquet(parts.as_uri())
    stats = written.agg(
        F.count("*").alias("rows"),
        F.sum((~F.coalesce(F.col("own_row"), F.lit(False))).cast("long")).alias("missing"),
        F.min("event_ts").alias("start"),
        F.max("event_ts").alias("end"),
        F.sum(F.col("label").cast("long")).alias("positives"),
    ).first()
    if stats["missing"]:
        raise MlkitError(
            f"{stats['missing']} of {stats['rows']} orders have no feature row",
            hint="run `mlkit etl run` over the same range first",
        )
    return stats


def _snapshot(
    engine: Engine,
    parts: Path,
    stats,
    datasets_dir: Path,
    *,
    manifest_for: dict,
    set_current: bool,
    started: float,
) -> local_dataset.DatasetResult:
    """The snapshot of the written parts, with local_dataset's manifest."""
    import json

    entity_query, feature_query = manifest_for["queries"]
    since, until = manifest_for["since"], manifest_for["until"]
    positives = int(stats["positives"] or 0)
    manifest = {
        "created_at": utcnow().isoformat(),
        "rows": int(stats["rows"]),
        "columns": list(DATASET_COLUMNS),
        "feature_columns": list(FEATURES),
        "time_range": {"start": stats["start"].isoformat(), "end": stats["end"].isoformat()},
        "label_counts": {"0": int(stats["rows"]) - positives, "1": positives},
        "label_cutoff": manifest_for["cutoff"].isoformat(),
        "label_rule": local_dataset.__doc__.split("\n\n")[1].replace("\n", " "),
        "query": {
            "entities": literal_sql(engine, entity_query),
            "features": literal_sql(engine, feature_query),
            "as_of_join": "latest feature row of the same wallet with (feature_ts, order_id) "
            "<= (event_ts, order_id)",
        },
        "config": {
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "label_delay_days": manifest_for["label_delay_days"],
            "database": engine.url.render_as_string(hide_password=True),
        },
        "engine": "spark",
    }
    path = write_snapshot(
        datasets_dir, local_dataset.NAME, _stream_parts(parts), manifest, set_current=set_current
    )
    document = json.loads((path / "manifest.json").read_text())
    return local_dataset.DatasetResult(path, document, time.perf_counter() - started)


def build_configured(
    engine: Engine,
    config: Config,
    *,
    requested: str | None = None,
    set_current: bool = False,
    **moments: str | None,
) -> tuple[local_dataset.DatasetResult, str]:
    """`mlkit dataset build fraud [--engine]`: local_dataset.build_configured's snapshot on
    the chosen engine, and why that one."""
    from ..clock import parse_moment
    from ..identity import database_home

    chosen, reason = choose_engine(config, requested, lambda: order_count(engine))
    if chosen == "local":
        built = local_dataset.build_configured(engine, config, set_current=set_current, **moments)
        return built, reason
    now = utcnow()
    parsed = {
        name: parse_moment(value, now=now, option=f"--{name.replace('_', '-')}") if value else None
        for name, value in moments.items()
    }
    with spark_errors():
        built = build_fraud_dataset(
            engine,
            config,
            database_home(config, engine).datasets_dir,
            **parsed,
            label_delay_days=config.get("fraud.label_delay_days"),
            set_current=set_current,
        )
    return built, reason
