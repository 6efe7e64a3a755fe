"""Drift: the measures on frames, and `mlkit drift check` against a demo world on every dialect."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from mlkit.toolkit.drift import (
    DriftSettings,
    compare_frames,
    latest_drift_check,
    run_drift_check,
    wasserstein_sorted,
)
from mlkit.toolkit.errors import MlkitError
from mlkit.toolkit.schema import drift_checks, drift_results, fraud_features

SETTINGS = DriftSettings.default()


def frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3, 1, n)
    amount[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame(
        {
            "amount": amount,
            "count": rng.poisson(2, n).astype(float),
            "flag": (rng.random(n) < 0.05).astype(float),
            "method": rng.choice(["card", "crypto", "paypal"], n, p=[0.6, 0.3, 0.1]),
        }
    )


FEATURES = ["amount", "count", "flag", "method"]


@pytest.mark.parametrize("n", [800, 20_000])
def test_identical_windows_give_no_drift(n):
    data = frame(n)
    results = compare_frames(data, data.copy(), FEATURES, SETTINGS)
    assert [r["feature"] for r in results] == FEATURES
    for r in results:
        assert not r["drifted"] and r["reasons"] == []
        assert r["psi"] == 0.0 and r["kl"] == 0.0
    # The size-aware test follows the sample size and says which one it is.
    tests = {r["feature"]: r["test"] for r in results}
    if n < SETTINGS.large_sample:
        assert tests == {"amount": "ks", "count": "ks", "flag": "ks", "method": "chi2"}
        assert all(r["threshold"] == SETTINGS.p_value for r in results)
    else:
        assert tests == {
            "amount": "wasserstein",
            "count": "wasserstein",
            "flag": "wasserstein",
            "method": "psi",
        }
        assert results[0]["threshold"] == SETTINGS.wasserstein_threshold


@pytest.mark.parametrize("n", [800, 20_000])
def test_a_sample_of_the_same_distribution_does_not_drift(n):
    results = compare_frames(frame(n, seed=1), frame(n, seed=2), FEATURES, SETTINGS)
    assert [r["feature"] for r in results if r["drifted"]] == []
    assert max(r["kl"] for r in results) < 0.05


@pytest.mark.parametrize("n", [800, 20_000])
@pytest.mark.parametrize(
    ("feature", "change"),
    [
        ("amount", lambda s: s * 1.6),
        ("count", lambda s: s + 2),
        ("flag", lambda s: (np.random.default_rng(5).random(len(s)) < 0.3).astype(float)),
        ("method", lambda s: s.where(s != "card", "crypto")),
    ],
)
def test_a_shifted_feature_is_detected_and_named(n, feature, change):
    reference, current = frame(n, seed=1), frame(n, seed=2)
    current[feature] = change(current[feature])
    results = compare_frames(reference, current, FEATURES, SETTINGS)
    assert [r["feature"] for r in results if r["drifted"]] == [feature]
    shifted = next(r for r in results if r["feature"] == feature)
    assert shifted["reasons"] and shifted["kl"] > 0.05


def test_missing_values_appearing_are_drift():
    reference, current = frame(3000, seed=1), frame(3000, seed=2)
    current.loc[current.index[:1500], "count"] = np.nan
    (result,) = compare_frames(reference, current, ["count"], SETTINGS)
    assert result["drifted"] and result["current_missing"] == pytest.approx(0.5)
    assert result["reference_missing"] == 0.0


def test_wasserstein_matches_scipy():
    from scipy.stats import wasserstein_distance

    rng = np.random.default_rng(3)
    u = np.sort(rng.normal(0, 1, 5000).round(2))  # ties on purpose
    v = np.sort(rng.normal(0.3, 1.5, 3000).round(2))
    assert wasserstein_sorted(u, v) == pytest.approx(wasserstein_distance(u, v), rel=1e-9)
    assert wasserstein_sorted(u, u) == 0.0


def test_bad_settings_are_refused():
    with pytest.raises(MlkitError, match=r"drift\.bins"):
        DriftSettings.default(bins=1)
    with pytest.raises(MlkitError, match=r"drift\.p_value"):
        DriftSettings.default(p_value=1.5)


# ---------------------------------------------------------------- against a database


def drift_check(cli, database_url: str, ref: str, window: str, *extra: str):
    return cli(
        "--database", database_url, "drift", "check", "--model", ref, "--window", window, *extra
    )


def register_stand_in(engine, home, family: str, dataset_ref: str | None = None):
    """A registered version of `family` with a stand-in artifact; fraud ones list the fraud
    features, whose drift is checked against `dataset_ref`."""
    from mlkit.toolkit.fraud.columns import FEATURES as FRAUD_FEATURES
    from mlkit.toolkit.registry import register_model

    return register_model(
        engine,
        home,
        name=family,
        family=family,
        write_artifact=lambda path: path.write_text("stand-in"),
        filename="model.txt",
        features=list(FRAUD_FEATURES) if family == "fraud" else None,
        dataset_ref=dataset_ref,
    )


@pytest.fixture(scope="module")
def world(engine, tmp_path_factory):
    """A small demo world with features, and a fraud model whose training snapshot is
    exactly the features of the last 7 days of orders."""
    from mlkit.toolkit.config import load_config
    from mlkit.toolkit.db import read_frame
    from mlkit.toolkit.demo.seed import seed_demo
    from mlkit.toolkit.fraud.columns import FEATURES as FRAUD_FEATURES
    from mlkit.toolkit.fraud.etl import run_etl
    from mlkit.toolkit.schema import orders

    seed_demo(engine, orders=3000, days=20, seed=7, families=("fraud",))
    with engine.connect() as conn:
        newest = conn.execute(sa.select(sa.func.max(orders.c.created_at))).scalar()
    run_etl(engine, None, newest + pd.Timedelta(seconds=1))
    start = newest - pd.Timedelta(days=7)
    with engine.connect() as conn:
        snapshot = read_frame(
            conn,
            sa.select(*[fraud_features.c[f] for f in FRAUD_FEATURES]).where(
                fraud_features.c.feature_ts >= start
            ),
        )
    folder = tmp_path_factory.mktemp("snapshot")
    snapshot.to_parquet(folder / "data.parquet")
    home = tmp_path_factory.mktemp("artifacts")
    mv = register_stand_in(engine, home, "fraud", dataset_ref=str(folder))
    return {
        "config": load_config(),
        "ref": mv.ref,
        "start": start,
        "rows": len(snapshot),
        "now": newest,
    }


@pytest.fixture
def at_world_end(world, monkeypatch):
    """The clock at the newest order of the world, so 7d covers exactly the snapshot."""
    monkeypatch.setenv("MLKIT_NOW", world["now"].isoformat())


def test_identical_windows_on_the_database_give_no_drift_and_are_recorded(
    engine, world, at_world_end
):
    document = run_drift_check(engine, world["config"], model=world["ref"], window="7d")
    assert document["window"]["end"] == world["now"]
    # A snapshot without order times is compared whole, and says so.
    assert document["reference_slice"]["mode"] == "all" and document["warnings"]
    assert not document["drifted"] and document["features_drifted"] == []
    assert document["current_rows"] == document["reference_rows"] == world["rows"]
    assert document["max_kl"] == 0.0 and document["max_psi"] == 0.0
    with engine.connect() as conn:
        check = conn.execute(
            sa.select(drift_checks).where(drift_checks.c.check_id == document["check_id"])
        ).one()
        results = conn.execute(
            sa.select(drift_results).where(drift_results.c.check_id == document["check_id"])
        ).all()
    assert check.model_ref == world["ref"] and not check.drifted
    assert len(results) == len(document["features"]) == 18
    assert {r.test for r in results} <= {"ks", "chi2", "wasserstein", "psi"}


def test_a_shifted_feature_in_the_database_is_detected_named_and_exits_3(
    engine, world, cli, database_url, at_world_end
):
    f = fraud_features
    with engine.begin() as conn:
        conn.execute(
            f.update()
            .where(f.c.feature_ts >= world["start"])
            .values(price_deviation_ratio=f.c.price_deviation_ratio * 3 + 1)
        )
    try:
        result = drift_check(cli, database_url, world["ref"], "7d", "--json")
        assert result.exit_code == 3, result.output
        document = json.loads(result.stdout)
        assert document["drifted"] and document["features_drifted"] == ["price_deviation_ratio"]
        shifted = next(r for r in document["features"] if r["feature"] == "price_deviation_ratio")
        assert "kl" in shifted["reasons"] and shifted["kl"] > 0.15
        latest = latest_drift_check(engine)
        assert latest["check_id"] == document["check_id"] and latest["drifted"]
        assert latest["features_drifted_names"] == ["price_deviation_ratio"]
        table = drift_check(cli, database_url, world["ref"], "7d")
        assert table.exit_code == 3 and "price_deviation_ratio" in table.stdout
    finally:
        with engine.begin() as conn:
            conn.execute(
                f.update()
                .where(f.c.feature_ts >= world["start"])
                .values(price_deviation_ratio=(f.c.price_deviation_ratio - 1) / 3)
            )
    result = drift_check(cli, database_url, world["ref"], "7d")
    assert result.exit_code == 0, result.output
    assert "no drift" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "fraud:99"], "unknown model reference"),
        (["--window", "soon"], "cannot read --window"),
        (["--window", "2099-01-01"], "not before now"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_1(
    world, cli, database_url, args, message, at_world_end
):
    result = cli("--database", database_url, "drift", "check", "--model", world["ref"], *args)
    assert result.exit_code == 1, result.output
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_missing_snapshot_or_a_foreign_model_is_refused(engine, world, tmp_path):
    gone = register_stand_in(engine, tmp_path, "fraud", dataset_ref=str(tmp_path / "deleted"))
    with pytest.raises(MlkitError, match=r"snapshot of .* is gone"):
        run_drift_check(engine, world["config"], model=gone.ref, record=False)
    other = register_stand_in(engine, tmp_path, "recommender")
    with pytest.raises(MlkitError, match="is a recommender model"):
        run_drift_check(engine, world["config"], model=other.ref, record=False)


def test_a_quiet_window_is_skipped_with_exit_0_and_nothing_recorded(
    engine, world, cli, database_url, monkeypatch
):
    # A week after the last order: the window counts back from now, not from that order.
    monkeypatch.setenv("MLKIT_NOW", (world["now"] + pd.Timedelta(days=7)).isoformat())
    before = latest_drift_check(engine)
    result = drift_check(cli, database_url, world["ref"], "1d", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["status"] == "skipped" and not document["drifted"]
    assert document["current_rows"] == 0 and document["check_id"] is None
    assert "skipped: only 0 recent orders" in document["warnings"][0]
    assert latest_drift_check(engine) == before
    table = drift_check(cli, database_url, world["ref"], "1d")
    assert table.exit_code == 0 and "nothing compared" in table.stdout


# ---------------------------------------------------------------- a world over time


def test_aging_days_report_no_drift_and_a_price_shift_is_caught(tmp_path, monkeypatch):
    """A 30-day world, a model trained at its end, clean days appended and checked with the
    clock at each day's end: nothing drifts and no alert fires; a day of prices x1.6 is
    caught and named."""
    from datetime import datetime, timedelta

    from mlkit.toolkit.alerts import check_alerts
    from mlkit.toolkit.config import load_config
    from mlkit.toolkit.db import init_schema, make_engine
    from mlkit.toolkit.demo.seed import seed_demo
    from mlkit.toolkit.fraud.dataset import build_fraud_dataset
    from mlkit.toolkit.fraud.etl import run_etl

    engine = make_engine(f"sqlite:///{tmp_path}/world.db")
    init_schema(engine)
    end = datetime(2026, 1, 31)
    monkeypatch.setenv("MLKIT_NOW", end.isoformat())
    seed_demo(engine, orders=8000, days=30, seed=3, families=("fraud",), start=end - timedelta(30))
    run_etl(engine, None, end)
    snapshot = build_fraud_dataset(engine, tmp_path / "datasets", since=None, until=None)
    ref = register_stand_in(engine, tmp_path / "artifacts", "fraud", str(snapshot.path)).ref
    config = load_config()

    def next_day(day: int, shift=None) -> dict:
        now = end + timedelta(days=day)
        seed_demo(engine, days=1, append=True, shift=shift)
        monkeypatch.setenv("MLKIT_NOW", now.isoformat())
        run_etl(engine, now - timedelta(days=1), now)
        return run_drift_check(engine, config, model=ref)

    for day in (1, 2, 3):
        document = next_day(day)
        assert document["status"] == "checked" and document["window"]["text"] == "1d"
        assert document["reference_slice"]["mode"] == "recent"
        assert document["reference_slice"]["calibration_windows"] > 0
        assert document["features_drifted"] == [], (day, document["features_drifted"])
        assert document["max_kl"] <= 0.15
        fired = check_alerts(engine, config)["rules"]
        assert not next(r for r in fired if r["rule"] == "model_drift")["firing"]

    document = next_day(4, shift={"price": 1.6})
    assert "price_deviation_ratio" in document["features_drifted"]
    shifted = next(r for r in document["features"] if r["feature"] == "price_deviation_ratio")
    assert shifted["kl_excess"] > 0.15 and "kl" in shifted["reasons"]
    drift_alert = next(
        r for r in check_alerts(engine, config)["rules"] if r["rule"] == "model_drift"
    )
    assert drift_alert["firing"] and "price_deviation_ratio" in drift_alert["message"]
    engine.dispose()
