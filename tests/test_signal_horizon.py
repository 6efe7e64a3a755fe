"""`signal.horizon` is a duration counted in bars on the symbol's own bars: one day is 24 hourly
bars and one daily bar; an explicit `signal.horizon_bars` wins; `signal status` shows both."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pandas as pd
import pytest

from mlkit.toolkit.errors import MlkitError
from mlkit.toolkit.signal.horizon import bars_for, duration_text, parse_horizon
from mlkit.toolkit.signal.train import TrainSettings, prepare

HOURLY = pd.date_range("2026-01-01", periods=600, freq="h")
TRADING_DAYS = pd.bdate_range("2024-01-01", periods=600)  # weekdays only


def bars_at(ts) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(ts))))
    open_ = np.r_[close[0], close[:-1]]
    return pd.DataFrame(
        {
            "ts": ts,
            "open": open_,
            "high": np.maximum(open_, close) * 1.002,
            "low": np.minimum(open_, close) * 0.998,
            "close": close,
            "volume": rng.lognormal(5, 0.3, len(ts)),
        }
    )


def test_one_day_is_24_hourly_bars_and_one_daily_bar():
    settings = TrainSettings.default()
    assert (settings.horizon, settings.horizon_duration) == (0, "1d")
    hourly, daily = settings.horizon_on(HOURLY), settings.horizon_on(TRADING_DAYS)
    assert (hourly.bars, hourly.as_dict()["bar_interval"], hourly.as_dict()["spans"]) == (
        24,
        "1h",
        "1d",
    )
    assert (daily.bars, daily.as_dict()["bar_interval"]) == (1, "1d")
    # A week of trading days is five bars, not seven: weekends have none.
    assert bars_for(TRADING_DAYS, parse_horizon("7d")) == 5
    assert bars_for(HOURLY, parse_horizon("4h")) == 4
    short = TrainSettings.default(horizon_duration="4h").horizon_on(TRADING_DAYS)
    assert short.bars == 1 and "shorter than the bar interval 1d" in short.note
    # An explicit count wins, whatever the bars.
    explicit = TrainSettings.default(horizon=24).horizon_on(TRADING_DAYS)
    assert (explicit.bars, explicit.source) == (24, "signal.horizon_bars")


def test_the_labels_look_the_counted_bars_ahead():
    hourly = prepare(bars_at(HOURLY), TrainSettings.default())
    daily = prepare(bars_at(TRADING_DAYS), TrainSettings.default())
    assert (hourly.horizon, daily.horizon) == (24, 1)
    # The last `horizon` bars have no label: 24 hourly ones, one daily one.
    assert hourly.bar_rows[-1] == len(HOURLY) - 25 and daily.bar_rows[-1] == len(TRADING_DAYS) - 2
    close = bars_at(TRADING_DAYS)["close"].to_numpy()
    i = daily.bar_rows[-1]
    assert daily.returns[-1] == pytest.approx(np.log(close[i + 1] / close[i]))


def test_a_bad_horizon_is_refused_by_name():
    with pytest.raises(MlkitError, match=r"signal\.horizon '1 fortnight' is not a duration"):
        TrainSettings.default(horizon_duration="1 fortnight")
    with pytest.raises(MlkitError, match=r"signal\.horizon_bars -3 is negative"):
        TrainSettings.default(horizon=-3)
    TrainSettings.default(horizon=12, horizon_duration="nonsense")  # the count wins
    assert [duration_text(s) for s in (3600, 86400, 5400, 90, 0)] == [
        "1h",
        "1d",
        "90m",
        "90s",
        None,
    ]


def test_status_shows_the_horizon_in_bars_and_as_time(engine, cli, tmp_path):
    env = {"MLKIT_DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    shown = {}
    for name, ts in (("hourly", HOURLY[:100]), ("daily", TRADING_DAYS[:100])):
        sym = f"H{uuid.uuid4().hex[:8].upper()}"
        path = tmp_path / f"{name}.csv"
        bars_at(ts).to_csv(path, index=False)
        loaded = cli("ingest", "market", "--csv", str(path), "--symbol", sym, env=env)
        assert loaded.exit_code == 0, loaded.output
        status = cli("signal", "status", "--symbol", sym, "--json", env=env)
        assert status.exit_code == 0, status.output
        shown[name] = json.loads(status.stdout)["horizon"]
        human = cli("signal", "status", "--symbol", sym, env=env)
        assert human.exit_code == 0 and "horizon" in human.stdout
    assert {k: shown["hourly"][k] for k in ("bars", "duration", "bar_interval", "spans", "of")} == {
        "bars": 24,
        "duration": "1d",
        "bar_interval": "1h",
        "spans": "1d",
        "of": "config",
    }
    assert (shown["daily"]["bars"], shown["daily"]["bar_interval"]) == (1, "1d")


def test_serving_warns_when_the_bars_are_spaced_otherwise_than_in_training(caplog):
    from pathlib import Path

    from mlkit.toolkit.registry import ModelVersion
    from mlkit.toolkit.signal.run import _serving_horizon

    params = {"horizon_bars": 24, "horizon": "1d", "bar_interval_seconds": 3600.0}
    mv = ModelVersion("signal-X", 3, "signal", Path("model.cbm"), "0" * 64, params=params)
    same = _serving_horizon(mv, HOURLY[-300:])
    assert (same["bars"], same["spans"], same.get("warning")) == (24, "1d", None)
    with caplog.at_level("WARNING", logger="mlkit.signal"):
        other = _serving_horizon(mv, TRADING_DAYS[-300:])
    assert "trained on bars every 1h, the latest bars are 1d apart" in other["warning"]
    assert other["warning"] in caplog.text
    # A version without a recorded horizon says nothing rather than guess.
    assert _serving_horizon(ModelVersion("signal-X", 1, "signal", Path("m"), ""), HOURLY) is None
