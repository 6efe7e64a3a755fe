"""`mlkit inspect dataset`: the report on a snapshot and the checks `--strict` enforces."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlkit.toolkit.errors import MlkitError
from mlkit.toolkit.fraud.columns import DATASET_COLUMNS, LABEL_HISTORY_FEATURES, NUMERIC_FEATURES
from mlkit.toolkit.inspect import inspect_dataset, rank_auc

CUTOFF = pd.Timestamp("2026-01-20T00:00:00Z")


def fraud_frame(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """A clean, leakage-free training set: features weakly related to the label."""
    rng = np.random.default_rng(seed)
    label = (rng.random(rows) < 0.1).astype("int8")
    label[:2] = 1
    event_ts = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(
        np.sort(rng.integers(0, 14 * 86400, rows)), unit="s"
    )
    frame = pd.DataFrame(
        {
            "order_id": np.arange(1, rows + 1, dtype="int64"),
            "wallet_id": rng.integers(1, 60, rows).astype("int64"),
            "event_id": rng.integers(1, 12, rows).astype("int64"),
            "event_ts": event_ts,
            "feature_ts": event_ts - pd.to_timedelta(rng.integers(1, 3600, rows), unit="s"),
        }
    )
    for name in NUMERIC_FEATURES:
        frame[name] = rng.normal(0.0, 1.0, rows) + 0.3 * label
    frame["wallet_age_days"] = np.where(rng.random(rows) < 0.25, np.nan, rng.random(rows) * 300)
    frame["time_to_first_resale"] = np.where(rng.random(rows) < 0.6, np.nan, rng.random(rows))
    frame["payment_method"] = pd.Series(rng.choice(["card", "paypal", "crypto"], rows), dtype="str")
    frame["is_resale"] = rng.random(rows) < 0.2
    frame["amount"] = rng.gamma(2.0, 40.0, rows)
    frame["label"] = label
    frame["label_available_at"] = pd.Series(
        np.where(label == 1, event_ts + pd.Timedelta(days=2), pd.NaT), dtype="datetime64[us, UTC]"
    )
    return frame[list(DATASET_COLUMNS)]


def write_snapshot(
    datasets_dir: Path,
    frame: pd.DataFrame,
    *,
    run_id: str = "r1",
    day: str = "2026-01-20",
    pointers: tuple[str, ...] = ("_LATEST", "_CURRENT"),
    **manifest_overrides,
) -> Path:
    relative = f"dt={day}/run_id={run_id}"
    snapshot = datasets_dir / "fraud" / relative
    snapshot.mkdir(parents=True)
    data = snapshot / "data.parquet"
    frame.to_parquet(data, index=False)
    manifest = {
        "name": "fraud",
        "run_id": run_id,
        "created_at": "2026-01-20T01:00:00+00:00",
        "rows": len(frame),
        "columns": list(frame.columns),
        "feature_columns": list(NUMERIC_FEATURES),
        "time_range": {"start": "2026-01-01T00:00:00+00:00", "end": "2026-01-15T00:00:00+00:00"},
        "label_counts": {str(k): int(v) for k, v in frame["label"].value_counts().items()},
        "label_cutoff": CUTOFF.isoformat(),
        "label_rule": "security_alerts or bot_detection, available by the cutoff",
        "sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
        "query": "select ...",
        "config": {},
        **manifest_overrides,
    }
    (snapshot / "manifest.json").write_text(json.dumps(manifest))
    for pointer in pointers:
        (datasets_dir / "fraud" / pointer).write_text(relative + "\n")
    return snapshot


@pytest.fixture
def datasets_dir(tmp_path) -> Path:
    """The default database's datasets folder, where `--pointer` looks."""
    from mlkit.toolkit.config import load_config
    from mlkit.toolkit.db import make_engine
    from mlkit.toolkit.identity import database_home

    config = load_config()
    engine = make_engine(config.database_url)
    try:
        return database_home(config, engine).datasets_dir
    finally:
        engine.dispose()


def failed(report) -> set[str]:
    return {check["name"] for check in report["checks"] if not check["ok"]}


