"""`mlkit signal run` / `status` and `mlkit train signal` on every dialect: the guards, the
cooldown after a failed automatic training, the fallback, the warning counter, and a
trained model serving."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

import mlkit.toolkit.signal.train as signal_train
from mlkit.toolkit.clock import utcnow
from mlkit.toolkit.config import load_config
from mlkit.toolkit.demo import market
from mlkit.toolkit.demo.params import DemoParams
from mlkit.toolkit.errors import MlkitError
from mlkit.toolkit.registry import alias_target
from mlkit.toolkit.schema import signals, training_runs
from mlkit.toolkit.signal.family import train as train_signal
from mlkit.toolkit.signal.market import upsert_bars
from mlkit.toolkit.signal.run import run_signal, signal_status
from mlkit.toolkit.validation import CandidateRejected

# Small and quick: the behaviour under test does not need a strong model.
FAST = {
    "horizon_bars": 12,
    "iterations": 40,
    "learning_rate": 0.2,
    "depth": 4,
    "selection_iterations": 15,
    "rfe_features": 15,
    "rfe_steps": 2,
}


def symbol() -> str:
    return f"S{uuid.uuid4().hex[:8].upper()}"


def cyclic_bars(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    close = 100.0 * np.exp(0.05 * np.sin(2 * np.pi * t / 120) + rng.normal(0, 0.004, n))
    open_ = np.r_[close[0], close[:-1]]
    return pd.DataFrame(
        {
            "ts": pd.date_range("2026-01-01", periods=n, freq="h"),
            "open": open_,
            "high": np.maximum(open_, close) * 1.001,
            "low": np.minimum(open_, close) * 0.999,
            "close": close,
            "volume": rng.lognormal(5, 0.3, n),
        }
    )


def random_walk_bars(n: int, seed: int = 0) -> pd.DataFrame:
    """Prices with no structure at all: nothing to learn, so nothing may be promoted."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.006, n)))
    bars = cyclic_bars(n, seed)
    open_ = np.r_[close[0], close[:-1]]
    return bars.assign(
        open=open_,
        close=close,
        high=np.maximum(open_, close) * 1.001,
        low=np.minimum(open_, close) * 0.999,
    )


@pytest.fixture(scope="module")
def demo_bars() -> pd.DataFrame:
    """A year of the demo market's ETHUSDT (seed 0): regimes a model can learn, and does
    (benchmarks/models_signal.py: its gate passes against every reference)."""
    params = DemoParams(seed=0, orders=1, days=365, start=datetime(2025, 1, 1), world_orders=1)
    frame = market.generate(params, None)["market_data"]
    return frame[frame["symbol"] == "ETHUSDT"].drop(columns="symbol").reset_index(drop=True)


def load(engine, sym: str, n: int, seed: int = 0, bars=None) -> None:
    with engine.begin() as conn:
        upsert_bars(conn, sym, cyclic_bars(n, seed) if bars is None else bars)


@pytest.fixture
def config(engine, tmp_path):
    url = engine.url.render_as_string(hide_password=False)
    config = load_config(database_url=url, env={"MLKIT_HOME": str(tmp_path / "home")})
    config.data["signal"].update(FAST)
    return config


@pytest.fixture
def demo_config(engine, tmp_path):
    """The shipped signal settings: what the demo model is measured with."""
    url = engine.url.render_as_string(hide_password=False)
    return load_config(database_url=url, env={"MLKIT_HOME": str(tmp_path / "home")})


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "fast.yaml"
    path.write_text(yaml.safe_dump({"signal": FAST}))
    return str(path)


def runs_of(engine, sym: str) -> list:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(training_runs)
            .where(training_runs.c.model_name == f"signal-{sym}")
            .order_by(training_runs.c.run_id)
        ).fetchall()


def signal_rows(engine, sym: str) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.select(signals).where(signals.c.symbol == sym)).fetchall()


