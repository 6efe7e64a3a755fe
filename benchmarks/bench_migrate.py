"""`mlkit migrate` from SQLite into MariaDB beside `sqlite3-to-mysql` and a plain executemany.

A 1,000,000-row SQLite table of mixed types (integers, text, VARCHAR, DECIMAL, REAL,
BOOLEAN, text timestamps, epoch-second timestamps, BLOB) goes into MariaDB three ways in
the same run:

- `mlkit migrate` (a subprocess, verification on, its default batches: LOAD DATA LOCAL
  INFILE of up to 50,000 rows a commit), over all rows;
- `sqlite3mysql` (pip install sqlite3-to-mysql), over the first SUBSET rows only, as it
  is too slow for the full table (its rate is rows/s either way);
- PyMySQL `executemany` (multi-row INSERTs, a commit per 1,000 rows) of the same rows
  into a table created by hand: the floor any Python loader works from.

Prints rows/s for each, mlkit's rate over the peer's (target >= 20x), mlkit's
verification result and its peak memory (ru_maxrss of the subprocess).

    python benchmarks/bench_migrate.py [--rows 1000000] [--subset 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

SERVER = os.environ.get("MLKIT_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306")
COLUMNS = """
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    email VARCHAR(64),
    amount NUMERIC(12, 2),
    score REAL,
    active BOOLEAN,
    created_at DATETIME,
    paid_at TIMESTAMP,
    payload BLOB
