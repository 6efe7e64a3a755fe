"""Commands that do not train import only what they use: each runs as its own process on a
quickstarted home, and the modules it imported are checked (behaviour, not timing;
benchmarks/bench_startup.py measures the wall times)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Runs `mlkit ARGS...` and, at exit (after Typer's SystemExit), writes the imported module
# names to the file $MLKIT_MODULES_FILE names.
PROBE = """
import atexit, json, os, sys
atexit.register(
    lambda: open(os.environ["MLKIT_MODULES_FILE"], "w").write(json.dumps(sorted(sys.modules)))
)
from mlkit.commands.main import run
sys.argv = ["mlkit", *sys.argv[1:]]
run()
"""

# What no command here needs: frames, the training libraries, the TUI, Spark.
NEVER = ("pandas", "pyarrow", "sklearn", "xgboost", "catboost", "textual", "pyspark")
ORDER = {
    "buyer_wallet_id": 12,
    "event_id": 3,
    "price": 80,
    "payment_method": "paypal",
    "created_at": "2026-03-01T12:00:00",
}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A SQLite home after `mlkit quickstart`: every family trained, the bandit learnt."""
    root = tmp_path_factory.mktemp("startup")
    env = {**os.environ, "MLKIT_HOME": str(root), "MLKIT_DATABASE_URL": f"sqlite:///{root}/q.db"}
    env.pop("MLKIT_REDIS_URL", None)
    done = _mlkit(env, "quickstart", "--orders", "20000", "--yes")
    assert done.returncode == 0, done.stderr
    return env


def _mlkit(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlkit.commands.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def imported(env: dict, tmp_path, *args: str) -> set[str]:
    """The top-level packages `mlkit ARGS...` imported; the command must succeed."""
    modules = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env={**env, "MLKIT_MODULES_FILE": str(modules)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return {name.split(".")[0] for name in json.loads(modules.read_text())}


def test_help_imports_neither_the_database_layer_nor_numpy(tmp_path):
    env = {**os.environ, "MLKIT_HOME": str(tmp_path)}
    found = imported(env, tmp_path, "--help")
    assert not found & {*NEVER, "numpy", "scipy", "sqlalchemy", "redis"}


def test_a_command_builds_only_its_own_module(tmp_path):
    """`mlkit mab ...` imports the mab commands' module and no other command's."""
    env = {**os.environ, "MLKIT_HOME": str(tmp_path)}
    modules = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "mab", "--help"],
        env={**env, "MLKIT_MODULES_FILE": str(modules)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    commands = {m for m in json.loads(modules.read_text()) if m.endswith("_cmd")}
    assert commands == {"mlkit.commands.mab_cmd"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "also_unused"),
    [
        (("mab", "recommend", "--event", "1", "--json"), {"scipy"}),
        # numpy only where a pick is drawn.
        (
            ("mab", "reward", "--event", "1", "--arm", "baseline", "--reward", "1"),
            {"scipy", "numpy"},
        ),
        (("mab", "stats", "--json"), {"scipy", "numpy"}),
        # The gate's verdicts are read as stored, and engines no longer import numpy.
        (("status",), {"scipy", "numpy"}),
        (("status", "--json"), {"scipy", "numpy"}),
        # The recommender's model is scipy.sparse matrices: scipy is what it uses.
        (("recommend", "product", "1", "--json"), set()),
        (("recommend", "user", "1", "--json"), set()),
        (("recommend", "popular", "--json"), set()),
        (("models", "list"), {"scipy", "numpy"}),
        (("config", "show"), {"scipy", "numpy"}),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, tuple) else None,
)
def test_serving_commands_import_only_what_they_use(home, tmp_path, args, also_unused):
    found = imported(home, tmp_path, *args)
    assert not found & {*NEVER, *also_unused}


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [("mab", "recommend", "--event", "1", "--json"), ("status", "--json")],
    ids=" ".join,
)
def test_without_redis_the_redis_client_is_not_imported(home, tmp_path, args):
    config = tmp_path / "no-redis.yaml"
    config.write_text("redis:\n  enabled: false\n")
    found = imported(home, tmp_path, "--config", str(config), *args)
    assert "redis" not in found


@pytest.mark.slow
@pytest.mark.parametrize("version", [1, 2])
def test_predict_fraud_imports_no_model_library(home, tmp_path, version):
    """Both fraud models score one order without their libraries' Python packages (XGBoost
    through libxgboost's C API, the logistic regression from its numbers with numpy) and
    without pandas, which only the batch paths use."""
    shown = _mlkit(home, "models", "show", f"fraud:{version}", "--json")
    assert shown.returncode == 0, shown.stderr
    kinds = {json.loads(shown.stdout)["params"]["model"]}
    args = ("predict", "fraud", json.dumps(ORDER), "--model", f"fraud:{version}")
    found = imported(home, tmp_path, *args)
    assert not found & {"xgboost", "sklearn", "scipy", "pandas", "textual", "catboost", "pyspark"}
    assert kinds <= {"xgboost", "logreg"}
