"""`mlkit cron show [--install]` against a fake, file-backed crontab, and `mlkit cron run`:
the lines pasted into `sh -c` under an environment as bare as cron's."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import subprocess
import sys
from datetime import datetime

import pytest
from conftest import FAKE_CRONTAB, drop_database, make_database

from mlkit.toolkit.config import load_config
from mlkit.toolkit.cron import (
    BEGIN,
    END,
    build_block,
    check_schedule,
    is_secret,
    merge_block,
    mlkit_executable,
)
from mlkit.toolkit.errors import MlkitError
from mlkit.toolkit.jobrun import run_job

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"

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


def test_each_line_calls_cron_run_with_mlkit_and_the_config_by_absolute_path(
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
    assert set(jobs) == {
        "etl",
        "features",
        "retention",
        "train_fraud",
        "train_pricing",
        "train_recommender",
        "drift",
        "alerts",
    }
    logs = (tmp_path / "home" / "logs").resolve()
    assert document["logs_dir"] == str(logs)
    home = (tmp_path / "home").resolve()
    for name, job in jobs.items():
        line = f"{job['schedule']} {job['command']}"
        assert line in block.splitlines()
        assert job["command"] == (
            f"MLKIT_HOME={home} {executable} --config {config_file.resolve()} cron run {name}"
        )
        assert job["log"] == f"{logs}/{name}.log" and job["lock"] == f"{logs}/locks/{name}.lock"
        assert ">>" not in line and "flock" not in line
    assert jobs["etl"]["schedule"] == "0 2 * * *"
    assert jobs["train_pricing"]["schedule"] == "45 4 * * 1"  # from the config file
    assert jobs["retention"]["schedule"] == "0 3 * * 0"
    assert jobs["drift"]["schedule"].endswith(" * * * *")
    assert jobs["train_fraud"]["runs"] == ["mlkit train fraud --alias prod"]
    assert document["env_file"] == str(home / "cron.env")
    assert not crontab.exists()  # show alone installs nothing


def test_without_redis_no_features_job_is_scheduled(cli, crontab, config_file):
    config_file.write_text(config_file.read_text() + "redis:\n  enabled: false\n")
    result = cli("--config", str(config_file), "cron", "show", "--json")
    assert result.exit_code == 0, result.output
    names = {job["name"] for job in json.loads(result.stdout)["jobs"]}
    assert "features" not in names and {"etl", "drift", "alerts"} <= names


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
    schedules = [
        line.split(" MLKIT_HOME")[0] for line in text.splitlines() if line.endswith("cron run etl")
    ]
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
    assert signals[0]["command"].endswith("/opt/mlkit cron run signals_BTCUSDT")
    assert signals[0]["runs"] == ["mlkit signal run --symbol BTCUSDT"]
    assert signals[0]["schedule"].endswith(" * * * *")
    assert "100\\%home" in signals[0]["command"] and "100%home" not in signals[0]["command"]


def test_signal_lines_come_from_market_data_in_the_database(cli, crontab, tmp_path):
    from mlkit.toolkit.db import init_schema, make_engine
    from mlkit.toolkit.schema import market_data

    url = f"sqlite:///{tmp_path}/market.db"
    engine = make_engine(url)
    init_schema(engine)
    with engine.begin() as conn:
        conn.execute(
            market_data.insert().values(
                symbol="SOLUSDT", ts=datetime(2026, 1, 1), open=1, high=1, low=1, close=1, volume=1
            )
        )
    result = cli("--database", url, "cron", "show")
    assert result.exit_code == 0, result.output
    assert f"mlkit --database {url} cron run signals_SOLUSDT" in result.stdout


@pytest.mark.parametrize("schedule", ["0 2 * *", "every day", "0 2 * * * *", "@sometimes"])
def test_bad_schedules_are_named(schedule):
    with pytest.raises(MlkitError, match=r"cron\.etl"):
        check_schedule("etl", schedule)


def test_bad_schedule_in_config_and_a_missing_crontab_are_one_error_line(
    cli, tmp_path, monkeypatch
):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cron:\n  drift: 'hourly'\n")
    result = cli("--config", str(bad), "cron", "show")
    assert result.exit_code == 1 and "cron.drift" in result.stderr
    monkeypatch.setenv("MLKIT_CRONTAB_CMD", str(tmp_path / "no-such-crontab"))
    result = cli("cron", "show", "--install")
    assert result.exit_code == 1 and "is not installed" in result.stderr


# ---------------------------------------------------------------- lines pasted under cron


def bare_run(command: str, home, *extra: str) -> subprocess.CompletedProcess:
    """The line's command as cron runs it: `sh -c` under HOME, PATH and SHELL only."""
    home.mkdir(exist_ok=True)
    return subprocess.run(
        [
            "env",
            "-i",
            f"HOME={home}",
            "PATH=/usr/bin:/bin",
            "SHELL=/bin/sh",
            *extra,
            "sh",
            "-c",
            command.replace("\\%", "%"),
        ],
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
    )


