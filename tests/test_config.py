"""Configuration: interpolation, precedence, the shipped file, masking and broken files."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlkit.toolkit.config import DEFAULTS, interpolate, load_config
from mlkit.toolkit.drift import DriftSettings
from mlkit.toolkit.errors import MlkitError
from mlkit.toolkit.fraud.scoring import Thresholds
from mlkit.toolkit.signal.model import ModelSettings
from mlkit.toolkit.signal.train import TrainSettings

SHIPPED = Path(__file__).resolve().parents[1] / "config.yaml"


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${A}", {"A": "x"}, "x"),
        ("${A}", {}, ""),
        ("${A:-dflt}", {}, "dflt"),
        ("${A:-dflt}", {"A": ""}, "dflt"),
        ("${A:-dflt}", {"A": "set"}, "set"),
        ("pre-${A:-${B:-deep}}-post", {}, "pre-deep-post"),
        ("pre-${A:-${B:-deep}}-post", {"B": "b"}, "pre-b-post"),
        ("${A}:${B:-2}", {"A": "h"}, "h:2"),
        ("no vars", {}, "no vars"),
    ],
)
def test_interpolation(text, env, expected):
    assert interpolate(text, env) == expected


def test_unclosed_variable_is_an_error():
    with pytest.raises(ValueError, match="unclosed"):
        interpolate("${A:-x", {})


def test_shipped_file_equals_builtin_defaults_with_an_empty_environment():
    config = load_config(SHIPPED, env={})
    assert config.data == DEFAULTS
    assert config.database_url.startswith("sqlite:///")


def test_default_is_an_embedded_sqlite_file_under_home(tmp_path):
    config = load_config(env={"MLKIT_HOME": str(tmp_path)})
    assert config.source is None
    assert config.database_url == f"sqlite:///{tmp_path}/mlkit.db"
    assert config.artifacts_dir == tmp_path / "artifacts"


def test_platform_variables_build_the_postgresql_url():
    env = {
        "DB_HOST": "db.internal",
        "DB_PORT": "6543",
        "DB_NAME": "ticketing",
        "DB_USER": "admin",
        "DB_PASSWORD": "p@ss:word",
        "REDIS_HOST": "cache",
        "REDIS_PASSWORD": "rpw",
    }
    config = load_config(SHIPPED, env=env)
    from sqlalchemy.engine import make_url

    url = make_url(config.database_url)
    assert (url.host, url.port, url.database, url.username) == (
        "db.internal",
        6543,
        "ticketing",
        "admin",
    )
    assert url.password == "p@ss:word"
    assert config.redis_url == "redis://:rpw@cache:6379/0"


def test_precedence_flag_over_environment_over_file_over_defaults(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text(
        "database:\n  url: sqlite:///from-file.db\n"
        "paths:\n  artifacts: /file/artifacts\n  datasets: /file/datasets\n"
        "fraud:\n  threshold_block: 0.9\n"
    )
    env = {"MLKIT_ARTIFACTS_DIR": "/env/artifacts", "MLKIT_DATABASE_URL": "sqlite:///from-env.db"}
    config = load_config(file, env=env)
    assert config.database_url == "sqlite:///from-env.db"  # env over file
    assert str(config.artifacts_dir) == "/env/artifacts"
    assert str(config.datasets_dir) == "/file/datasets"  # file over defaults
    assert config.get("fraud.threshold_block") == 0.9
    assert config.get("fraud.threshold_review") == DEFAULTS["fraud"]["threshold_review"]
    flagged = load_config(file, database_url="sqlite:///from-flag.db", env=env)
    assert flagged.database_url == "sqlite:///from-flag.db"  # flag over env


def test_config_file_found_through_mlkit_config_then_working_directory(tmp_path, monkeypatch):
    named = tmp_path / "named.yaml"
    named.write_text("fraud:\n  threshold_block: 0.7\n")
    (tmp_path / "config.yaml").write_text("fraud:\n  threshold_block: 0.8\n")
    monkeypatch.chdir(tmp_path)
    assert load_config(env={}).get("fraud.threshold_block") == 0.8
    assert load_config(env={"MLKIT_CONFIG": str(named)}).get("fraud.threshold_block") == 0.7


def test_values_are_coerced_to_the_default_type(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text(
        "redis:\n  port: ${RP:-6380}\n  enabled: 'no'\ntraining:\n  retry_cooldown_sec: '900'\n"
    )
    config = load_config(file, env={})
    assert config.get("redis.port") == 6380
    assert config.get("redis.enabled") is False
    assert config.redis_url is None
    assert config.get("training.retry_cooldown_sec") == 900


def test_signal_keys_at_their_old_training_place_are_read_with_one_warning(tmp_path, caplog):
    file = tmp_path / "old.yaml"
    file.write_text(
        "training:\n  min_rfe_samples: 90\n  allow_fallback_execution: yes\n"
        "  retry_cooldown_sec: 60\nsignal:\n  depth: 4\n"
    )
    config = load_config(file, env={})
    assert config.get("signal.min_rfe_samples") == 90
    assert config.get("signal.allow_fallback_execution") is True
    assert config.get("signal.depth") == 4 and config.get("training.retry_cooldown_sec") == 60
    assert set(config.get("training")) == {"retry_cooldown_sec"}
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "training.min_rfe_samples, training.allow_fallback_execution read as" in warning
    assert str(file) in warning
    # The new place wins when the file sets both.
    file.write_text("training:\n  min_rfe_samples: 90\nsignal:\n  min_rfe_samples: 70\n")
    assert load_config(file, env={}).get("signal.min_rfe_samples") == 70


def test_config_show_puts_an_old_key_at_its_new_place_and_warns_on_stderr(tmp_path):
    file = tmp_path / "old.yaml"
    file.write_text("training:\n  max_baseline_features: 33\n")
    show = ["--config", str(file), "config", "show", "--json"]
    result = subprocess.run(
        [sys.executable, "-c", "from mlkit.commands.main import run; run()", *show],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["signal"]["max_baseline_features"] == 33
    assert "max_baseline_features" not in document["training"]
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"warning: {file}: training.max_baseline_features read as signal.")


@pytest.mark.parametrize("settings", [Thresholds, DriftSettings, ModelSettings, TrainSettings])
def test_settings_defaults_are_the_config_defaults(settings, tmp_path):
    shipped = settings.from_config(load_config(SHIPPED, env={}))
    assert settings.default() == shipped
    assert settings.from_config(load_config(env={"MLKIT_HOME": str(tmp_path)})) == shipped
    changed = tmp_path / "c.yaml"
    first = dataclasses.fields(settings)[0]
    section = DEFAULTS[settings.section]
    key = first.metadata.get("key", first.name)
    changed.write_text(f"{settings.section}:\n  {key}: {section[key] + 1}\n")
    value = getattr(settings.from_config(load_config(changed, env={})), first.name)
    assert value == section[key] + 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("database: {url: [\n", "invalid YAML at line"),
        ("databse:\n  url: sqlite:///x.db\n", "unknown key 'databse'"),
        ("database:\n  prot: 1\n", "unknown key 'database.prot'"),
        ("redis:\n  port: lots\n", "'redis.port' expects int"),
        ("database:\n  url: 'not a url'\n", "invalid database URL"),
        ("database:\n  url: oracle://scott@db/orcl\n", "unsupported database dialect 'oracle'"),
        (
            "alerts:\n  rules:\n    - name: x\n      condition: y > 1\n      colour: red\n",
            "unknown key 'alerts.rules[0].colour'",
        ),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_broken_file_names_the_file_and_the_problem(tmp_path, content, message):
    file = tmp_path / "broken.yaml"
    file.write_text(content)
    with pytest.raises(MlkitError) as caught:
        load_config(file, env={})
    assert str(file) in caught.value.message
    assert message in caught.value.message


def test_broken_file_on_the_command_line_is_one_error_line(cli, tmp_path):
    file = tmp_path / "broken.yaml"
    file.write_text("database:\n  url: [unterminated\n")
    result = cli("--config", str(file), "config", "show")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"error: {file}: invalid YAML")
    assert all(line.startswith(("error:", "hint:")) for line in lines)
    assert "Traceback" not in result.output


def test_config_show_masks_every_password(cli, monkeypatch):
    monkeypatch.setenv("DB_HOST", "db.internal")
    monkeypatch.setenv("DB_PASSWORD", "sup3r-s3cret")
    monkeypatch.setenv("REDIS_PASSWORD", "redis-s3cret")
    shipped = str(SHIPPED)
    for args in (
        ["--config", shipped, "config", "show", "--json"],
        ["--config", shipped, "config", "show"],
    ):
        result = cli(*args)
        assert result.exit_code == 0, result.output
        assert "s3cret" not in result.output
    document = json.loads(cli("--config", shipped, "config", "show", "--json").stdout)
    assert document["database"]["password"] == "***"
    assert document["redis"]["password"] == "***"
    assert document["effective"]["database_url"] == (
        "postgresql+psycopg2://postgres:***@db.internal:5432/ticketing"
    )


def test_url_passwords_are_masked_when_given_as_urls(cli):
    result = cli("--database", "postgresql+psycopg2://u:hunter2@h/db", "config", "show", "--json")
    assert "hunter2" not in result.output
    assert json.loads(result.stdout)["effective"]["database_url"] == (
        "postgresql+psycopg2://u:***@h/db"
    )
