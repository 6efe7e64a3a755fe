"""`mlkit cron show [--install]` against a fake, file-backed crontab."""

from __future__ import annotations

import json
import shlex
import sys
from datetime import datetime

import pytest

from mlkit.toolkit.config import load_config
from mlkit.toolkit.cron import (
    BEGIN,
    END,
    build_block,
    check_schedule,
    merge_block,
    mlkit_executable,
)
from mlkit.toolkit.errors import MlkitError

FAKE_CRONTAB = """
import os, sys
path = os.environ["FAKE_CRONTAB_FILE"]
if sys.argv[1] == "-l":
    if not os.path.exists(path):
        sys.stderr.write("no crontab for tester\\n")
        sys.exit(1)
    sys.stdout.write(open(path).read())
elif sys.argv[1] == "-":
    open(path, "w").write(sys.stdin.read())
else:
    sys.exit(2)
"""

USER_LINES = """MAILTO=ops@example.com
# my backup
30 1 * * * /usr/local/bin/backup --all >> /var/log/backup.log 2>&1
"""


@pytest.fixture
def crontab(tmp_path, monkeypatch):
    script = tmp_path / "fake_crontab.py"
    script.write_text(FAKE_CRONTAB)
    store = tmp_path / "crontab.txt"
    monkeypatch.setenv("MLKIT_CRONTAB_CMD", f"{shlex.quote(sys.executable)} {script}")
    monkeypatch.setenv("FAKE_CRONTAB_FILE", str(store))
    return store


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "ops" / "mlkit.yaml"
    path.parent.mkdir()
    path.write_text("cron:\n  train_pricing: '45 4 * * 1'\n  kpi_refresh: ''\n")
    return path


