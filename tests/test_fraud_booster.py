"""A loaded fraud model scores one order without the xgboost package, scikit-learn or pandas,
and its figures are those libraries' own, bit for bit: XGBoost through libxgboost's C API
(`fraud/booster.py`), the logistic-regression baseline from its fitted numbers with numpy."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from mlkit.toolkit.errors import MlkitError
from mlkit.toolkit.fraud.booster import NativeBooster
from mlkit.toolkit.fraud.columns import NUMERIC_FEATURES
from mlkit.toolkit.fraud.model import LogRegFraud, XGBoostFraud, load_model

METHODS = ("apple_pay", "bank_transfer", "credit_card", "crypto_wallet", "debit_card", "paypal")


def orders(rows: int, seed: int) -> pd.DataFrame:
    """Orders' features with a learnable label, a fifth of each numeric feature missing."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {name: rng.gamma(2.0, 3.0, rows) * (i + 1) for i, name in enumerate(NUMERIC_FEATURES)}
    )
    for name in NUMERIC_FEATURES:
        frame.loc[rng.random(rows) < 0.2, name] = np.nan
    frame["is_resale"] = rng.random(rows) < 0.3
    frame["payment_method"] = rng.choice(METHODS[:5], rows)  # paypal never trained on
    signal = frame["txn_velocity_1h"].fillna(0) / 3 - frame["wallet_age_days"].fillna(20) / 10
    frame["label"] = (signal + 2 * frame["is_resale"] + rng.normal(0, 1, rows) > 1).astype(int)
    return frame


@pytest.fixture(scope="module")
def trained():
    train, valid = orders(4_000, seed=1), orders(1_500, seed=2)
    for frame in (train, valid):  # a feature never seen in training: the Pipeline drops it
        frame["social_graph_centrality"] = np.nan
    xgb_model = XGBoostFraud(num_boost_round=60, early_stopping_rounds=20).fit(train, valid)
    logreg = LogRegFraud().fit(train, valid)
    return xgb_model, logreg


def scored_rows() -> list[dict]:
    """Rows to score: NaN and None features, a method never trained on, every method."""
    frame = orders(400, seed=7)
    frame.loc[:40, "payment_method"] = "paypal"
    rows = frame.drop(columns="label").to_dict("records")
    for i, row in enumerate(rows[:60]):
        row[NUMERIC_FEATURES[i % len(NUMERIC_FEATURES)]] = None
        row["is_resale"] = bool(i % 2)
    return rows


def saved(model, tmp_path) -> bytes:
    path = tmp_path / model.filename
    model.save(path)
    return path.read_bytes()


def test_xgboost_scores_and_contributions_equal_the_xgboost_package(trained, tmp_path):
    import xgboost as xgb

    model = trained[0]
    loaded = load_model(saved(model, tmp_path), model.params())
    reference = xgb.Booster()
    reference.load_model(bytearray(saved(model, tmp_path)))
    rounds = (0, model.best_iteration_ + 1)
    a, b = model.calibration_
    rows = scored_rows()
    for row in rows:
        matrix = loaded._row(row)
        margin = reference.inplace_predict(matrix, iteration_range=rounds, predict_type="margin")
        expected = float(1.0 / (1.0 + np.exp(-np.clip(a * margin.astype(float) + b, -50, 50)))[0])
        assert loaded.predict_one(row) == expected
        contributions = reference.predict(
            xgb.DMatrix(matrix), pred_contribs=True, iteration_range=rounds, validate_features=False
        )[:, :-1]
        names, values, _ = loaded.contributions_one(row)
        assert names == model.feature_names
        np.testing.assert_array_equal(values, contributions)
    frame = pd.DataFrame(rows)
    dmatrix = xgb.DMatrix(model._matrix(frame), feature_names=model.feature_names)
    margins = reference.predict(dmatrix, output_margin=True, iteration_range=rounds)
    expected = 1.0 / (1.0 + np.exp(-np.clip(a * margins + b, -50.0, 50.0)))
    np.testing.assert_array_equal(loaded.predict_proba(frame), expected)
    np.testing.assert_array_equal(
        loaded.contributions(frame)[1],
        reference.predict(dmatrix, pred_contribs=True, iteration_range=rounds)[:, :-1],
    )
    matrix = model._matrix(frame)
    np.testing.assert_array_equal(
        loaded.margins(matrix),
        reference.inplace_predict(matrix, iteration_range=rounds, predict_type="margin"),
    )
    # The trained model scores as its artifact does, and the package's Booster is there
    # for what needs it (gain importances, saving).
    assert [model.predict_one(r) for r in rows] == [loaded.predict_one(r) for r in rows]
    np.testing.assert_array_equal(loaded.importances()[1], model.importances()[1])


def test_logreg_scores_and_contributions_equal_the_scikit_learn_pipeline(trained, tmp_path):
    model = trained[1]
    names = model._prepared()[0]
    assert "numeric__social_graph_centrality" not in names
    assert "numeric__missingindicator_txn_velocity_1h" in names
    loaded = load_model(saved(model, tmp_path), model.params())
    assert loaded._pipeline is None  # nothing built scikit-learn's Pipeline to load it
    pipeline = model.pipeline_
    for row in scored_rows():
        frame = model._inputs(pd.DataFrame([row]))
        assert loaded.predict_one(row) == float(pipeline.predict_proba(frame)[0, 1])
        names, values, unit = loaded.contributions_one(row)
        expected_names, expected, expected_unit = model.contributions(pd.DataFrame([row]))
        assert (names, unit) == (expected_names, expected_unit)
        np.testing.assert_array_equal(values, expected)
    assert loaded._pipeline is None
    # A value only the Pipeline's conversions decide goes to the Pipeline.
    row = {**scored_rows()[0], "payment_method": None}
    assert loaded.predict_one(row) == model.predict_one(row)


def test_a_damaged_booster_fails_as_one_error():
    with pytest.raises(MlkitError, match="XGBoost failed"):
        NativeBooster(b"not a model")


def test_without_libxgboost_predicting_fails_with_a_clear_error(tmp_path):
    """An xgboost package without its library (a broken install) is named, not a crash."""
    (tmp_path / "xgboost").mkdir()
    (tmp_path / "xgboost" / "__init__.py").write_text("raise ImportError('never executed')\n")
    script = textwrap.dedent(
        """
        import sys
        from mlkit.toolkit.errors import MlkitError
        from mlkit.toolkit.fraud.booster import NativeBooster
        try:
            NativeBooster(b"{}")
        except MlkitError as exc:
            print(exc.message, "|", exc.hint)
        print("xgboost imported" if "xgboost" in sys.modules else "xgboost not imported")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "cannot find libxgboost in the xgboost package at" in done.stdout
    assert "pip install xgboost" in done.stdout
    assert "xgboost not imported" in done.stdout


def test_scoring_a_loaded_model_imports_no_heavy_library(trained, tmp_path):
    for model in trained:
        path = tmp_path / model.filename
        model.save(path)
        script = textwrap.dedent(
            f"""
            import json, sys
            from mlkit.toolkit.fraud.model import load_model
            model = load_model(open({str(path)!r}, "rb").read(), {model.params()!r})
            row = json.loads({json.dumps(json.dumps(scored_rows()[3]))})
            print(model.predict_one(row))
            model.contributions_one(row)
            print(json.dumps(sorted(
                m for m in ("xgboost", "sklearn", "pandas", "scipy") if m in sys.modules
            )))
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        )
        score, heavy = done.stdout.splitlines()
        assert json.loads(heavy) == []
        assert float(score) == model.predict_one(scored_rows()[3])
