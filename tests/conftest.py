"""Fixtures: a fresh database per test module on SQLite, PostgreSQL and MySQL, and a clean Redis.

A server that does not answer skips its tests locally and fails them when
MLKIT_REQUIRE_SERVICES=1 (CI).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

PG_SERVER = os.environ.get("MLKIT_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432")
MYSQL_SERVER = os.environ.get("MLKIT_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306")
REDIS_SERVER = os.environ.get("MLKIT_TEST_REDIS", "redis://127.0.0.1:6379")
# One Redis database per pytest-xdist worker (gw0 -> 15, gw1 -> 14, ...): tests flush theirs.
REDIS_TEST_DB = 15 - int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
DIALECTS = ("sqlite", "postgresql", "mysql")

_ISOLATED_PREFIXES = ("MLKIT_", "DB_", "REDIS_", "MYSQL_", "FRAUD_THRESHOLD_")


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path, monkeypatch):
    """Keep the developer's own config, environment and home out of every test."""
    for name in list(os.environ):
        if name.startswith(_ISOLATED_PREFIXES) and name != "MLKIT_REQUIRE_SERVICES":
            monkeypatch.delenv(name)
    monkeypatch.setenv("MLKIT_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


# A file-backed stand-in for `crontab -l` / `crontab -` ($MLKIT_CRONTAB_CMD runs it): the
# crontab lives in $FAKE_CRONTAB_FILE.
FAKE_CRONTAB = """import os, sys
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


def services_required() -> bool:
    return os.environ.get("MLKIT_REQUIRE_SERVICES") == "1"


def unavailable(reason: str) -> None:
    if services_required():
        pytest.fail(f"{reason} (MLKIT_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def _server_url(dialect: str) -> str:
    return PG_SERVER if dialect == "postgresql" else MYSQL_SERVER


def _admin_engine(dialect: str):
    import sqlalchemy as sa

    database = "postgres" if dialect == "postgresql" else ""
    return sa.create_engine(
        f"{_server_url(dialect)}/{database}",
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 5},
    )


def _check_server(dialect: str) -> None:
    import sqlalchemy as sa

    engine = _admin_engine(dialect)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        unavailable(f"{dialect} server at {_server_url(dialect)} is not answering: {exc}")
    finally:
        engine.dispose()


def _admin_statement(dialect: str, statement: str) -> None:
    """One CREATE/DROP DATABASE on the server, outside any transaction."""
    import sqlalchemy as sa

    engine = _admin_engine(dialect)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def make_database(dialect: str, tmp_dir) -> str:
    """A new empty database with a unique name; returns its URL."""
    if dialect == "sqlite":
        return f"sqlite:///{tmp_dir}/mlkit-{uuid.uuid4().hex[:8]}.db"
    _check_server(dialect)
    name = f"mlkit_test_{uuid.uuid4().hex[:12]}"
    _admin_statement(
        dialect,
        f'CREATE DATABASE "{name}"'
        if dialect == "postgresql"
        else f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4",
    )
    return f"{_server_url(dialect)}/{name}"


def drop_database(url: str) -> None:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    dialect = parsed.get_backend_name()
    if dialect == "sqlite":
        return
    _admin_statement(
        dialect,
        f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'
        if dialect == "postgresql"
        else f"DROP DATABASE IF EXISTS `{parsed.database}`",
    )


@pytest.fixture(scope="module", params=DIALECTS)
def database_url(request, tmp_path_factory) -> Iterator[str]:
    """The same test body on each dialect, with a database of its own per module."""
    url = make_database(request.param, tmp_path_factory.mktemp(request.param))
    yield url
    drop_database(url)


@pytest.fixture(scope="module")
def engine(database_url):
    """An engine on the module's fresh database with mlkit's schema created."""
    from mlkit.toolkit.db import init_schema, make_engine

    engine = make_engine(database_url)
    init_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database emptied before and after the test."""
    import redis

    url = f"{REDIS_SERVER}/{REDIS_TEST_DB}"
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable(f"Redis at {REDIS_SERVER} is not answering: {exc}")
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def cli():
    """Run `mlkit ...` in-process; returns the Result (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from mlkit.commands.main import app

    runner = CliRunner()

    def invoke(*args: str, env: dict | None = None):
        return runner.invoke(app, list(args), env=env)

    return invoke


def pytest_collection_modifyitems(config, items):
    """Slow tests first: under pytest-xdist each long one starts on a free worker at once,
    instead of becoming the tail of the run."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def redis_of(url: str):
    import redis

    return redis.Redis.from_url(url)


def env_for(engine, redis_url: str) -> dict:
    """The environment that points a CLI run at `engine`'s database and `redis_url`."""
    return {
        "MLKIT_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "MLKIT_REDIS_URL": redis_url,
    }