def test_the_block_calls_mlkit_and_the_config_by_absolute_path_under_flock(
    cli, crontab, config_file, tmp_path
):
    result = cli("--config", str(config_file), "cron", "show", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    block = document["block"]
    assert block.startswith(BEGIN + "\n") and block.endswith(END + "\n")
    jobs = {job["name"]: job for job in document["jobs"]}
    exe = mlkit_executable()
    assert exe[0].startswith("/")
    executable = " ".join(shlex.quote(part) for part in exe)
    assert set(jobs) == {"etl", "retention", "train_fraud", "train_pricing",
                         "train_recommender", "drift", "alerts"}  # fmt: skip
    logs = tmp_path / "home" / "logs"
    assert document["logs_dir"] == str(logs.resolve())
    for name, job in jobs.items():
        command = job["command"]
        line = f"{job['schedule']} {command}"
        assert line in block.splitlines()
        assert f"flock -n {logs.resolve()}/locks/{name}.lock " in command
        assert command.endswith(f">> {logs.resolve()}/{name}.log 2>&1")
        assert f"--config {config_file.resolve()}" in command
        assert f"{executable} " in command
    assert jobs["etl"]["schedule"] == "0 2 * * *"
    assert jobs["train_pricing"]["schedule"] == "45 4 * * 1"  # from the config file
    assert jobs["retention"]["schedule"] == "0 3 * * 0"
    assert jobs["drift"]["schedule"].endswith(" * * * *")
    assert "dataset build fraud && " in jobs["train_fraud"]["command"]
    assert f"MLKIT_HOME={(tmp_path / 'home').resolve()}" in jobs["etl"]["command"]
    assert not crontab.exists()  # show alone installs nothing


def test_installing_twice_gives_one_block_and_keeps_the_users_lines(cli, crontab, config_file):
    crontab.write_text(USER_LINES)
    first = cli("--config", str(config_file), "cron", "show", "--install")
    assert first.exit_code == 0, first.output
    assert "crontab updated" in first.stderr
    installed = crontab.read_text()
    second = cli("--config", str(config_file), "cron", "show", "--install", "--json")
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["install"] == {"changed": False}
    assert crontab.read_text() == installed
    assert installed.count(BEGIN) == 1 and installed.count(END) == 1
    assert installed.startswith(USER_LINES)
    for line in USER_LINES.splitlines():
        assert installed.splitlines().count(line) == 1

    # A changed schedule replaces the block in place; the user's lines stay.
    config_file.write_text("cron:\n  etl: '15 1 * * *'\n")
    crontab.write_text(installed + "0 5 * * * /usr/bin/added-later\n")
    third = cli("--config", str(config_file), "cron", "show", "--install")
    assert third.exit_code == 0, third.output
    text = crontab.read_text()
    schedules = [line.split(" MLKIT_HOME")[0] for line in text.splitlines() if "etl run" in line]
    assert text.count(BEGIN) == 1 and schedules == ["15 1 * * *"]
    assert text.startswith(USER_LINES) and text.endswith("0 5 * * * /usr/bin/added-later\n")


def test_install_into_an_empty_crontab_creates_the_log_folders(cli, crontab, tmp_path):
    result = cli("cron", "show", "--install")
    assert result.exit_code == 0, result.output
    assert crontab.read_text().startswith(BEGIN)
    assert (tmp_path / "home" / "logs" / "locks").is_dir()
    assert "no config file is in use" in result.stderr


def test_merge_block_replaces_duplicates_and_refuses_a_lone_marker():
    block = f"{BEGIN}\n0 2 * * * new\n{END}\n"
    old = f"{BEGIN}\n0 1 * * * old\n{END}\n"
    text = f"A=1\n{old}# mine\n{old}"
    merged = merge_block(text, block)
    assert merged == f"A=1\n{block}# mine\n"
    assert merge_block(merged, block) == merged
    assert merge_block("", block) == block
    with pytest.raises(MlkitError, match="without its partner"):
        merge_block(f"x\n{BEGIN}\n0 1 * * * old\n", block)


def test_signal_lines_per_symbol_and_percent_signs_escaped(tmp_path, monkeypatch):
    monkeypatch.setenv("MLKIT_HOME", str(tmp_path / "100%home"))
    config = load_config()
    document = build_block(config, symbols=["BTCUSDT", "ETHUSDT"], executable=["/opt/mlkit"])
    signals = [j for j in document["jobs"] if j["name"].startswith("signals_")]
    assert [j["name"] for j in signals] == ["signals_BTCUSDT", "signals_ETHUSDT"]
    assert "/opt/mlkit signal run --symbol BTCUSDT" in signals[0]["command"]
    assert signals[0]["schedule"].endswith(" * * * *")
    assert "100\\%home" in signals[0]["command"] and "100%home" not in signals[0]["command"]


def test_a_password_in_the_environment_is_not_copied(tmp_path):
    env = {"MLKIT_HOME": str(tmp_path),
           "MLKIT_DATABASE_URL": "postgresql+psycopg2://app:s3cret@db/mlkit"}  # fmt: skip
    document = build_block(load_config(env=env), symbols=[], env=env, executable=["/x/mlkit"])
    assert "s3cret" not in document["block"] and "s3cret" not in json.dumps(document)
    assert any("MLKIT_DATABASE_URL holds a password" in w for w in document["warnings"])


def test_signal_lines_come_from_market_data_in_the_database(cli, crontab, tmp_path):
    from mlkit.toolkit.db import init_schema, make_engine
    from mlkit.toolkit.schema import market_data

    url = f"sqlite:///{tmp_path}/market.db"
    engine = make_engine(url)
    init_schema(engine)
    with engine.begin() as conn:
        conn.execute(market_data.insert().values(symbol="SOLUSDT", ts=datetime(2026, 1, 1),
                     open=1, high=1, low=1, close=1, volume=1))  # fmt: skip
    result = cli("--database", url, "cron", "show")
    assert result.exit_code == 0, result.output
    assert "signal run --symbol SOLUSDT" in result.stdout


@pytest.mark.parametrize("schedule", ["0 2 * *", "every day", "0 2 * * * *", "@sometimes"])
def test_bad_schedules_are_named(schedule):
    with pytest.raises(MlkitError, match=r"cron\.etl"):
        check_schedule("etl", schedule)


def test_bad_schedule_in_config_and_a_missing_crontab_are_one_error_line(cli, tmp_path,
                                                                         monkeypatch):  # fmt: skip
    bad = tmp_path / "bad.yaml"
    bad.write_text("cron:\n  drift: 'hourly'\n")
    result = cli("--config", str(bad), "cron", "show")
    assert result.exit_code == 1 and "cron.drift" in result.stderr
    monkeypatch.setenv("MLKIT_CRONTAB_CMD", str(tmp_path / "no-such-crontab"))
    result = cli("cron", "show", "--install")
    assert result.exit_code == 1 and "is not installed" in result.stderr
