"""Small pieces the benchmarks share: their options, a fresh home, running the CLI, timing one
call."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np


def options(doc: str, *, database_help: str | None = None, **defaults: int) -> argparse.Namespace:
    """`--name N` for each default (underscores become dashes; a default of False makes a
    flag), and `--database URL` when `database_help` says what it is for."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    for name, default in defaults.items():
        flag = f"--{name.replace('_', '-')}"
        if default is False:
            parser.add_argument(flag, action="store_true")
        else:
            parser.add_argument(flag, type=int, default=default)
    if database_help:
        parser.add_argument("--database", help=database_help)
    return parser.parse_args()


def run_mlkit(url: str, *args: str) -> str:
    """`mlkit --database URL ARGS...` in a fresh interpreter; its stdout, or exit with its
    stderr when it fails."""
    done = subprocess.run(
        [sys.executable, "-m", "mlkit.commands.main", "--database", url, *args],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"mlkit {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def latency_ms(call: Callable, warm: Iterable, timed: Iterable) -> tuple[float, float, int]:
    """p50 and p99 in milliseconds of `call` on each of `timed` after it ran on `warm`, and
    how many calls were timed."""
    for item in warm:
        call(item)
    latencies = []
    for item in timed:
        started = time.perf_counter()
        call(item)
        latencies.append((time.perf_counter() - started) * 1000)
    p50, p99 = np.percentile(latencies, [50, 99])
    return float(p50), float(p99), len(latencies)


def fresh_home(database: str | None = None):
    """A new mlkit home's config and engine: a new SQLite file there unless a URL is given."""
    from mlkit.toolkit.config import load_config
    from mlkit.toolkit.db import make_engine

    home = Path(tempfile.mkdtemp(prefix="mlkit-bench-"))
    url = database or f"sqlite:///{home}/bench.db"
    return load_config(database_url=url, env={"MLKIT_HOME": str(home)}), make_engine(url)
