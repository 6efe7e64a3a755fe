"""The Spark engine equals the local one: on one demo world in PostgreSQL (Spark in local
mode), every feature of every order within 1e-9, the same training-set rows and labels, and
the leakage proof on Spark too."""

from __future__ import annotations

import importlib.util
import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import drop_database, make_database, unavailable
from fraud_rows import add_label, stored_features

from mlkit.toolkit import schema
from mlkit.toolkit.config import load_config
from mlkit.toolkit.datasets import resolve_pointer, sha256_file
from mlkit.toolkit.db import init_schema, make_engine
from mlkit.toolkit.demo.seed import seed_demo
from mlkit.toolkit.errors import MlkitError
from mlkit.toolkit.fraud import etl
from mlkit.toolkit.fraud.columns import DATASET_COLUMNS, NUMERIC_FEATURES
from mlkit.toolkit.fraud.dataset import build_fraud_dataset
from mlkit.toolkit.fraud.features import compute_features
from mlkit.toolkit.spark import features as spark_features
from mlkit.toolkit.spark.session import java_available

pytestmark = pytest.mark.slow

WORLD_START = datetime(2026, 1, 1)
WORLD_END = datetime(2026, 1, 31)
CUTOFF = datetime(2026, 2, 10)
FAR = datetime(2027, 1, 1)
# Small data: one shuffle partition, no adaptive re-planning between stages and no code
# generation, whose overheads would dominate (about a third of the time here).
SPARK = {
    "master": "local[2]",
    "partitions": 2,
    "conf": {
        "spark.sql.shuffle.partitions": "1",
        "spark.sql.adaptive.enabled": "false",
        "spark.sql.codegen.wholeStage": "false",
    },
}
KEYS = ("order_id", "wallet_id", "event_id", "feature_ts")
EXACT = ("payment_method", "is_resale", "label", "label_available_at")


def assert_same_features(local: pd.DataFrame, spark: pd.DataFrame) -> None:
    assert len(local) == len(spark) > 0
    for column in KEYS + EXACT:
        pd.testing.assert_series_equal(local[column], spark[column], check_dtype=False)
    assert_same_numbers(local, spark)


def assert_same_numbers(local: pd.DataFrame, spark: pd.DataFrame) -> None:
    """Every numeric feature of the same orders within 1e-9."""
    local, spark = (f.sort_values("order_id", ignore_index=True) for f in (local, spark))
    assert local["order_id"].tolist() == spark["order_id"].tolist() != []
    for column in NUMERIC_FEATURES:
        np.testing.assert_allclose(
            spark[column].to_numpy(float),
            local[column].to_numpy(float),
            rtol=0,
            atol=1e-9,
            err_msg=f"{column} differs between the engines",
        )


@pytest.fixture(scope="module")
def spark_config(tmp_path_factory):
    if importlib.util.find_spec("pyspark") is None:
        unavailable("PySpark is not installed (pip install -e '.[spark]')")
    if not java_available():
        unavailable("no Java runtime for Spark (JAVA_HOME or java on PATH)")
    url = make_database("postgresql", tmp_path_factory.mktemp("spark"))
    config = load_config(database_url=url, env={})
    config.data["engine"]["spark"].update(SPARK)
    yield config
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()
    drop_database(url)


@pytest.fixture(scope="module")
def world(spark_config):
    """The demo world with the local engine's features, and the Spark engine's in their place."""
    engine = make_engine(spark_config.database_url)
    init_schema(engine)
    seed_demo(engine, orders=2000, days=30, seed=8, families=("fraud",), start=WORLD_START)
    yield engine, *features_of_both_engines(engine, spark_config)
    engine.dispose()


def features_of_both_engines(engine, config) -> tuple[pd.DataFrame, etl.EtlResult]:
    """The local engine's stored features up to WORLD_END, then the Spark run's result that
    replaced them in an emptied table (no watermark)."""
    etl.run_etl(engine, None, WORLD_END)
    local = stored_features(engine)
    with engine.begin() as conn:
        conn.execute(schema.fraud_features.delete())
        conn.execute(schema.etl_watermarks.delete())
    return local, spark_features.run_job(engine, config, None, WORLD_END.isoformat())


