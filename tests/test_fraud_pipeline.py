"""Train, register, validate, promote, score and predict: the fraud family end to end."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from mlkit.toolkit import schema
from mlkit.toolkit.config import load_config
from mlkit.toolkit.demo.seed import seed_demo
from mlkit.toolkit.errors import MlkitError
from mlkit.toolkit.fraud import etl
from mlkit.toolkit.fraud.pipeline import train_fraud_model
from mlkit.toolkit.fraud.scoring import FraudPredictor, Thresholds, score_orders
from mlkit.toolkit.registry import promote, resolve
from mlkit.toolkit.validation import validate_version


@pytest.fixture(scope="module")
def trained(engine, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    config = load_config(
        database_url=engine.url.render_as_string(hide_password=False), env={"MLKIT_HOME": str(home)}
    )
    seed_demo(
        engine, orders=12_000, days=45, seed=11, families=("fraud",), start=datetime(2026, 1, 1)
    )
    # Features never built: the training catches them up itself, then builds a snapshot.
    result = train_fraud_model(engine, config, kind="xgboost", alias="candidate")
    return config, result


@pytest.mark.slow
def test_training_catches_the_features_up_and_builds_a_fresh_snapshot(engine, trained):
    config, result = trained
    with engine.connect() as conn:
        orders = conn.execute(sa.select(sa.func.count()).select_from(schema.orders)).scalar()
        featured = conn.execute(
            sa.select(sa.func.count()).select_from(schema.fraud_features)
        ).scalar()
    assert featured == orders == 12_000
    assert etl.read_watermark(engine) is not None
    assert result["dataset"].startswith(str(config.datasets_dir))


def test_training_registers_a_candidate_beside_the_oracle(engine, trained):
    config, result = trained
    assert result["version"] == 1 and result["alias"] == "candidate"
    metrics = result["metrics"]
    assert 0 < metrics["auc_pr"] <= 1 and "oracle_auc_pr" in metrics
    mv = resolve(engine, "fraud@candidate")
    assert mv.version == 1 and (config.artifacts_dir / mv.artifact_path).is_file()
    assert all(check.ok for check in validate_version(mv, config))
    with engine.connect() as conn:
        run = conn.execute(sa.select(schema.training_runs)).mappings().one()
    assert run["status"] == "ok" and run["version"] == 1 and run["n_samples"] > 0


def test_promote_then_score_idempotently(engine, trained):
    config, _ = trained
    mv = promote(engine, "fraud", 1, "prod")
    thresholds, artifacts = Thresholds.from_config(config), config.artifacts_dir
    first = score_orders(engine, mv, thresholds, artifacts_dir=artifacts)
    second = score_orders(engine, mv, thresholds, artifacts_dir=artifacts)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(sa.func.count()).select_from(schema.fraud_predictions)
        ).scalar()
        decisions = set(conn.execute(sa.select(schema.fraud_predictions.c.decision)).scalars())
    assert rows == first.rows == second.rows
    assert decisions <= {"APPROVED", "REQUIRE_2FA", "MANUAL_REVIEW", "BLOCKED"}
    assert "APPROVED" in decisions and first.decisions["APPROVED"] > first.rows * 0.8


def test_scoring_a_window_catches_up_new_orders_and_an_empty_window_is_fine(
    engine, trained, cli, monkeypatch
):
    config, _ = trained
    now = datetime(2026, 3, 1)
    monkeypatch.setenv("MLKIT_NOW", now.isoformat())
    o = schema.orders
    with engine.begin() as conn:
        template = dict(conn.execute(sa.select(o).limit(1)).mappings().one())
        newest = conn.execute(sa.select(sa.func.max(o.c.order_id))).scalar()
        conn.execute(
            o.insert(),
            [
                {**template, "order_id": newest + i, "created_at": now - timedelta(hours=i)}
                for i in (1, 2, 3)
            ],
        )
    mv = resolve(engine, "fraud@prod")
    result = score_orders(
        engine,
        mv,
        Thresholds.from_config(config),
        now - timedelta(days=1),
        lookback=timedelta(days=2),
        artifacts_dir=config.artifacts_dir,
    )
    assert result.rows == 3 and result.features_caught_up == 3
    with engine.connect() as conn:
        scored = set(
            conn.execute(
                sa.select(schema.fraud_predictions.c.order_id).where(
                    schema.fraud_predictions.c.order_id > newest
                )
            ).scalars()
        )
    assert scored == {newest + 1, newest + 2, newest + 3}

    url = engine.url.render_as_string(hide_password=False)
    env = {"MLKIT_HOME": str(config.home), "MLKIT_NOW": "2026-05-01T00:00:00"}
    quiet = cli("--database", url, "score", "fraud", "--since", "1d", env=env)
    assert quiet.exit_code == 0, quiet.output
    assert "nothing to score" in quiet.stdout


def test_predict_one_order_with_online_features(engine, trained):
    config, _ = trained
    predictor = FraudPredictor(
        engine,
        resolve(engine, "fraud@prod"),
        Thresholds.from_config(config),
        artifacts_dir=config.artifacts_dir,
    )
    with engine.connect() as conn:
        order = conn.execute(sa.select(schema.orders).limit(1)).mappings().one()
    request = {k: order[k] for k in ("buyer_wallet_id", "event_id", "price", "payment_method")}
    request["created_at"] = "2026-02-20T10:00:00"
    answer = predictor.predict(request)
    assert set(answer) >= {"fraud_score", "decision", "model_version", "features"}
    assert 0 <= answer["fraud_score"] <= 1 and answer["model_version"] == "fraud:1"
    json.dumps(answer)  # JSON-safe for a backend


def test_a_tampered_artifact_is_refused_before_loading(engine, trained):
    config, _ = trained
    mv = resolve(engine, "fraud:1")
    artifact = config.artifacts_dir / mv.artifact_path
    original = artifact.read_bytes()
    try:
        artifact.write_bytes(original[:-10])
        with pytest.raises(MlkitError, match=r"sha256|truncated|changed"):
            FraudPredictor(
                engine, mv, Thresholds.from_config(config), artifacts_dir=config.artifacts_dir
            )
        checks = validate_version(mv, config)
        assert [c.name for c in checks if not c.ok] == ["sha256"]
    finally:
        artifact.write_bytes(original)


def test_a_version_below_the_gate_is_registered_but_not_promoted(engine, trained):
    config, _ = trained
    config.data["fraud"]["min_auc_pr"] = 0.999
    try:
        with pytest.raises(MlkitError, match="fraud@candidate still points at fraud:1"):
            train_fraud_model(engine, config, kind="logreg", alias="candidate", force=True)
    finally:
        config.data["fraud"]["min_auc_pr"] = 0.2
    assert resolve(engine, "fraud@candidate").version == 1
    assert resolve(engine, "fraud").version == 2