def test_too_few_samples_no_training_fallback_and_status_says_why(engine, config, monkeypatch):
    sym = symbol()
    load(engine, sym, 120)
    calls = []
    monkeypatch.setattr(signal_train, "fit_signal", lambda *a, **k: calls.append(1))
    result = run_signal(engine, config, sym)
    assert calls == [] and runs_of(engine, sym) == []  # nothing attempted, nothing recorded
    assert result["training"] == {
        "attempted": False,
        "outcome": "skipped",
        "reason": "insufficient_samples",
        "detail": "120 bars < signal.min_initial_train_samples 400: no training attempted",
    }
    assert result["fallback"] is True and result["model_version"] is None
    assert result["signal"] in ("SELL", "HOLD", "BUY")
    assert 55.0 <= result["confidence"] <= 65.0
    assert set(result["fallback_indicators"]) == {"sma_14", "sma_50", "rsi"}
    assert result["allow_fallback_execution"] is False and result["execution_allowed"] is False
    assert result["ts"] == "2026-01-05T23:00:00"
    (row,) = signal_rows(engine, sym)
    assert (row.signal, row.fallback, row.confidence) == (
        result["signal"],
        True,
        pytest.approx(result["confidence"]),
    )

    status = signal_status(engine, config, sym)[sym]
    assert status["is_trained"] is False and status["fallback_active"] is True
    assert status["untrained_reason"]["code"] == "insufficient_samples"
    assert (
        "120 bars < signal.min_initial_train_samples 400" in (status["untrained_reason"]["detail"])
    )
    assert status["last_training_time"] is None and status["samples_in_last_train"] == 0
    assert status["training_cooldown_active"] is False and status["next_retry_at"] is None
    assert status["prediction_warning_count"] == 1
    assert status["last_signal"]["fallback"] is True

    # Asking for a training explicitly is refused the same way, without a run row.
    with pytest.raises(MlkitError, match="no training attempted"):
        train_signal(engine, config, sym)
    assert runs_of(engine, sym) == []


def test_a_failed_training_starts_the_cooldown_and_runs_inside_it_do_not_retry(
    engine, config, monkeypatch
):
    sym = symbol()
    load(engine, sym, 450)
    calls = []

    def broken_fit(bars, settings):
        calls.append(len(bars))
        raise RuntimeError("CatBoostError: forced failure")

    monkeypatch.setattr(signal_train, "fit_signal", broken_fit)
    first = run_signal(engine, config, sym)
    assert calls == [450]
    assert first["training"]["attempted"] is True and first["training"]["outcome"] == "failed"
    assert first["fallback"] is True and first["fallback_reason"]["code"] == "training_cooldown"
    (run,) = runs_of(engine, sym)
    assert run.status == "failed" and run.last_error == "RuntimeError"
    assert timedelta(seconds=590) < run.next_retry_at - run.finished_at <= timedelta(seconds=601)

    second = run_signal(engine, config, sym)
    assert calls == [450]  # not retried
    assert len(runs_of(engine, sym)) == 1
    assert second["training"]["outcome"] == "skipped"
    assert second["training"]["reason"] == "training_cooldown"
    assert second["fallback"] is True

    status = signal_status(engine, config, sym)[sym]
    assert status["training_cooldown_active"] is True
    assert status["next_retry_at"] == run.next_retry_at.isoformat()
    assert status["last_training_error"] == "RuntimeError"
    assert status["untrained_reason"]["code"] == "training_cooldown"
    assert status["prediction_warning_count"] == 2

    # Once the cooldown is over, the next run retries.
    with engine.begin() as conn:
        conn.execute(
            training_runs.update()
            .where(training_runs.c.run_id == run.run_id)
            .values(next_retry_at=utcnow() - timedelta(seconds=1))
        )
    assert signal_status(engine, config, sym)[sym]["untrained_reason"]["code"] == (
        "training_failed"
    )
    third = run_signal(engine, config, sym)
    assert calls == [450, 450] and third["training"]["outcome"] == "failed"


def test_the_not_trained_warning_is_logged_every_tenth_prediction(engine, config, caplog):
    sym = symbol()
    load(engine, sym, 60)
    with caplog.at_level(logging.WARNING, logger="mlkit.signal"):
        results = [run_signal(engine, config, sym, train=False) for _ in range(11)]
    warnings = [r.getMessage() for r in caplog.records if "is not trained" in r.getMessage()]
    assert len(warnings) == 2
    assert "untrained prediction 1;" in warnings[0] and "untrained prediction 11;" in warnings[1]
    assert [r["prediction_warning_count"] for r in results] == list(range(1, 12))
    assert len(signal_rows(engine, sym)) == 1  # the same bar, signalled again: one row
    assert signal_status(engine, config, sym)[sym]["prediction_warning_count"] == 11