def test_clean_dataset_reports_and_passes_strict(datasets_dir, cli):
    frame = fraud_frame()
    snapshot = write_snapshot(datasets_dir, frame)

    report = inspect_dataset(snapshot)
    assert failed(report) == set() and report["ok"]
    assert report["rows"] == len(frame) and report["columns"] == len(DATASET_COLUMNS)
    assert list(report["schema"]) == list(DATASET_COLUMNS)
    assert report["schema"]["label"] == "int8"
    assert report["time_range"]["min"] == frame["event_ts"].min().isoformat()
    positives = int(frame["label"].sum())
    assert report["label_distribution"]["counts"] == {"0": len(frame) - positives, "1": positives}
    assert report["label_distribution"]["rate"] == pytest.approx(positives / len(frame))
    assert report["distinct"]["order_id"] == len(frame)
    assert report["duplicates"] == {"order_id": 0, "rows": 0, "examples": []}
    assert report["amount"]["count"] == len(frame)
    assert report["amount"]["p99"] == pytest.approx(frame["amount"].quantile(0.99))
    assert report["manifest"]["sha256"]["ok"] and report["manifest"]["rows"]["ok"]
    assert len(report["samples"]["fraud"]) == 3 and len(report["samples"]["non_fraud"]) == 3
    assert all(row["label"] == 1 for row in report["samples"]["fraud"])
    assert set(report["leakage"]["label_history_means"]) == set(LABEL_HISTORY_FEATURES)
    json.dumps(report, allow_nan=False)  # NaN and timestamps made JSON-safe

    result = cli("inspect", "dataset", "--json", "--strict")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["path"] == str((snapshot / "data.parquet").resolve())
    assert document["pointer"]["name"] == "latest"

    human = cli("inspect", "dataset", str(snapshot), "--strict")
    assert human.exit_code == 0, human.stderr
    assert "all 8 checks passed" in human.stdout and "✓" in human.stdout


def test_planted_label_leak_fails_strict_and_is_named(datasets_dir, cli):
    frame = fraud_frame()
    rng = np.random.default_rng(1)
    frame["event_popularity_score"] = frame["label"] + rng.normal(0, 0.05, len(frame))
    write_snapshot(datasets_dir, frame)

    result = cli("inspect", "dataset", "--json", "--strict")
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    auc = document["leakage"]["single_feature_auc"]
    assert auc["flagged"] == ["event_popularity_score"]
    assert auc["features"][0]["feature"] == "event_popularity_score"
    assert auc["features"][0]["auc"] > 0.98
    assert failed(document) == {"single_feature_auc"}
    assert "event_popularity_score" in result.stderr and "single_feature_auc" in result.stderr

    human = cli("inspect", "dataset")  # without --strict: reported, exit 0
    assert human.exit_code == 0
    assert "suspiciously near 1" in human.stdout and "✗" in human.stdout


def test_inverted_leak_counts_too(tmp_path):
    frame = fraud_frame()
    frame["wallet_labels_7d"] = -frame["label"].astype(float)
    report = inspect_dataset(write_snapshot(tmp_path, frame))
    assert "wallet_labels_7d" in report["leakage"]["single_feature_auc"]["flagged"]


def test_feature_ts_after_event_ts_is_detected(tmp_path):
    frame = fraud_frame()
    frame.loc[[5, 9], "feature_ts"] = frame.loc[[5, 9], "event_ts"] + pd.Timedelta(minutes=10)
    report = inspect_dataset(write_snapshot(tmp_path, frame))
    late = report["leakage"]["feature_ts_after_event_ts"]
    assert late["rows"] == 2 and late["examples"] == [6, 10]
    assert late["max_lead_seconds"] == 600
    assert failed(report) == {"feature_ts_not_after_event_ts"}


def test_duplicates_are_detected(tmp_path):
    frame = fraud_frame()
    frame = pd.concat([frame, frame.iloc[[3, 4]]], ignore_index=True)
    frame.loc[len(frame) - 1, "amount"] = 1.0  # same order_id, not a fully duplicated row
    report = inspect_dataset(write_snapshot(tmp_path, frame))
    assert report["duplicates"]["order_id"] == 2
    assert report["duplicates"]["rows"] == 1
    assert report["duplicates"]["examples"] == [4, 5]
    assert report["distinct"]["order_id"] == len(frame) - 2
    assert failed(report) == {"order_id_unique"}


def test_null_rates_are_worst_first(tmp_path):
    frame = fraud_frame()
    report = inspect_dataset(write_snapshot(tmp_path, frame))
    rates = report["null_rates"]
    assert [item["column"] for item in rates[:3]] == [
        "label_available_at",
        "time_to_first_resale",
        "wallet_age_days",
    ]
    assert [item["rate"] for item in rates] == sorted(
        (item["rate"] for item in rates), reverse=True
    )
    assert rates[0]["nulls"] == int((frame["label"] == 0).sum())
    assert {item["column"] for item in rates} == set(DATASET_COLUMNS)


