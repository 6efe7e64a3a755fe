"""Whole-process wall time of the commands that serve one decision, beside `python -c pass`,
`mlkit --help` and the import floor every database command pays (in layers: what each
adds), measured in the same run. `predict fraud` is timed with the prod model and with each
kind of fraud model registered (`--model`).

Each line gives the median wall time and the least CPU time (user + system, which a loaded
machine inflates far less than wall time) over the runs. Target: each command under 0.5 s.
`--before DIR` also times another tree of the package (a `mlkit` folder laid out as
installed, e.g. `git archive` of an older commit), run for run in turn with this one, so
both meet the same load.

Run: python benchmarks/bench_startup.py [--runs 7] [--database URL] [--before DIR]
Without --database a new SQLite home is set up by `mlkit quickstart --orders 20000`; a given
database must be set up already (quickstart), with MLKIT_HOME pointing at its home.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

TARGET_S = 0.5
# The order of `mlkit predict fraud --help`'s example.
ORDER = (
    '{"buyer_wallet_id": 12, "event_id": 3, "price": 80, "payment_method": "paypal", '
    '"created_at": "2026-03-01T12:00:00"}'
)
COMMANDS = [
    ("mab recommend", ["mab", "recommend", "--event", "1", "--json"]),
    ("mab reward", ["mab", "reward", "--event", "1", "--arm", "baseline", "--reward", "1"]),
    ("recommend product", ["recommend", "product", "1", "--json"]),
    ("recommend user", ["recommend", "user", "1", "--json"]),
    ("recommend popular", ["recommend", "popular", "--json"]),
    ("predict fraud", ["predict", "fraud", ORDER]),
    ("status", ["status"]),
    ("status --json", ["status", "--json"]),
]
# What any command on the database pays before doing its own work, in layers, each line
# adding to the one before: the CLI framework parsing one integer option (whatever Typer
# converts options with: its own types, or pydantic from 0.29 on); SQLAlchemy with every
# table (schema.py); an engine (make_engine, which imports the driver and teaches it numpy's
# scalars once numpy is imported); the Redis client.
CLI = (
    "import typer\n"
    "app = typer.Typer()\n"
    "@app.command()\n"
    "def main(event: int = 0): pass\n"
    "app(['--event', '1'], standalone_mode=False)\n"
)
ENGINE = "from mlkit.toolkit.db import make_engine\nmake_engine('sqlite://')\n"
FLOORS = (
    ("floor: typer", CLI),
    ("  + sqlalchemy, schema", CLI + "import mlkit.toolkit.schema\n"),
    ("  + an engine", CLI + "import mlkit.toolkit.schema\n" + ENGINE),
    ("  + redis", CLI + "import mlkit.toolkit.schema, redis\n" + ENGINE),
)


def timed(command: list[str], env: dict) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run; a failure stops the benchmark."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    # In the home, so a ./config.yaml of the folder the benchmark starts in is not read.
    done = subprocess.run(
        command, env=env, cwd=env.get("MLKIT_HOME"), capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def line(label: str, runs: list[tuple[float, float]], *, target: bool) -> str:
    wall = statistics.median(w for w, _ in runs)
    cpu = min(c for _, c in runs)
    verdict = ("ok" if wall < TARGET_S else "SLOW") if target else ""
    return f"{label:<24} wall {wall:6.3f} s   cpu {cpu:6.3f} s   {verdict}".rstrip()


def setup(env: dict) -> None:
    mlkit = [sys.executable, "-m", "mlkit.commands.main"]
    print("setting up a SQLite home: mlkit quickstart --orders 20000 ...", flush=True)
    timed([*mlkit, "quickstart", "--orders", "20000", "--yes"], env)


def fraud_versions(env: dict) -> list[tuple[str, str]]:
    """(kind, ref) of each kind of fraud model registered (quickstart trains XGBoost and
    the logistic-regression baseline; either may serve), so both kinds are timed."""
    mlkit = [sys.executable, "-m", "mlkit.commands.main"]
    done = subprocess.run(
        [*mlkit, "models", "list", "--json"],
        env=env,
        cwd=env.get("MLKIT_HOME"),
        capture_output=True,
        text=True,
    )
    kinds: dict[str, str] = {}
    for version in json.loads(done.stdout) if done.returncode == 0 else []:
        kind = (version.get("params") or {}).get("model")
        if version.get("name") == "fraud" and kind:
            kinds.setdefault(kind, version["ref"])
    return sorted(kinds.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--database", help="a set-up database (default: a new SQLite home)")
    parser.add_argument("--before", metavar="DIR", help="a folder holding an older `mlkit`")
    args = parser.parse_args()
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # the warm-up run caches what changed since
    if args.database:
        env["MLKIT_DATABASE_URL"] = args.database
    else:
        home = tempfile.mkdtemp(prefix="mlkit-bench-startup-")
        env |= {"MLKIT_HOME": home, "MLKIT_DATABASE_URL": f"sqlite:///{home}/bench.db"}
        setup(env)
    trees = {"": env}
    if args.before:
        old = env.get("PYTHONPATH")
        trees["before: "] = env | {"PYTHONPATH": os.pathsep.join(filter(None, (args.before, old)))}
    python = [sys.executable]
    mlkit = [sys.executable, "-m", "mlkit.commands.main"]
    kinds = [
        (f"predict fraud ({kind})", ["predict", "fraud", ORDER, "--model", ref])
        for kind, ref in fraud_versions(env)
    ]
    rows = [
        ("python -c pass", [*python, "-c", "pass"], False, False),
        *((label, [*python, "-c", code], False, False) for label, code in FLOORS),
        ("mlkit --help", [*mlkit, "--help"], False, True),
        *((label, [*mlkit, *command], True, True) for label, command in [*COMMANDS, *kinds]),
    ]
    print(f"{len(rows)} commands x {args.runs} runs on {env['MLKIT_DATABASE_URL'].split(':')[0]}")
    print(f"(wall: median; cpu: least; target: each command under {TARGET_S} s wall)")
    for label, command, target, per_tree in rows:
        kinds = trees if per_tree else {"": env}
        for tree_env in kinds.values():
            timed(command, tree_env)  # warm the file cache (and Redis, the pools)
        measured: dict[str, list] = {prefix: [] for prefix in kinds}
        for _ in range(args.runs):
            for prefix, tree_env in kinds.items():  # in turn, so both meet the same load
                measured[prefix].append(timed(command, tree_env))
        for prefix, runs in measured.items():
            print(line(prefix + label, runs, target=target), flush=True)


if __name__ == "__main__":
    main()