def job_line(cli, config_file, name: str, env: dict) -> str:
    result = cli("--config", str(config_file), "cron", "show", "--json", env=env)
    assert result.exit_code == 0, result.output
    return {job["name"]: job for job in json.loads(result.stdout)["jobs"]}[name]["command"]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_pasted_line_runs_against_the_database_the_config_reads_from_the_environment(
    cli, tmp_path, dialect
):
    from sqlalchemy.engine import make_url

    from mlkit.toolkit.db import init_schema, make_engine

    url = make_database(dialect, tmp_path)
    try:
        engine = make_engine(url)
        init_schema(engine)
        engine.dispose()
        config_file = tmp_path / "ops" / "mlkit.yaml"
        config_file.parent.mkdir()
        if dialect == "sqlite":  # the database URL from a variable of the operator's own
            config_file.write_text("database:\n  url: ${OPS_DATABASE_URL:-}\n")
            env = {"OPS_DATABASE_URL": url}
        else:  # the seed platform's DB_* variables, as the shipped config.yaml reads them
            config_file.write_text(
                "database:\n  host: ${DB_HOST:-}\n  port: ${DB_PORT:-5432}\n"
                "  name: ${DB_NAME:-ticketing}\n  user: ${DB_USER:-postgres}\n"
                "  password: ${DB_PASSWORD:-}\n"
            )
            parsed = make_url(url)
            env = {
                "DB_HOST": parsed.host,
                "DB_PORT": str(parsed.port),
                "DB_NAME": parsed.database,
                "DB_USER": parsed.username,
            }
        command = job_line(cli, config_file, "kpi_refresh", env)
        for name, value in env.items():
            assert f"{name}={shlex.quote(value)} " in command

        result = bare_run(command, tmp_path / "user", "MLKIT_NOW=2026-03-02T02:05:00")
        assert result.returncode == 0, result.stderr
        assert result.stdout == "" and result.stderr == ""  # cron mails any output
        log = (tmp_path / "home" / "logs" / "kpi_refresh.log").read_text().splitlines()
        assert log[0] == "2026-03-02T02:05:00Z kpi_refresh start: mlkit kpi refresh"
        assert log[-1].startswith("2026-03-02T02:05:00Z kpi_refresh end: ok (exit 0) after ")
        said = "plain view on sqlite" if dialect == "sqlite" else "refreshed kpi_hourly"
        assert any(
            line.startswith("2026-03-02T02:05:00Z kpi_refresh | ") and said in line
            for line in log[1:-1]
        )
        # Nothing fell back to the embedded default database.
        assert not (tmp_path / "home" / "mlkit.db").exists()
    finally:
        drop_database(url)


