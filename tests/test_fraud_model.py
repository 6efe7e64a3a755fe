"""Fraud models: time-ordered splits, both model kinds, artifacts, decisions, bad data."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from mlkit.toolkit.db import make_engine
from mlkit.toolkit.demo.seed import seed_demo
from mlkit.toolkit.errors import MlkitError
from mlkit.toolkit.fraud import etl
from mlkit.toolkit.fraud.dataset import build_fraud_dataset
from mlkit.toolkit.fraud.model import load_model
from mlkit.toolkit.fraud.scoring import Thresholds
from mlkit.toolkit.fraud.train import check_trainable, fit_fraud, load_dataset, time_split


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    root = tmp_path_factory.mktemp("model")
    engine = make_engine(f"sqlite:///{root}/m.db")
    seed_demo(
        engine, orders=30_000, days=60, seed=3, families=("fraud",), start=datetime(2026, 1, 1)
    )
    etl.run_etl(engine, None, datetime(2026, 6, 1))
    snapshot = build_fraud_dataset(
        engine,
        root / "datasets",
        since=None,
        until=None,
        label_cutoff=datetime(2026, 4, 1),
        label_delay_days=7,
    )
    return load_dataset(snapshot.path)[0]


def test_split_is_by_time_with_a_gap(frame):
    split = time_split(frame, label_delay_days=7)
    assert split.train["event_ts"].max() + split.gap <= split.valid["event_ts"].min()
    assert split.valid["event_ts"].max() + split.gap <= split.test["event_ts"].min()
    assert len(split.train) > len(split.test) > 0


@pytest.mark.parametrize("kind", ["xgboost", "logreg"])
def test_models_learn_and_round_trip_through_their_artifact(frame, kind, tmp_path):
    result = fit_fraud(frame, kind, label_delay_days=7)
    metrics = result.metrics
    base_rate = result.split.test["label"].mean()
    assert metrics["auc_pr"] > 5 * base_rate
    assert metrics["auc_roc"] > 0.8
    assert sum(metrics["confusion_matrix"].values()) == len(result.split.test)
    rows = result.split.test.head(20)
    one_by_one = [result.model.predict_one(row) for row in rows.to_dict("records")]
    np.testing.assert_allclose(one_by_one, result.model.predict_proba(rows), rtol=1e-5)
    path = tmp_path / result.model.filename
    result.model.save(path)
    again = load_model(path.read_bytes(), result.model.params())
    np.testing.assert_allclose(again.predict_proba(result.split.test), result.test_scores)


def test_xgboost_scores_are_calibrated_probabilities(frame):
    result = fit_fraud(frame, "xgboost", label_delay_days=7)
    mean_score = result.test_scores.mean()
    assert 0.3 < mean_score / result.split.test["label"].mean() < 3


def test_decisions_follow_the_thresholds():
    decide = Thresholds(block=0.85, review=0.65, two_factor=0.35).decide
    scores = np.array([0.9, 0.85, 0.7, 0.4, 0.1])
    assert decide(scores).tolist() == [
        "BLOCKED",
        "BLOCKED",
        "MANUAL_REVIEW",
        "REQUIRE_2FA",
        "APPROVED",
    ]


def test_untrainable_data_is_refused(frame):
    with pytest.raises(MlkitError, match="too little to train"):
        check_trainable(frame.head(50), "tiny")
    one_class = frame.assign(label=0)
    with pytest.raises(MlkitError, match="too little to train"):
        check_trainable(one_class, "one class")
    broken = frame.copy()
    broken.loc[broken.index[0], "wallet_age_days"] = np.inf
    with pytest.raises(MlkitError, match="infinite values in wallet_age_days"):
        check_trainable(broken, "inf")
    with pytest.raises(MlkitError, match="unknown model"):
        fit_fraud(frame, "forest", 7)