def test_every_feature_of_every_order_is_equal_on_both_engines(world):
    engine, local, result = world
    spark = stored_features(engine)
    assert_same_features(local, spark)
    assert result.rows == len(local) == 2000
    assert result.written == {"inserted": 2000, "updated": 0, "skipped": 0, "deleted": 0}
    assert result.labelled == int(local["label"].sum()) > 0
    assert etl.read_watermark(engine) == local["feature_ts"].max() == result.watermark


def test_training_sets_have_the_same_rows_and_labels(
    world, spark_config, cli, tmp_path, monkeypatch
):
    """The local build and `dataset build fraud --engine auto` (Spark above auto_rows) on the
    same feature rows: equal frames, the same manifest counts, and a snapshot the local
    readers take (pointer, sha256). Row groups of a few KB: the driver streams many of them
    into the snapshot, as it does a large world's."""
    import pyarrow.parquet as pq

    from mlkit.toolkit.spark import dataset as spark_dataset

    monkeypatch.setattr(spark_dataset, "ROW_GROUP_BYTES", 16 * 1024)
    engine, _, _ = world
    local = build_fraud_dataset(
        engine, tmp_path / "local", since=None, until=None, label_cutoff=CUTOFF
    )
    settings = {"engine": {"auto_rows": 100, "spark": SPARK}, "paths": {"datasets": "spark"}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(settings))
    url = spark_config.database_url
    run = cli(
        "--config",
        str(tmp_path / "config.yaml"),
        "--database",
        url,
        "dataset",
        "build",
        "fraud",
        "--engine",
        "auto",
        "--label-cutoff",
        CUTOFF.isoformat(),
        "--json",
    )
    assert run.exit_code == 0, run.output
    document = json.loads(run.stdout)
    assert document["engine"] == "engine spark (auto: 2,000 orders, above engine.auto_rows 100)"
    assert document["rows"] == local.manifest["rows"] > 0
    assert document["label_counts"] == local.manifest["label_counts"]
    assert document["time_range"] == local.manifest["time_range"]
    spark_path = document["path"]
    assert pq.ParquetFile(f"{spark_path}/data.parquet").num_row_groups > 8  # more than the parts
    expected = pd.read_parquet(local.path / "data.parquet")
    built = pd.read_parquet(f"{spark_path}/data.parquet")
    assert list(built.columns) == list(DATASET_COLUMNS)
    pd.testing.assert_frame_equal(built, expected, check_exact=False, rtol=0, atol=1e-9)
    manifest = json.loads(Path(spark_path, "manifest.json").read_text())
    assert manifest["sha256"] == sha256_file(f"{spark_path}/data.parquet")
    datasets_dir = Path(spark_path).parents[2]  # <datasets>/fraud/dt=<day>/run_id=<id>
    assert resolve_pointer(datasets_dir, "fraud", "latest") == Path(spark_path)


