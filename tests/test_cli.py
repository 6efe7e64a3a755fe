"""The command line's conventions: fast help, versions, `error:` lines and exit codes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from mlkit.toolkit import __version__

HEAVY_MODULES = ("xgboost", "catboost", "sklearn", "pandas", "textual", "numpy")


def run_mlkit(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The installed console entry point, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-c", "from mlkit.commands.main import run; run()", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_help_imports_no_heavy_library():
    probe = (
        "import sys\n"
        "sys.argv = ['mlkit', '--help']\n"
        "from mlkit.commands.main import run\n"
        "try:\n    run()\nexcept SystemExit:\n    pass\n"
        f"loaded = [m for m in {HEAVY_MODULES!r} if m in sys.modules]\n"
        "print('LOADED', loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert "LOADED []" in result.stdout, result.stdout + result.stderr


# Commands without a --json document, and why.
NO_JSON = {
    "dashboard": "a full-screen terminal app",
    "serve": "a long-running HTTP service answering JSON per request",
    "db ddl": "its output is SQL, a document of its own",
    "cron run": "what the job prints goes to its log; stderr gets one summary line",
    "predict fraud": "its output is always one JSON document",
    "export training-data": "its output is the export itself (JSON on stdout) or files",
}


def leaf_commands():
    """(name, click command) of every command of the Typer app, groups walked."""
    import typer.main

    from mlkit.commands.main import app

    def walk(command, path):
        for name, sub in getattr(command, "commands", {}).items():
            if getattr(sub, "commands", None) is not None:
                yield from walk(sub, [*path, name])
            else:
                yield " ".join([*path, name]), sub

    return list(walk(typer.main.get_command(app), []))


def test_every_command_has_an_example_and_json_unless_it_prints_none():
    commands = dict(leaf_commands())
    assert len(commands) > 40 and set(NO_JSON) <= set(commands)
    for name, command in commands.items():
        example = (command.help or "").partition("Example")[2]
        assert f"mlkit {name}" in example, f"`mlkit {name}` help lacks an example"
        flags = {flag for param in command.params for flag in getattr(param, "opts", ())}
        assert ("--json" in flags) != (name in NO_JSON), f"`mlkit {name}` and --json"


def test_every_group_and_command_answers_help(cli):
    names = [name for name, _ in leaf_commands()]
    for name in {name.split()[0] for name in names} | {"db ddl", "quickstart", "status"}:
        result = cli(*name.split(), "--help")
        assert result.exit_code == 0, result.output
        assert "Usage: " in result.stdout


def toolkit_names(node) -> list[str]:
    """`module.name` of every name a function (or module) imports from mlkit.toolkit."""
    import ast

    return [
        f"{sub.module.removeprefix('mlkit.toolkit.')}.{alias.name}"
        for sub in ast.walk(node)
        if isinstance(sub, ast.ImportFrom) and (sub.module or "").startswith("mlkit.toolkit.")
        for alias in sub.names
    ]


def is_workflow(name: str) -> bool:
    """Not an error class, a formatter, an option parser or a constant: a toolkit workflow."""
    module, _, symbol = name.rpartition(".")
    helper = module in ("errors", "formats") or symbol == "masked"
    return not (helper or symbol.startswith("parse_") or symbol.isupper())


def test_every_command_calls_one_toolkit_workflow():
    """Commands parse, call one toolkit function and render; what a command's
    private helpers import counts as the command's own."""
    import ast

    wiring = {}
    for path in sorted((Path(__file__).resolve().parents[1] / "commands").glob("*_cmd.py")):
        functions = [n for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)]
        helpers = {f.name: f for f in functions if f.name.startswith("_")}
        for command in (f for f in functions if not f.name.startswith("_")):
            called = {
                c.func.id
                for c in ast.walk(command)
                if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
            }
            names = toolkit_names(command)
            for name in called & helpers.keys():
                names += toolkit_names(helpers[name])
            workflows = sorted({n for n in names if is_workflow(n)})
            if len(workflows) > 1:
                wiring[f"{path.stem}.{command.name}"] = workflows
    assert wiring == {}


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"mlkit {__version__}"


def test_usage_errors_exit_with_2(cli):
    assert cli("db", "status", "--no-such-flag").exit_code == 2
    assert cli("no-such-command").exit_code == 2


