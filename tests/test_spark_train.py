"""`mlkit train fraud --engine spark`: xgboost.spark on a snapshot registers the local
engine's booster format, which the local readers load and score unchanged, with a test
AUC-PR within 0.01 of the local engine's on the same dataset."""

from __future__ import annotations

import importlib.util
import json
from datetime import datetime

import numpy as np
import pytest
import yaml
from conftest import unavailable

from mlkit.toolkit.config import load_config
from mlkit.toolkit.db import init_schema, make_engine
from mlkit.toolkit.demo.seed import seed_demo
from mlkit.toolkit.fraud import etl
from mlkit.toolkit.fraud.dataset import build_fraud_dataset
from mlkit.toolkit.spark.session import java_available

pytestmark = pytest.mark.slow

START = datetime(2026, 1, 1)
END = datetime(2026, 3, 2)
CUTOFF = datetime(2026, 3, 20)
# Small data: few partitions, and no code generation, whose compile time would dominate. One
# core, so one XGBoost worker: its trees are the local engine's (two workers sketch and sample
# per partition, and on this world's 90 test frauds land 0.008-0.015 away in AUC-PR).
SPARK = {
    "master": "local[1]",
    "conf": {"spark.sql.shuffle.partitions": "2", "spark.sql.codegen.wholeStage": "false"},
}