@pytest.mark.slow
def test_automatic_initial_training_then_the_model_serves(
    engine, demo_config, demo_bars, monkeypatch
):
    config = demo_config
    sym = symbol()
    load(engine, sym, 0, bars=demo_bars)
    first = run_signal(engine, config, sym)
    assert first["training"]["outcome"] == "trained" and first["training"]["version"] == 1
    assert first["fallback"] is False and first["model_version"] == f"signal-{sym}:1"
    assert set(first["probabilities"]) == {"SELL", "HOLD", "BUY"}
    assert first["confidence"] == pytest.approx(100 * max(first["probabilities"].values()), 0.01)
    assert first["execution_allowed"] is True and "fallback_indicators" not in first

    monkeypatch.setattr(signal_train, "fit_signal", lambda *a, **k: pytest.fail("retrained"))
    second = run_signal(engine, config, sym)
    assert second["training"] == {"attempted": False, "outcome": "not_needed"}
    assert second["signal"] == first["signal"]
    (row,) = signal_rows(engine, sym)
    assert row.model_version == f"signal-{sym}:1" and row.fallback is False

    status = signal_status(engine, config, sym)[sym]
    (run,) = runs_of(engine, sym)
    assert status["is_trained"] is True and status["fallback_active"] is False
    assert status["untrained_reason"] is None
    assert status["samples_in_last_train"] == run.n_samples > 8000
    assert sum(status["class_distribution"].values()) == run.n_samples
    assert set(status["class_weights"]) == {"SELL", "HOLD", "BUY"}
    assert status["sanitization"]["final_features"] >= 20
    assert status["selection"]["method"] == "none"
    metrics = status["metrics"]
    assert metrics["macro_f1"] > max(metrics["baselines"].values())
    assert metrics["accuracy"] > metrics["majority_accuracy"] + 0.05
    assert status["last_training_error"] is None and status["training_cooldown_active"] is False
    assert status["last_training_time"] is not None
    assert status["prediction_warning_count"] == 0


def test_a_model_without_skill_stays_candidate_and_the_fallback_serves(engine, config, monkeypatch):
    """Random-walk prices: signal run's initial training registers a version that its gate
    keeps from prod; the fallback serves without executing, and the next run waits."""
    sym = symbol()
    load(engine, sym, 0, bars=random_walk_bars(900, seed=4))
    first = run_signal(engine, config, sym)
    assert first["training"]["outcome"] == "candidate", first["training"]
    assert "not above the" in first["training"]["detail"]
    assert first["fallback"] is True and first["model_version"] is None
    assert first["execution_allowed"] is False
    assert first["fallback_reason"]["code"] == "gate_rejected"
    name = f"signal-{sym}"
    assert alias_target(engine, name, "prod") is None
    assert alias_target(engine, name, "candidate") == 1
    (run,) = runs_of(engine, sym)
    assert run.status == "rejected"

    monkeypatch.setattr(signal_train, "fit_signal", lambda *a, **k: pytest.fail("retrained"))
    second = run_signal(engine, config, sym)
    assert second["training"]["outcome"] == "skipped"
    assert second["training"]["reason"] == "gate_rejected"
    assert second["fallback"] is True and second["execution_allowed"] is False
    status = signal_status(engine, config, sym)[sym]
    assert status["is_trained"] is False and status["untrained_reason"]["code"] == "gate_rejected"

    # Hourly runs hold off for signal.retrain_after_rejection (1d), then train again.
    monkeypatch.setenv("MLKIT_NOW", (run.finished_at + timedelta(hours=23)).isoformat())
    assert run_signal(engine, config, sym)["training"]["outcome"] == "skipped"
    retrained = []

    def fit_again(*args, **kwargs):
        retrained.append(1)
        raise RuntimeError("stop after the attempt")

    monkeypatch.setattr(signal_train, "fit_signal", fit_again)
    monkeypatch.setenv("MLKIT_NOW", (run.finished_at + timedelta(days=1, minutes=1)).isoformat())
    assert run_signal(engine, config, sym)["training"]["attempted"] is True
    assert retrained == [1]