def test_a_run_started_while_the_previous_one_holds_the_lock_logs_a_skip_and_exits_0(cli, tmp_path):
    locks = tmp_path / "home" / "logs" / "locks"
    locks.mkdir(parents=True)
    with open(locks / "etl.lock", "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = cli("cron", "run", "etl", env={"MLKIT_NOW": "2026-03-02T02:00:00"})
    assert result.exit_code == 0
    assert result.stdout == "" and result.stderr == ""
    log = (tmp_path / "home" / "logs" / "etl.log").read_text()
    assert log == "2026-03-02T02:00:00Z etl skipped: the previous run is still going\n"


def test_a_failing_job_sends_one_line_to_stderr_and_logs_timestamped_lines(cli, tmp_path):
    url = f"sqlite:///{tmp_path}/never-initialised.db"
    result = cli(
        "--database", url, "cron", "run", "kpi_refresh", env={"MLKIT_NOW": "2026-03-02T02:05:00"}
    )
    assert result.exit_code == 1 and result.stdout == ""
    log_path = tmp_path / "home" / "logs" / "kpi_refresh.log"
    assert result.stderr.splitlines() == [
        "mlkit cron: kpi_refresh failed with exit 1 at 2026-03-02T02:05:00Z: error: the "
        f"kpi_hourly view is missing; log: {log_path}"
    ]
    log = log_path.read_text().splitlines()
    assert all(re.match(rf"{STAMP} kpi_refresh (start|\||end)[: ]", line) for line in log)
    assert log[0].endswith("kpi_refresh start: mlkit kpi refresh")
    assert "kpi_refresh | error: the kpi_hourly view is missing" in log[1]
    assert "kpi_refresh | hint: create it with `mlkit db init`" in log[2]
    assert re.fullmatch(rf"{STAMP} kpi_refresh end: failed \(exit 1\) after \d+\.\ds", log[-1])
    # The logs hold the jobs' output, so only their owner reads them.
    assert log_path.stat().st_mode & 0o777 == 0o600
    assert log_path.parent.stat().st_mode & 0o777 == 0o700


def test_outcomes_exit_codes_and_crashes_of_the_child(tmp_path):
    def child(code: str) -> list[str]:  # the job's arguments follow as the script's argv
        return [sys.executable, "-c", f"import os, sys\nprint('a line', flush=True)\n{code}"]

    drifted = run_job("drift", command=child("sys.exit(3)"))
    assert (drifted.exit_code, drifted.outcome, drifted.summary) == (3, "drifted", None)
    alerting = run_job("alerts", command=child("sys.exit(3)"))
    assert (alerting.exit_code, alerting.outcome, alerting.summary) == (3, "alerting", None)
    # Exit 3 is documented for the checks only: anywhere else it is a failure.
    etl = run_job("etl", command=child("sys.exit(3)"))
    assert (etl.exit_code, etl.outcome) == (1, "failed")
    assert "etl failed with exit 3" in etl.summary and etl.summary.endswith(f"log: {etl.log}")
    crashed = run_job("retention", command=child("os.kill(os.getpid(), 9)"))
    assert (crashed.exit_code, crashed.outcome) == (1, "failed")
    assert "failed with exit -9" in crashed.summary and "killed by signal 9" in crashed.summary
    assert re.search(r"end: drifted \(exit 3\)", drifted.log.read_text())
    assert " drift | a line\n" in drifted.log.read_text()
    with pytest.raises(MlkitError, match="no cron job named 'nightly'"):
        run_job("nightly")


def test_passwords_never_reach_the_crontab_and_the_env_file_is_named(tmp_path):
    config_file = tmp_path / "mlkit.yaml"
    config_file.write_text(
        "database:\n  host: ${DB_HOST:-}\n  name: ${DB_NAME:-ticketing}\n"
        "  password: ${DB_PASSWORD:-}\nredis:\n  url: ${OPS_REDIS_URL:-}\n"
    )
    env = {
        "HOME": str(tmp_path),
        "MLKIT_HOME": str(tmp_path / "home"),
        "DB_HOST": "db.local",
        "DB_PASSWORD": "s3cret",
        "OPS_REDIS_URL": "redis://:r3dis@cache:6379/0",
        "MLKIT_NOW": "2026-03-02T02:00:00",
        "MLKIT_CRONTAB_CMD": "/bin/true",
    }
    config = load_config(config_file, env=env)
    document = build_block(config, symbols=[], env=env, executable=["/x/mlkit"])
    text = json.dumps(document)
    assert "s3cret" not in text and "r3dis" not in text
    assert "DB_HOST=db.local " in document["jobs"][0]["command"]
    assert document["carried_env"] == ["DB_HOST", "MLKIT_HOME"]
    assert sorted(document["env_file_needs"]) == ["DB_PASSWORD", "OPS_REDIS_URL"]
    advice = [w for w in document["warnings"] if "chmod 600" in w]
    assert (
        advice and "DB_PASSWORD" in advice[0] and str(tmp_path / "home" / "cron.env") in advice[0]
    )
    # Redis without its password under cron would be another server: said, not refused.
    assert any("Redis" in w and "under cron's bare environment" in w for w in document["warnings"])

    # Once the env file holds them (root-only), nothing is left to say about them.
    env_file = tmp_path / "home" / "cron.env"
    env_file.parent.mkdir()
    env_file.write_text(
        "# secrets for cron\nDB_PASSWORD=s3cret\nexport OPS_REDIS_URL='redis://:r3dis@cache:6379/0'\n"
    )
    env_file.chmod(0o600)
    document = build_block(config, symbols=[], env=env, executable=["/x/mlkit"])
    assert not any("chmod 600" in w or "Redis" in w for w in document["warnings"])
    assert "s3cret" not in json.dumps(document)

    assert is_secret("OPS_API_TOKEN", "x") and is_secret("X", "postgresql://u:p@h/d")
    assert not is_secret("DB_HOST", "db.local") and not is_secret("U", "postgresql://u@h/d")
    assert not is_secret("U", "mysql+pymysql://root:@127.0.0.1/db")  # an empty password


def test_lines_that_would_fall_back_to_the_default_sqlite_are_refused(cli, tmp_path):
    config_file = tmp_path / "mlkit.yaml"
    config_file.write_text("database:\n  url: ${OPS_DATABASE_URL:-}\n")
    env = {"OPS_DATABASE_URL": "postgresql+psycopg2://app:s3cret@127.0.0.1:1/mlkit"}
    result = cli("--config", str(config_file), "cron", "show", env=env)
    assert result.exit_code == 1 and result.stdout == ""
    assert "s3cret" not in result.stderr
    error, hint = result.stderr.strip().splitlines()[-2:]
    assert error.startswith("error: under cron's bare environment the jobs would use ")
    assert f"sqlite:///{(tmp_path / 'home' / 'mlkit.db').resolve()}" in error
    assert "postgresql+psycopg2://app:***@127.0.0.1:1/mlkit" in error
    assert hint.startswith("hint: put OPS_DATABASE_URL in ") and "chmod 600" in hint

    # The same URL in the env file that `cron run` loads: the lines are printed.
    env_file = tmp_path / "home" / "cron.env"
    env_file.parent.mkdir()
    env_file.write_text(f"OPS_DATABASE_URL={env['OPS_DATABASE_URL']}\n")
    env_file.chmod(0o600)
    env = {**os.environ, **env}
    document = build_block(
        load_config(config_file, env=env), symbols=[], env=env, executable=["/x/mlkit"]
    )
    assert "OPS_DATABASE_URL" not in document["block"] and "s3cret" not in document["block"]

    # A --database flag with a password cannot go on a line either.
    result = cli("--database", "postgresql+psycopg2://app:s3cret@127.0.0.1:1/x", "cron", "show")
    assert result.exit_code == 1 and "--database holds a password" in result.stderr
    assert "s3cret" not in result.stderr


def test_the_env_file_supplies_secrets_and_is_refused_when_others_may_read_it(cli, tmp_path):
    from mlkit.toolkit.db import init_schema, make_engine

    url = f"sqlite:///{tmp_path}/shop.db"
    init_schema(make_engine(url))
    config_file = tmp_path / "mlkit.yaml"
    config_file.write_text("database:\n  url: ${OPS_DATABASE_URL:-}\n")
    env_file = tmp_path / "home" / "cron.env"
    env_file.parent.mkdir()
    env_file.write_text(f"OPS_DATABASE_URL={url}\n")
    env_file.chmod(0o640)
    refused = cli("--config", str(config_file), "cron", "run", "kpi_refresh")
    assert refused.exit_code == 1 and len(refused.stderr.splitlines()) == 1
    assert f"env file {env_file} is open to group or others (mode 0640)" in refused.stderr
    assert "chmod 600" in refused.stderr
    shown = cli("--config", str(config_file), "cron", "show")
    assert shown.exit_code == 1 and "chmod 600" in shown.stderr

    env_file.chmod(0o600)
    # This shell does not see that database: the lines would disagree with it.
    shown = cli("--config", str(config_file), "cron", "show")
    assert shown.exit_code == 1
    assert f"hint: {env_file} sets OPS_DATABASE_URL for cron, and this shell" in shown.stderr
    shown = cli("--config", str(config_file), "cron", "show", env={"OPS_DATABASE_URL": url})
    assert shown.exit_code == 0, shown.stderr
    ran = cli("--config", str(config_file), "cron", "run", "kpi_refresh")
    assert ran.exit_code == 0 and ran.stderr == "", ran.stderr
    assert "plain view on sqlite" in (tmp_path / "home" / "logs" / "kpi_refresh.log").read_text()
    assert not (tmp_path / "home" / "mlkit.db").exists()
    # A variable already set wins over the file.
    other = f"sqlite:///{tmp_path}/other.db"
    ran = cli(
        "--config", str(config_file), "cron", "run", "kpi_refresh", env={"OPS_DATABASE_URL": other}
    )
    assert ran.exit_code == 1 and "kpi_hourly view is missing" in ran.stderr

    env_file.write_text("OPS_DATABASE_URL\n")
    bad = cli("--config", str(config_file), "cron", "run", "kpi_refresh")
    assert bad.exit_code == 1 and "line 1: not a KEY=value line" in bad.stderr


def test_tables_printed_to_a_pipe_keep_whole_rows_without_trailing_spaces(capsys):
    from rich.table import Table

    from mlkit.commands._common import stderr_console, stdout_console

    table = Table(title="wide", title_justify="left")
    for column in ("feature", "detail", "value"):
        table.add_column(column)
    for row in range(3):
        table.add_row(f"feature_{row}", "x" * 150, str(row))
    stdout_console().print(table)
    stderr_console().print("a note", justify="left")
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 1 + 3 + 3 + 1  # title, top rule, header, rule, 3 rows, bottom rule
    assert [line for line in lines if "x" * 150 in line] == [
        line for line in lines if line.lstrip("│┃ ").startswith("feature_")
    ]
    assert all(line == line.rstrip() for line in lines) and err == "a note\n"