def test_sha256_and_row_mismatch_are_detected(tmp_path):
    report = inspect_dataset(write_snapshot(tmp_path, fraud_frame(), sha256="0" * 64, rows=7))
    assert report["manifest"]["sha256"]["ok"] is False
    assert failed(report) == {"manifest_sha256", "manifest_rows"}


def test_label_after_cutoff_is_detected(tmp_path):
    frame = fraud_frame()
    late = frame.index[frame["label"] == 1][:3]
    frame.loc[late, "label_available_at"] = CUTOFF + pd.Timedelta(hours=1)
    report = inspect_dataset(write_snapshot(tmp_path, frame))
    after = report["leakage"]["label_after_cutoff"]
    assert after["rows"] == 3 and after["positive_rows"] == 3
    assert failed(report) == {"labels_known_by_cutoff"}


def test_bare_parquet_without_manifest_cannot_be_verified(tmp_path):
    path = tmp_path / "orders.parquet"
    fraud_frame().to_parquet(path, index=False)
    report = inspect_dataset(path)
    assert report["manifest"]["present"] is False
    assert failed(report) == {"manifest_sha256", "manifest_rows", "labels_known_by_cutoff"}


def test_pointer_current_and_latest_name_different_snapshots(datasets_dir, cli):
    write_snapshot(datasets_dir, fraud_frame(rows=120), run_id="old")
    write_snapshot(datasets_dir, fraud_frame(rows=150), run_id="new", pointers=("_LATEST",))

    latest = json.loads(cli("inspect", "dataset", "--json").stdout)
    current = json.loads(cli("inspect", "dataset", "--pointer", "current", "--json").stdout)
    assert (latest["rows"], latest["manifest"]["run_id"]) == (150, "new")
    assert (current["rows"], current["manifest"]["run_id"]) == (120, "old")
    assert current["pointer"]["name"] == "current"
    both = cli("inspect", "dataset", str(datasets_dir), "--pointer", "latest")
    assert both.exit_code == 2


def assert_one_error(result, *fragments: str) -> None:
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert [line.startswith("error: ") for line in lines].count(True) == 1, result.stderr
    assert all(line.startswith(("error: ", "hint: ")) for line in lines), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def test_missing_pointer_is_one_error_with_the_build_hint(cli):
    result = cli("inspect", "dataset", "--pointer", "current", "--json")
    assert_one_error(result, "_CURRENT", "hint: build one with `mlkit dataset build fraud`")


def test_bad_inputs_are_one_error_line(tmp_path, cli):
    assert_one_error(cli("inspect", "dataset", str(tmp_path / "nope")), "no such dataset")
    (tmp_path / "empty").mkdir()
    assert_one_error(cli("inspect", "dataset", str(tmp_path / "empty")), "holds no data.parquet")
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet at all")
    assert_one_error(cli("inspect", "dataset", str(junk)), "not a readable parquet file")
    partial = tmp_path / "partial.parquet"
    fraud_frame().drop(columns=["label", "feature_ts"]).to_parquet(partial)
    assert_one_error(cli("inspect", "dataset", str(partial)), "feature_ts, label")
    with pytest.raises(MlkitError, match="unknown pointer"):
        inspect_dataset(pointer="newest", datasets_dir=tmp_path)


def test_rank_auc_matches_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    target = rng.random(300) < 0.3
    scores = np.round(rng.normal(size=300) + target, 1)  # rounding makes ties
    assert rank_auc(scores, target) == pytest.approx(roc_auc_score(target, scores))
    assert rank_auc(scores, np.zeros(300, dtype=bool)) is None


def test_naive_timestamps_nullable_flags_and_empty_data_do_not_break(tmp_path):
    frame = fraud_frame()
    for column in ("event_ts", "feature_ts", "label_available_at"):
        frame[column] = frame[column].dt.tz_localize(None)
    frame["is_resale"] = pd.array([None, *frame["is_resale"][1:]], dtype="boolean")
    report = inspect_dataset(write_snapshot(tmp_path, frame, label_cutoff="2026-01-20T00:00:00"))
    assert failed(report) == set()
    assert report["time_range"]["min"] == frame["event_ts"].min().tz_localize("UTC").isoformat()
    scored = {item["feature"] for item in report["leakage"]["single_feature_auc"]["features"]}
    assert {"is_resale", "amount"} <= scored

    empty = inspect_dataset(write_snapshot(tmp_path / "e", frame.iloc[:0]))
    assert empty["rows"] == 0 and empty["amount"]["count"] == 0
    assert failed(empty) == {"labels"}
    json.dumps(empty, allow_nan=False)