@pytest.mark.parametrize("useless", ["random_walk", "shuffled"])
def test_train_signal_without_skill_leaves_prod_where_it_was(engine, config, demo_bars, useless):
    """A prod version exists; retraining on data with no structure registers a candidate
    and prod stays on the old version."""
    from mlkit.toolkit.registry import promote

    sym = symbol()
    name = f"signal-{sym}"
    load(engine, sym, 0, bars=random_walk_bars(900, seed=5))
    with pytest.raises(CandidateRejected):
        train_signal(engine, config, sym)
    promote(engine, name, 1, "prod", reason="a stand-in for an earlier prod")
    bars = random_walk_bars(900, seed=6)
    if useless == "shuffled":  # the demo market's hourly returns in a random order
        rng = np.random.default_rng(6)
        steps = np.diff(np.log(demo_bars["close"].to_numpy()[:901]))
        close = 100.0 * np.exp(np.cumsum(rng.permutation(steps)))
        open_ = np.r_[close[0], close[:-1]]
        bars = bars.assign(
            open=open_,
            close=close,
            high=np.maximum(open_, close) * 1.001,
            low=np.minimum(open_, close) * 0.999,
        )
    bars = bars.assign(ts=bars["ts"] + pd.Timedelta(hours=900))
    load(engine, sym, 0, bars=bars)
    with pytest.raises(CandidateRejected) as rejected:
        train_signal(engine, config, sym, force=True)
    assert "not above the" in rejected.value.message
    assert alias_target(engine, name, "prod") == 1
    assert alias_target(engine, name, "candidate") == 2


@pytest.mark.slow
def test_cli_train_run_status(engine, cli, config_file, demo_bars, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mlkit.train")
    url = engine.url.render_as_string(hide_password=False)
    env = {"MLKIT_DATABASE_URL": url, "MLKIT_HOME": str(tmp_path / "cli-home")}
    sym = symbol()
    few = cli("--config", config_file, "train", "signal", "--symbol", sym, env=env)
    assert few.exit_code == 1 and "has 0 bars" in few.stderr and "ingest market" in few.stderr
    no_data = cli("--config", config_file, "signal", "run", "--symbol", sym, env=env)
    assert no_data.exit_code == 1 and f"no market data for {sym}" in no_data.stderr
    load(engine, sym, 0, bars=demo_bars)

    trained = cli("train", "signal", "--symbol", sym, "--alias", "prod", "--json", env=env)
    assert trained.exit_code == 0, trained.output
    document = json.loads(trained.stdout)
    assert document["ref"] == f"signal-{sym}:1" and document["alias"] == "prod"
    assert document["selection"]["method"] == "none" and document["gate"]["passed"] is True
    metrics = document["metrics"]
    assert {"accuracy", "macro_f1", "per_class", "backtest", "baselines", "gate"} <= set(metrics)
    assert set(metrics["baselines"]) == {"training_majority", "random", "momentum", "logistic"}
    assert set(metrics["backtest"]) >= {"model", "fallback", "buy_and_hold"}
    logged = [r.getMessage() for r in caplog.records if r.name == "mlkit.train"]
    assert any(line.startswith("[TRAIN] Raw features: ") for line in logged)
    assert any(line.startswith("[TRAIN] Class distribution - SELL: ") for line in logged)

    valid = cli("validate", "model", f"signal-{sym}@prod", env=env)
    assert valid.exit_code == 0, valid.output

    run = cli("--config", config_file, "signal", "run", "--symbol", sym, "--json", env=env)
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["model_version"] == f"signal-{sym}:1"
    human = cli("--config", config_file, "signal", "run", "--symbol", sym, env=env)
    assert human.exit_code == 0 and f"signal-{sym}:1" in human.stdout

    status = cli("signal", "status", "--symbol", sym, "--json", env=env)
    assert status.exit_code == 0, status.output
    info = json.loads(status.stdout)
    for field in (
        "is_trained",
        "fallback_active",
        "last_training_time",
        "samples_in_last_train",
        "class_distribution",
        "class_weights",
        "training_cooldown_active",
        "next_retry_at",
        "last_training_error",
        "sanitization",
        "prediction_warning_count",
    ):
        assert field in info
    assert info["is_trained"] is True
    everything = cli("signal", "status", "--json", env=env)
    assert sym in json.loads(everything.stdout)
    table = cli("signal", "status", "--symbol", sym, env=env)
    assert table.exit_code == 0 and "sanitisation" in table.stdout

    overall = cli("status", "--json", env=env)
    assert overall.exit_code == 0, overall.output
    family = json.loads(overall.stdout)["signal"]
    assert family["is_trained"] is True and family["symbols"][sym]["prod"] == 1


def test_commands_on_a_database_without_the_schema_say_db_init(cli, tmp_path):
    env = {"MLKIT_DATABASE_URL": f"sqlite:///{tmp_path}/empty.db"}
    for command in (
        ["signal", "run", "--symbol", "BTCUSDT"],
        ["signal", "status"],
        ["train", "signal", "--symbol", "BTCUSDT"],
    ):
        result = cli(*command, env=env)
        assert result.exit_code == 1, result.output
        assert "missing in this database" in result.stderr and "mlkit db init" in result.stderr
