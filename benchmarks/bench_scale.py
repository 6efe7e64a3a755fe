"""The fraud pipeline's heavy steps as orders grow, local engine beside Spark `local[2]`: wall
time and peak memory of the driver per step (etl, dataset, train, score).

For each size: a scratch PostgreSQL database seeded by `demo seed` (the demo's vectorised
generator, over 90 days per million orders so a day holds the same orders at every size),
then each step as the command a user runs, once per engine, in a fresh process: `etl run`
(a full build), `dataset build fraud`, `train fraud --dataset latest`, `score fraud`. The
peak memory is the high-water resident set of the mlkit process (the local engine's whole
work, or Spark's Python driver) and, for Spark, of its JVM (in local mode the driver and
the executors share it; its heap is capped by spark.driver.memory).

At the end, per step, the local engine's growth per million orders (the slope between the two
largest sizes; with one size, its peak over its orders, an upper bound) and the order count
at which it would outgrow this machine's memory (its failure point), beside Spark's driver
peak at each size.

Then Spark's projection to 500 million orders on a cluster: per step, the seconds per million
orders between its two largest sizes (the marginal cost on this machine's 2 cores) spread over
N executors of 4 cores, plus its fixed cost (the intercept), assuming the marginal work
parallelises over cores as Spark's tasks do; the database's own ingest of the written rows
(etl's fraud_features, score's fraud_predictions) does not grow with executors and is named.

Each measurement is appended to a record (JSON lines) as it is taken, so a long run's
figures survive it and the summary can be printed again: --from-record FILE [FILE ...].

Run: python benchmarks/bench_scale.py [--orders 1000000 5000000 20000000] [--driver-memory 2g]
         [--engines local spark (which, in this order)]
         [--database URL (one size: a seeded PostgreSQL database to reuse; its outputs are reset)]
         [--steps etl dataset train score (which; without etl a given database keeps its outputs)]
         [--home DIR (with --database: a home whose snapshots `train --dataset latest` reuses)]
         [--record FILE] [--from-record FILE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import yaml
from _scratch import scratch_postgres

STEPS = ("etl", "dataset", "train", "score")
COMMANDS = {
    "etl": ("etl", "run", "--json"),
    "dataset": ("dataset", "build", "fraud", "--json"),
    # --force: one engine's failed training must not hold the other's in its retry cooldown.
    "train": ("train", "fraud", "--dataset", "latest", "--alias", "candidate", "--force", "--json"),
    "score": ("score", "fraud", "--no-etl", "--model", "fraud", "--json"),
}


def _hwm_kb(pid: int) -> int:
    """The process's peak resident set (VmHWM) in kB; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    found, queue = [], [pid]
    while queue:
        parent = queue.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        found += [int(c) for c in children]
        queue += [int(c) for c in children]
    return found