def assert_one_error(result, *fragments: str) -> None:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len([line for line in lines if line.startswith("error: ")]) == 1, result.stderr
    assert all(line.startswith(("error: ", "hint: ")) for line in lines), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0]


def test_unreachable_database_is_one_error_line():
    result = run_mlkit("--database", "postgresql+psycopg2://u:pw1234@127.0.0.1:1/x", "db", "status")
    assert_one_error(result, "cannot reach the database at 127.0.0.1:1")
    assert "pw1234" not in result.stderr


def test_wrong_password_is_one_error_line():
    import sqlalchemy as sa
    from conftest import MYSQL_SERVER, unavailable

    try:
        sa.create_engine(f"{MYSQL_SERVER}/").connect().close()
    except Exception as exc:
        unavailable(f"MySQL is not answering: {exc}")
    url = MYSQL_SERVER.replace("root@", "root:definitely-wrong@") + "/test"
    result = run_mlkit("--database", url, "db", "status")
    assert_one_error(result, "authentication failed for user 'root'")
    assert "definitely-wrong" not in result.stderr


def test_unknown_dialect_is_one_error_line():
    assert_one_error(
        run_mlkit("--database", "oracle://scott:tiger@db/orcl", "db", "status"),
        "unsupported database dialect 'oracle'",
    )


def test_malformed_yaml_is_one_error_line(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("redis:\n  port: [6379\n")
    assert_one_error(run_mlkit("--config", str(config), "db", "status"), str(config))


def test_missing_database_names_the_fix():
    result = run_mlkit(
        "--database", "postgresql+psycopg2://postgres@127.0.0.1/mlkit_no_such_db", "db", "status"
    )
    if "cannot reach" in result.stderr:
        pytest.skip("PostgreSQL is not answering")
    assert_one_error(result, "database 'mlkit_no_such_db' does not exist")
    assert "--create-database" in result.stderr


def test_verbose_shows_the_traceback():
    result = run_mlkit("--verbose", "--database", "oracle://x@y/z", "db", "status")
    assert result.returncode == 1
    assert "Traceback" in result.stderr


def test_db_init_and_status_on_the_default_sqlite_file(cli, tmp_path):
    result = cli("db", "init", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["dialect"] == "sqlite"
    assert Path(tmp_path / "home" / "mlkit.db").exists()
    status = json.loads(cli("db", "status", "--json").stdout)
    assert status["tables"]["orders"] == 0
    again = json.loads(cli("db", "init", "--json").stdout)
    assert again["tables_created"] == again["indexes_added"] == []
    # An index an older mlkit did not make is added, and named, by the next init.
    with sqlite3.connect(tmp_path / "home" / "mlkit.db") as conn:
        conn.execute("DROP INDEX ix_orders_ticket")
    upgraded = cli("db", "init")
    assert upgraded.exit_code == 0, upgraded.output
    assert upgraded.stdout.strip().endswith("(sqlite): added indexes ix_orders_ticket")
    assert cli("db", "init").stdout.strip().endswith("(sqlite): schema already up to date")


def test_ddl_rejects_an_unknown_dialect(cli):
    result = cli("db", "ddl", "--dialect", "oracle")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: unknown dialect 'oracle'")


def test_as_of_sets_the_clock_for_the_command_only(cli, monkeypatch):
    monkeypatch.setenv("MLKIT_NOW", "2030-01-01T00:00:00")
    # An offset is converted to UTC: 02:00+01:00 is 01:00 UTC on 2026-03-01.
    seed = ["demo", "seed", "--orders", "300", "--days", "2", "--families", "fraud", "--json"]
    result = cli("--as-of", "2026-03-01T02:00:00+01:00", *seed)
    assert result.exit_code == 0, result.output
    world = json.loads(result.stdout)
    assert (world["start"], world["end"]) == ("2026-02-27T00:00:00", "2026-03-01T00:00:00")
    assert os.environ["MLKIT_NOW"] == "2030-01-01T00:00:00"  # the flag wins, then gives back


def test_an_unreadable_as_of_is_one_error_line():
    for moment in ("yesterday", ""):
        result = run_mlkit("--as-of", moment, "db", "status")
        assert_one_error(result, f"cannot read --as-of {moment!r}")
        assert "2026-03-01T02:00:00" in result.stderr  # the hint shows the form