"""


def build_source(path: Path, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE payments ({COLUMNS})")
    base = 1_700_000_000

    def generate():
        for i in range(1, rows + 1):
            t = base + i * 30
            yield (
                i,
                rng.randrange(1, 50_000),
                f"customer {rng.randrange(1_000_000)} Zoë ✓",
                f"user{i}@example.org" if i % 10 else None,
                round(rng.uniform(1, 5000), 2),
                rng.random() * 100,
                i % 3 == 0,
                time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)),
                t + 5,  # epoch seconds, as the trading system stored them
                rng.randbytes(12),
            )

    conn.executemany(f"INSERT INTO payments VALUES ({', '.join('?' * 10)})", generate())
    conn.commit()
    conn.close()


def subset(source: Path, path: Path, rows: int, *, epoch_as_integer: bool = False) -> None:
    columns = (
        COLUMNS.replace("paid_at TIMESTAMP", "paid_at INTEGER") if epoch_as_integer else COLUMNS
    )
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE payments ({columns})")
    conn.execute("ATTACH DATABASE ? AS src", (str(source),))
    conn.execute(f"INSERT INTO payments SELECT * FROM src.payments WHERE id <= {rows}")
    conn.commit()
    conn.close()


def admin(sql: str) -> None:
    engine = sa.create_engine(f"{SERVER}/", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(sql)
    engine.dispose()


def run_mlkit(source: Path, database: str, batch_size: int | None) -> tuple[dict, float, float]:
    cmd = [
        sys.executable,
        "-m",
        "mlkit.commands.main",
        "migrate",
        "--source",
        f"sqlite:///{source}",
        "--target",
        f"{SERVER}/{database}",
        "--json",
    ]
    if batch_size:
        cmd += ["--batch-size", str(batch_size)]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"mlkit migrate failed:\n{done.stderr}")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return json.loads(done.stdout), elapsed, peak_mb


def run_peer(source: Path, database: str) -> tuple[float | None, str]:
    """(seconds, "") or (None, why it did not finish)."""
    tool = shutil.which("sqlite3mysql")
    if tool is None:
        return None, "not installed (pip install sqlite3-to-mysql)"
    host = sa.engine.make_url(SERVER)
    cmd = [
        tool,
        "-f",
        str(source),
        "-d",
        database,
        "-u",
        host.username or "root",
        "--mysql-password",
        host.password or "",
        "-h",
        host.host or "127.0.0.1",
        "-P",
        str(host.port or 3306),
        "-S",
        "-q",
    ]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    # It reports some failures with exit status 0: count what arrived instead.
    lines = (done.stdout + done.stderr).strip().splitlines()
    engine = sa.create_engine(f"{SERVER}/{database}")
    try:
        with engine.connect() as conn:
            arrived = conn.exec_driver_sql("SELECT COUNT(*) FROM payments").scalar()
    except sa.exc.DBAPIError:
        arrived = 0
    finally:
        engine.dispose()
    if done.returncode != 0 or not arrived:
        return None, lines[-1] if lines else f"exit status {done.returncode}"
    return elapsed, ""


def run_executemany(source: Path, database: str, batch: int = 1000) -> tuple[int, float]:
    import pymysql

    url = sa.engine.make_url(SERVER)
    conn = pymysql.connect(
        host=url.host,
        port=url.port or 3306,
        user=url.username,
        password=url.password or "",
        database=database,
        charset="utf8mb4",
    )
    cur = conn.cursor()
    cur.execute(
        "CREATE TABLE payments (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, name TEXT, "
        "email VARCHAR(64), amount DECIMAL(12,2), score DOUBLE, active BOOL, "
        "created_at DATETIME(6), paid_at BIGINT, payload BLOB) CHARSET utf8mb4"
    )
    src = sqlite3.connect(source)
    reader = src.execute("SELECT * FROM payments ORDER BY id")
    sql = "INSERT INTO payments VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    rows = 0
    started = time.perf_counter()
    while chunk := reader.fetchmany(batch):
        cur.executemany(sql, chunk)
        conn.commit()
        rows += len(chunk)
    elapsed = time.perf_counter() - started
    conn.close()
    src.close()
    return rows, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--subset", type=int, default=20_000, help="rows given to the peer")
    parser.add_argument("--batch-size", type=int, help="mlkit's rows a batch (its default)")
    args = parser.parse_args()
    tag = f"{os.getpid()}"
    databases = [f"mlkit_bench_mig_{tag}_{n}" for n in ("mlkit", "peer", "plain", "peer2")]
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source.db"
        small = Path(tmp) / "subset.db"
        small_int = Path(tmp) / "subset_int.db"
        started = time.perf_counter()
        build_source(source, args.rows)
        subset(source, small, args.subset)
        subset(source, small_int, args.subset, epoch_as_integer=True)
        print(
            f"source: {args.rows:,} rows x 10 mixed columns in SQLite "
            f"({source.stat().st_size / 1e6:.0f} MB), built in {time.perf_counter() - started:.1f}s"
        )
        for name in databases:
            admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        try:
            report, elapsed, peak_mb = run_mlkit(source, databases[0], args.batch_size)
            table = report["tables"][0]
            copy_rate = table["copied"] / table["seconds"]
            total_rate = table["copied"] / elapsed
            verify = table["verify"]
            print(
                f"mlkit migrate:        {table['copied']:,} rows, copy {table['seconds']:.1f}s = "
                f"{copy_rate:,.0f} rows/s; whole command incl. reflection, verification and "
                f"start-up {elapsed:.1f}s = {total_rate:,.0f} rows/s"
            )
            print(f"  {table['batches']:,} batches by {table['writer']}")
            print(
                f"  verified: {'identical' if verify['ok'] else 'MISMATCH'} "
                f"(rows {verify['source_rows']:,} / {verify['target_rows']:,}, checksum "
                f"{verify['source_checksum']} / {verify['target_checksum']}); "
                f"peak memory {peak_mb:,.0f} MB"
            )
            peer, why = run_peer(small, databases[1])
            if peer is None:
                print(f"sqlite3-to-mysql:     failed on the same rows: {why}")
                if "not installed" not in why:
                    # It cannot take a TIMESTAMP column of epoch seconds; time it without one.
                    peer, why = run_peer(small_int, databases[3])
                    print(
                        "  so its rate is measured on the same rows with paid_at declared "
                        "INTEGER (epoch seconds stay numbers, not timestamps)"
                    )
            if peer is None:
                print(f"sqlite3-to-mysql:     not measured: {why}")
            else:
                peer_rate = args.subset / peer
                print(
                    f"sqlite3-to-mysql:     {args.subset:,} rows (a subset: it is too slow for "
                    f"the full table) in {peer:.1f}s = {peer_rate:,.0f} rows/s"
                )
            plain_rows, plain = run_executemany(source, databases[2])
            print(
                f"plain executemany:    {plain_rows:,} rows in {plain:.1f}s = "
                f"{plain_rows / plain:,.0f} rows/s (no conversion, no verification)"
            )
            if peer is not None:
                ratio = copy_rate / peer_rate
                verdict = "met" if ratio >= 20 else "MISSED"
                print(
                    f"mlkit / sqlite3-to-mysql: {ratio:,.1f}x by copy rate, "
                    f"{total_rate / peer_rate:,.1f}x whole command (target >= 20x: {verdict})"
                )
            print(f"mlkit / plain executemany: {copy_rate / (plain_rows / plain):.2f}x")
        finally:
            for name in databases:
                admin(f"DROP DATABASE IF EXISTS `{name}`")


if __name__ == "__main__":
    main()