def require_spark() -> None:
    if importlib.util.find_spec("pyspark") is None:
        unavailable("PySpark is not installed (pip install -e '.[spark]')")
    if not java_available():
        unavailable("no Java runtime for Spark (JAVA_HOME or java on PATH)")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A demo world in SQLite (Spark reads only the snapshot's Parquet), its features, one
    snapshot, and a config running Spark in local mode."""
    require_spark()
    home = tmp_path_factory.mktemp("spark_train")
    url = f"sqlite:///{home}/world.db"
    config_file = home / "config.yaml"
    settings = {"database": {"url": url}, "engine": {"spark": SPARK}}
    config_file.write_text(yaml.safe_dump(settings))
    engine = make_engine(url)
    init_schema(engine)
    seed_demo(engine, orders=30_000, days=60, seed=5, families=("fraud",), start=START)
    etl.run_etl(engine, None, END)
    dataset = build_fraud_dataset(
        engine, home / "datasets", since=None, until=None, label_cutoff=CUTOFF
    )
    yield {"config": str(config_file), "env": {"MLKIT_HOME": str(home)}, "dataset": dataset}
    engine.dispose()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()


def mlkit(cli, world, *args: str) -> dict:
    """`mlkit --config <the world's> ARGS --json`, which must succeed; its document."""
    run = cli("--config", world["config"], *args, "--json", env=world["env"])
    assert run.exit_code == 0, run.output
    return json.loads(run.stdout)


def train(cli, world, *args: str) -> dict:
    dataset = str(world["dataset"].path)
    return mlkit(cli, world, "train", "fraud", "--dataset", dataset, "--alias", "candidate", *args)


def test_spark_model_is_the_local_format_and_as_good(cli, world):
    from mlkit.toolkit.fraud.scoring import load_verified_model
    from mlkit.toolkit.fraud.train import load_dataset
    from mlkit.toolkit.registry import resolve

    local = train(cli, world)
    spark = train(cli, world, "--engine", "spark")
    assert local["engine"] == "engine local (engine.name)"
    assert spark["engine"] == "engine spark (--engine)"
    assert spark["kind"] == "xgboost" and spark["artifact"].endswith("model.ubj")
    # Spark's split is the local one up to its approximate quantiles (1e-6 rank error).
    for part in ("train", "valid", "test"):
        rows = [m["metrics"]["split"][part]["rows"] for m in (spark, local)]
        assert abs(rows[0] - rows[1]) <= max(2, rows[1] // 1000), (part, rows)
    assert abs(spark["metrics"]["auc_pr"] - local["metrics"]["auc_pr"]) <= 0.01, (
        spark["metrics"]["auc_pr"],
        local["metrics"]["auc_pr"],
    )
    assert spark["metrics"]["auc_pr"] > spark["metrics"]["baselines"]["prior"]

    # What validate, score, predict and serve do: resolve, verify, load, score.
    config = load_config(world["config"], env=world["env"])
    engine = make_engine(config.database_url)
    mv = resolve(engine, f"fraud:{spark['version']}")
    model = load_verified_model(mv, config.artifacts_dir)
    frame, _ = load_dataset(world["dataset"].path)
    # Spark's test rows: every order from the first one its split put there
    test = frame[frame["event_ts"] >= spark["metrics"]["split"]["test"]["start"]]
    scores = model.predict_proba(test)
    assert np.all((scores >= 0) & (scores <= 1))
    from sklearn.metrics import average_precision_score

    assert average_precision_score(test["label"], scores) == pytest.approx(
        spark["metrics"]["auc_pr"], abs=1e-9
    )
    first = test.iloc[0][list(mv.features)].to_dict()
    assert model.predict_one(first) == pytest.approx(scores[0], abs=1e-6)
    engine.dispose()


def test_the_driver_scores_a_bounded_sample_of_a_large_test_split(cli, world, monkeypatch):
    """Past DRIVER_ROWS a split reaches the driver as a seeded sample, so its memory stays
    flat as orders grow; the split's description keeps the whole split's figures."""
    from mlkit.toolkit.fraud.train import load_dataset
    from mlkit.toolkit.spark import train as spark_train

    monkeypatch.setattr(spark_train, "DRIVER_ROWS", 2_000)
    trained = train(cli, world, "--engine", "spark")
    test = trained["metrics"]["split"]["test"]
    frame, _ = load_dataset(world["dataset"].path)
    assert test["rows"] == int((frame["event_ts"] >= test["start"]).sum()) > 2_400
    assert 1_600 <= test["scored"] <= 2_400, test
    assert trained["metrics"]["auc_pr"] > trained["metrics"]["baselines"]["prior"]


def test_the_spark_engine_refuses_logreg_with_a_hint(cli, world):
    run = cli(
        "--config",
        world["config"],
        "train",
        "fraud",
        "--dataset",
        str(world["dataset"].path),
        "--engine",
        "spark",
        "--model",
        "logreg",
        "--force",
        env=world["env"],
    )
    assert run.exit_code == 1
    assert "error: the Spark engine trains the xgboost model" in run.output
    assert "Traceback" not in run.output


@pytest.fixture(scope="module", params=["postgresql", "mysql"])
def scored_world(request, tmp_path_factory):
    """A small demo world in PostgreSQL or MariaDB (Spark reads it over JDBC and writes the
    predictions back through its staging table) with its features and a registered model."""
    from conftest import drop_database, make_database

    from mlkit.toolkit.fraud.pipeline import train_fraud_model

    require_spark()
    home = tmp_path_factory.mktemp("spark_score")
    url = make_database(request.param, home)
    config_file = home / "config.yaml"
    settings = {"database": {"url": url}, "engine": {"spark": {**SPARK, "partitions": 2}}}
    config_file.write_text(yaml.safe_dump(settings))
    env = {"MLKIT_HOME": str(home)}
    engine = make_engine(url)
    init_schema(engine)
    seed_demo(engine, orders=6_000, days=40, seed=2, families=("fraud",), start=START)
    etl.run_etl(engine, None, END)
    config = load_config(str(config_file), env=env)
    dataset = build_fraud_dataset(
        engine, home / "datasets", since=None, until=None, label_cutoff=CUTOFF
    )
    trained = train_fraud_model(engine, config, dataset=str(dataset.path), alias=None)
    yield {"config": str(config_file), "env": env, "engine": engine, "model": trained}
    engine.dispose()
    drop_database(url)


def predictions(engine) -> list[tuple]:
    import sqlalchemy as sa

    from mlkit.toolkit import schema

    p = schema.fraud_predictions
    columns = (p.c.order_id, p.c.fraud_score, p.c.decision, p.c.model_version)
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.select(*columns).order_by(p.c.order_id))]


def test_spark_scoring_writes_the_local_rows(cli, scored_world):
    world = scored_world
    model = f"fraud:{world['model']['version']}"

    def score(*args: str) -> dict:
        return mlkit(cli, world, "score", "fraud", "--no-etl", "--model", model, *args)

    local = score()
    local_rows = predictions(world["engine"])
    spark = score("--engine", "spark")
    assert spark["engine"] == "engine spark (--engine)"
    assert spark["rows"] == local["rows"] == len(local_rows) == 6_000
    assert spark["decisions"] == local["decisions"]
    assert predictions(world["engine"]) == local_rows  # replaced, not added
    # A window: only its orders' predictions are replaced, the others stay.
    since = score("--engine", "spark", "--since", "2026-01-30")
    assert 0 < since["rows"] < spark["rows"]
    assert predictions(world["engine"]) == local_rows


def test_a_snapshot_without_a_window_builds_on_spark_as_locally(scored_world):
    """What `train fraud --engine spark --dataset latest` does when no snapshot exists yet:
    the whole history's snapshot, with no window given, on Spark as on the local engine."""
    from mlkit.toolkit.fraud.train import load_dataset
    from mlkit.toolkit.spark.dataset import build_configured

    world = scored_world
    config = load_config(world["config"], env=world["env"])
    spark, reason = build_configured(world["engine"], config, requested="spark")
    local, _ = build_configured(world["engine"], config, requested="local")
    assert reason == "engine spark (--engine)"
    spark_rows, _ = load_dataset(spark.path)
    local_rows, _ = load_dataset(local.path)
    assert len(spark_rows) == len(local_rows) > 0
    assert spark_rows["label"].sum() == local_rows["label"].sum()
    assert list(spark_rows["order_id"]) == list(local_rows["order_id"])


PYTHON_TASK = """
import json, sys
from mlkit.toolkit.config import load_config
from mlkit.toolkit.spark.session import spark_session

session = spark_session(load_config(sys.argv[1], env={}))

def where(batches):
    import sys as worker
    import pandas as pd
    for batch in batches:
        yield pd.DataFrame({"python": [worker.executable] * len(batch)})

found = session.range(4).mapInPandas(where, schema="python string").distinct().collect()
print(json.dumps([row.python for row in found]))
session.stop()
"""


def test_local_executors_run_this_python_whatever_path_says(tmp_path):
    """A Python task (training, scoring) runs on the interpreter that runs mlkit, not on
    `python3` from PATH: under cron, or with a virtualenv's mlkit run by its path, that is
    another Python without PySpark, and such tasks failed."""
    import os
    import subprocess
    import sys

    require_spark()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"engine": {"spark": SPARK}}))
    # PATH without this virtualenv: its `python3` is the system's.
    bare = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if sys.prefix not in p)
    env = {k: v for k, v in os.environ.items() if k != "PYSPARK_PYTHON"} | {"PATH": bare}
    done = subprocess.run(
        [sys.executable, "-c", PYTHON_TASK, str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [sys.executable]
