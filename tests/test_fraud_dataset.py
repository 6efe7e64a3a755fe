"""`mlkit dataset build fraud`: point-in-time snapshots, label cut-off, pointers."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from mlkit.toolkit import schema
from mlkit.toolkit.datasets import asof_join_index, resolve_pointer, sha256_file
from mlkit.toolkit.demo.seed import seed_demo
from mlkit.toolkit.errors import MlkitError
from mlkit.toolkit.fraud import etl
from mlkit.toolkit.fraud.columns import DATASET_COLUMNS, NUMERIC_FEATURES
from mlkit.toolkit.fraud.dataset import build_fraud_dataset

WORLD_START = datetime(2026, 1, 1)
CUTOFF = datetime(2026, 2, 10)  # labels known by then; the world runs to 2026-01-31


@pytest.fixture(scope="module")
def world(engine):
    seed_demo(engine, orders=3000, days=30, seed=8, families=("fraud",), start=WORLD_START)
    etl.run_etl(engine, None, datetime(2026, 3, 1))
    return engine


def build(engine, tmp_path, **kw):
    kw.setdefault("since", None)
    kw.setdefault("until", None)
    kw.setdefault("label_cutoff", CUTOFF)
    return build_fraud_dataset(engine, tmp_path / "datasets", **kw)


def test_snapshot_matches_the_feature_table_and_leaves_out_immature_orders(world, tmp_path):
    result = build(world, tmp_path, label_delay_days=7)
    data = pd.read_parquet(result.path / "data.parquet")
    assert list(data.columns) == list(DATASET_COLUMNS)
    assert data["event_ts"].max() < CUTOFF - timedelta(days=7)
    assert (data["feature_ts"] <= data["event_ts"]).all()
    with world.connect() as conn:
        stored = pd.read_sql(sa.select(schema.fraud_features), conn).set_index("order_id")
    stored = stored.loc[data["order_id"]]
    for column in NUMERIC_FEATURES:
        np.testing.assert_array_equal(data[column].to_numpy(), stored[column].to_numpy())
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert manifest["rows"] == len(data)
    assert manifest["sha256"] == sha256_file(result.path / "data.parquet")
    assert manifest["label_counts"]["1"] == int(data["label"].sum()) > 0
    assert "label_cutoff" in manifest and manifest["label_rule"]


def test_labels_count_only_when_available_by_the_cutoff(world, tmp_path):
    early = build(world, tmp_path, label_cutoff=datetime(2026, 1, 28), label_delay_days=0)
    late = build(world, tmp_path, label_cutoff=datetime(2026, 3, 1), label_delay_days=0)
    early_data = pd.read_parquet(early.path / "data.parquet")
    late_data = pd.read_parquet(late.path / "data.parquet").set_index("order_id")
    assert (early_data["label_available_at"].dropna() <= datetime(2026, 1, 28)).all()
    # Late labels turn some early negatives into positives, never the other way round.
    common = late_data.loc[early_data["order_id"]]
    assert (common["label"].to_numpy() >= early_data["label"].to_numpy()).all()
    assert common["label"].sum() > early_data["label"].sum()


def test_the_default_cutoff_is_the_clock_and_later_labels_never_count(world, tmp_path, monkeypatch):
    now = datetime(2026, 1, 28)
    monkeypatch.setenv("MLKIT_NOW", now.isoformat())
    with world.connect() as conn:
        pending = conn.execute(
            sa.select(sa.func.count())
            .select_from(schema.security_alerts)
            .where(schema.security_alerts.c.label_available_at > now)
        ).scalar()
    assert pending > 0, "the demo world should hold labels not yet available at the clock"
    result = build(world, tmp_path, label_cutoff=None, label_delay_days=2)
    data = pd.read_parquet(result.path / "data.parquet")
    assert result.manifest["label_cutoff"] == now.isoformat()
    assert data["event_ts"].max() < now - timedelta(days=2)
    assert (data["label_available_at"].dropna() <= now).all() and data["label"].sum() > 0
    with pytest.raises(MlkitError, match="later than now"):
        build(world, tmp_path, label_cutoff=now + timedelta(days=1))


def test_a_snapshot_without_any_available_label_builds(world, tmp_path):
    result = build(world, tmp_path, label_cutoff=datetime(2026, 1, 3), label_delay_days=0)
    data = pd.read_parquet(result.path / "data.parquet")
    assert len(data) > 0 and data["label"].sum() == 0
    assert data["label_available_at"].isna().all()


def test_pointers_latest_always_current_on_request(world, tmp_path):
    first = build(world, tmp_path, set_current=True)
    second = build(world, tmp_path)
    root = tmp_path / "datasets"
    assert resolve_pointer(root, "fraud", "latest") == second.path
    assert resolve_pointer(root, "fraud", "current") == first.path


def test_empty_range_and_missing_features_are_clear_errors(world, tmp_path):
    with pytest.raises(MlkitError, match="no orders between"):
        build(world, tmp_path, since=datetime(2025, 1, 1), until=datetime(2025, 2, 1))
    with world.begin() as conn:
        oldest = conn.execute(sa.select(sa.func.min(schema.fraud_features.c.order_id))).scalar()
        conn.execute(
            schema.fraud_features.delete().where(schema.fraud_features.c.order_id == oldest)
        )
    try:
        with pytest.raises(MlkitError, match=r"1 of \d+ orders have no feature row"):
            build(world, tmp_path)
        assert not (tmp_path / "datasets" / "fraud" / "_LATEST").exists()
    finally:
        etl.run_etl(world, None, datetime(2026, 3, 1))


def test_asof_join_agrees_with_pandas_merge_asof():
    rng = np.random.default_rng(3)
    right = pd.DataFrame({"by": rng.integers(0, 50, 5000), "on": rng.integers(0, 10_000, 5000)})
    left = pd.DataFrame({"by": rng.integers(0, 60, 4000), "on": rng.integers(0, 10_000, 4000)})
    right = right.sort_values("on", kind="stable").reset_index(drop=True)
    left = left.sort_values("on", kind="stable").reset_index(drop=True)
    right["row"] = np.arange(len(right))
    expected = pd.merge_asof(left, right, on="on", by="by", direction="backward")
    index = asof_join_index(left["by"], left["on"], right["by"], right["on"])
    got = np.where(index >= 0, index, np.nan)
    np.testing.assert_array_equal(got, expected["row"].to_numpy(dtype=float))