def run_step(url: str, home: Path, config: Path, args: tuple[str, ...]) -> dict:
    """One command in a fresh process: its wall seconds, its JSON, and the peak resident
    sets of the process and of its descendants (Spark's JVM), polled while it runs."""
    command = [sys.executable, "-m", "mlkit.commands.main", "--config", str(config)]
    env = os.environ | {"MLKIT_HOME": str(home)}
    started = time.perf_counter()
    process = subprocess.Popen(
        [*command, "--database", url, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    peaks = {"driver": 0, "jvm": 0}

    def watch() -> None:
        while process.poll() is None:
            peaks["driver"] = max(peaks["driver"], _hwm_kb(process.pid))
            jvm = sum(_hwm_kb(child) for child in _descendants(process.pid))
            peaks["jvm"] = max(peaks["jvm"], jvm)
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, error = process.communicate()
    seconds = time.perf_counter() - started
    watcher.join()
    if process.returncode != 0:
        # The whole of it beside the home: a failed Spark task's traceback is pages up.
        log = home / f"{args[0]}-{config.stem}.stderr"
        log.write_text(error)
        failed = f"exit {process.returncode}: {why(error)} (stderr: {log})"
        return {"seconds": seconds, "failed": failed, **peaks}
    return {"seconds": seconds, "result": json.loads(out), **peaks}


def why(stderr: str) -> str:
    """mlkit's own `error:` line (and its hint) when it wrote one, else stderr's last line:
    Spark's JVM gateway logs its shutdown after mlkit's message."""
    lines = [line.strip() for line in stderr.strip().splitlines()]
    ours = [i for i, line in enumerate(lines) if line.startswith("error:")]
    if ours:
        return " ".join(lines[ours[-1] : ours[-1] + 2])
    return lines[-1] if lines else "(no output)"


def write_config(home: Path, engine: str, driver_memory: str) -> Path:
    settings = {
        "engine": {
            "name": engine,
            "spark": {
                "master": "local[2]",
                "conf": {"spark.driver.memory": driver_memory},
                "partitions": 8,
            },
        }
    }
    path = home / f"{engine}.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def seed(url: str, home: Path, orders: int) -> float:
    days = max(90, round(90 * orders / 1_000_000))
    started = time.perf_counter()
    done = subprocess.run(
        [
            *(sys.executable, "-m", "mlkit.commands.main", "--database", url, "demo", "seed"),
            *("--orders", str(orders), "--days", str(days), "--families", "fraud", "--json"),
        ],
        capture_output=True,
        text=True,
        env=os.environ | {"MLKIT_HOME": str(home)},
    )
    if done.returncode != 0:
        raise SystemExit(f"demo seed failed:\n{done.stderr}")
    return time.perf_counter() - started


def order_count(url: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM orders")).scalar_one()
    engine.dispose()
    return count


def reset_outputs(url: str) -> None:
    """Empty what a step wrote, so the other engine starts where this one did."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE fraud_features, etl_watermarks, fraud_predictions"))
    engine.dispose()


def line(orders: int, engine: str, step: str, measured: dict) -> str:
    gb = 1024 * 1024
    memory = f"driver peak {measured['driver'] / gb:.2f} GB"
    if engine == "spark":
        memory += f", JVM peak {measured['jvm'] / gb:.2f} GB"
    outcome = measured.get("failed") or "ok"
    return (
        f"{orders:>11,} orders  {engine:<5} {step:<8} {measured['seconds']:8.1f} s  "
        f"{memory}  {outcome}"
    )


def machine_memory_kb() -> int:
    for text in Path("/proc/meminfo").read_text().splitlines():
        if text.startswith("MemTotal:"):
            return int(text.split()[1])
    raise SystemExit("no MemTotal in /proc/meminfo")


def summary(peaks: dict) -> list[str]:
    """The local engine's failure point per step, extrapolated linearly from its two largest
    runs (or its largest alone), beside Spark's driver peaks at every size."""
    total = machine_memory_kb()
    lines = []
    for step in STEPS:
        local = {n: m for (engine, s, n), m in peaks.items() if engine == "local" and s == step}
        spark = {n: m for (engine, s, n), m in peaks.items() if engine == "spark" and s == step}
        if not local:
            continue
        sizes = sorted(local)[-2:]
        largest, smallest = sizes[-1], sizes[0]
        grown = local[largest]["driver"] - (local[smallest]["driver"] if len(sizes) > 1 else 0)
        per_million = grown / ((largest - (smallest if len(sizes) > 1 else 0)) / 1_000_000)
        left = total - local[largest]["driver"]
        fails_at = largest + left / per_million * 1_000_000 if per_million > 0 else float("inf")
        shown = ", ".join(
            f"{n:,}: {m['driver'] / 1024 / 1024:.2f} GB + JVM {m['jvm'] / 1024 / 1024:.2f} GB"
            for n, m in sorted(spark.items())
        )
        lines.append(
            f"{step:<8} local {per_million / 1024 / 1024:.2f} GB per million orders: outgrows "
            f"this machine's {total / 1024 / 1024:.0f} GB at ~{fails_at / 1e6:,.0f} million "
            f"orders; spark driver {shown or 'not measured'}"
        )
    return lines


def projection(peaks: dict, executors: tuple[int, ...] = (8, 32, 128), cores: int = 4) -> list:
    """Spark's seconds per step at 500 million orders on N executors of `cores` cores, from
    its two largest measured sizes on this machine's 2 cores (a straight line through them)."""
    lines = []
    for step in STEPS:
        spark = {n: m["seconds"] for (e, s, n), m in peaks.items() if e == "spark" and s == step}
        if len(spark) < 2:
            continue
        small, large = sorted(spark)[-2:]
        per_million = (spark[large] - spark[small]) / ((large - small) / 1_000_000)
        if per_million <= 0:  # the larger size ran faster: load, not a cost that shrinks
            lines.append(
                f"{step:<8} spark {spark[small]:,.0f} s at {small:,} orders, {spark[large]:,.0f}"
                f" s at {large:,}: no growth measured, no projection"
            )
            continue
        fixed = max(0.0, spark[small] - per_million * small / 1_000_000)
        shown = ", ".join(
            f"{n} executors {(fixed + per_million * 500 * 2 / (n * cores)) / 60:,.0f} min"
            for n in executors
        )
        lines.append(
            f"{step:<8} spark {per_million:,.1f} s per million orders on 2 cores + {fixed:,.0f} s "
            f"fixed; 500 million orders: {shown}"
        )
    return lines


def record_line(path: Path | None, document: dict) -> None:
    if path is not None:
        with path.open("a") as record:
            record.write(json.dumps(document) + "\n")


def read_records(paths: list[str]) -> dict:
    peaks = {}
    for path in paths:
        for text in Path(path).read_text().splitlines():
            row = json.loads(text)
            measured = {k: row[k] for k in ("seconds", "driver", "jvm")}
            print(line(row["orders"], row["engine"], row["step"], measured | row), flush=True)
            if "failed" not in row:
                peaks[row["engine"], row["step"], row["orders"]] = measured
    return peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--driver-memory", default="2g")
    parser.add_argument("--database")
    parser.add_argument(
        "--engines", nargs="+", choices=("local", "spark"), default=["local", "spark"]
    )
    parser.add_argument(
        "--home",
        type=Path,
        help="with --database: an MLKIT_HOME to reuse (its snapshots: train on one built before)",
    )
    parser.add_argument(
        "--steps",
        nargs="+",
        choices=STEPS,
        default=list(STEPS),
        help="which steps (a given "
        "database keeps the outputs of earlier ones unless etl runs: resume a long run)",
    )
    parser.add_argument("--record", type=Path, help="append each measurement here (JSON lines)")
    parser.add_argument("--from-record", nargs="+", help="print the summary of earlier records")
    args = parser.parse_args()
    if args.from_record:
        peaks = read_records(args.from_record)
        print("\n".join(summary(peaks) + projection(peaks)))
        return
    peaks = {}
    for orders in [None] if args.database else args.orders:
        with nullcontext(args.database) if args.database else scratch_postgres() as url:
            home = args.home or Path(tempfile.mkdtemp(prefix="mlkit-scale-"))
            if orders is None:
                orders = order_count(url)
                print(f"{orders:>11,} orders  in the given database", flush=True)
            else:
                seeded = seed(url, home, orders)
                print(f"{orders:>11,} orders  seeded by demo seed in {seeded:.1f} s", flush=True)
            for engine in args.engines:
                config = write_config(home, engine, args.driver_memory)
                if "etl" in args.steps:
                    reset_outputs(url)
                for step in [s for s in STEPS if s in args.steps]:
                    measured = run_step(url, home, config, COMMANDS[step])
                    print(line(orders, engine, step, measured), flush=True)
                    row = {k: v for k, v in measured.items() if k != "result"}
                    record_line(
                        args.record, {"orders": orders, "engine": engine, "step": step} | row
                    )
                    if "failed" in measured:
                        break
                    peaks[engine, step, orders] = measured
    print("\n".join(summary(peaks) + projection(peaks)))


if __name__ == "__main__":
    main()