def test_leakage_proof_on_spark_later_rows_and_labels_never_change_earlier_features(
    world, spark_config
):
    """Append later orders of the same wallets and events plus a label that arrives later on
    an already-featured order, rebuild on Spark: earlier vectors stay byte-for-byte equal."""
    engine, _, _ = world
    before = stored_features(engine)
    seed_demo(engine, days=4, append=True)
    first_order = int(before["order_id"].min())
    add_label(engine, first_order, int(before["wallet_id"].iloc[0]), WORLD_END + timedelta(days=10))
    # The nightly run features the new orders (no labels yet) as the local engine computes them.
    nightly = spark_features.run_job(engine, spark_config, "last", FAR.isoformat())
    added = stored_features(engine)
    added = added[~added["order_id"].isin(before["order_id"])].reset_index(drop=True)
    assert nightly.mode == "incremental" and nightly.new_orders == len(added) > 0
    # The late label on an old order is stored by the nightly run, as the local one does.
    assert nightly.written["relabelled"] >= 1
    labelled = stored_features(engine).set_index("order_id")["label"]
    assert bool(labelled[first_order])
    # Only the history of the new orders' wallets, events and resold tickets is read.
    assert nightly.history_rows < len(before) + len(added)
    with engine.connect() as conn:
        expected = compute_features(etl.extract(conn, FAR), added["order_id"].to_numpy())
    assert_same_numbers(expected, added)
    spark_features.run_job(engine, spark_config, None, FAR.isoformat())
    after = stored_features(engine)
    assert len(after) > len(before)
    after_old = after[after["order_id"].isin(before["order_id"])].reset_index(drop=True)
    assert bool(after_old.loc[after_old.order_id == first_order, "label"].iloc[0])
    for column in (*NUMERIC_FEATURES, "wallet_id", "event_id"):
        old = before[column].to_numpy(dtype=float)
        new = after_old[column].to_numpy(dtype=float)
        assert old.tobytes() == new.tobytes(), f"{column} changed for earlier orders"
    assert (before["feature_ts"] == after_old["feature_ts"]).all()
    # Nothing new since: the incremental run is a quiet no-op that starts no Spark job.
    quiet = spark_features.run_job(engine, spark_config, "last", FAR.isoformat())
    assert quiet.rows == 0 and quiet.watermark == after["feature_ts"].max()


def test_every_feature_and_the_snapshot_are_equal_on_mysql_too(spark_config, tmp_path):
    """The same features through MariaDB's JDBC driver and staging table, the same
    training snapshot read back through it, and the same night, on a smaller world."""
    from mlkit.toolkit.spark.dataset import build_fraud_dataset as spark_dataset

    url = make_database("mysql", tmp_path)
    engine = make_engine(url)
    try:
        init_schema(engine)
        seed_demo(engine, orders=800, days=15, seed=3, families=("fraud",), start=WORLD_START)
        config = load_config(database_url=url, env={})
        config.data["engine"]["spark"].update(SPARK)
        local, result = features_of_both_engines(engine, config)
        assert result.written["inserted"] == len(local)
        assert_same_features(local, stored_features(engine))
        window = {"since": None, "until": None, "label_cutoff": CUTOFF}
        expected = build_fraud_dataset(engine, tmp_path / "local", **window)
        built = spark_dataset(engine, config, tmp_path / "spark", **window)
        assert built.manifest["rows"] == expected.manifest["rows"] > 0
        assert built.manifest["label_counts"] == expected.manifest["label_counts"]
        pd.testing.assert_frame_equal(
            pd.read_parquet(built.path / "data.parquet"),
            pd.read_parquet(expected.path / "data.parquet"),
            check_exact=False,
            rtol=0,
            atol=1e-9,
        )
        # A night on MariaDB: the scoped reads' SQL through its JDBC driver.
        seed_demo(engine, days=2, append=True)
        nightly = spark_features.run_job(engine, config, "last", FAR.isoformat())
        assert nightly.mode == "incremental" and nightly.new_orders > 0
        stored = stored_features(engine)
        added = stored[~stored["order_id"].isin(local["order_id"])].reset_index(drop=True)
        with engine.connect() as conn:
            expected = compute_features(etl.extract(conn, FAR), added["order_id"].to_numpy())
        assert_same_numbers(expected, added)
    finally:
        engine.dispose()
        drop_database(url)


def test_spark_on_sqlite_is_a_clear_error_before_spark_starts(tmp_path):
    url = f"sqlite:///{tmp_path}/mlkit.db"
    engine = make_engine(url)
    init_schema(engine)
    seed_demo(engine, orders=100, days=2, seed=1, families=("fraud",), start=WORLD_START)
    config = load_config(database_url=url, env={})
    with pytest.raises(MlkitError, match="reads PostgreSQL or MySQL over JDBC, not sqlite"):
        spark_features.run_job(engine, config, None, WORLD_END.isoformat())
