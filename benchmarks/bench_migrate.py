"""`mlkit migrate` as a whole command beside its peers: sqlite3-to-mysql into MariaDB, pgloader
into PostgreSQL, on the same SQLite files in the same run.

Two files:

- hostile: 100,000 rows (90,000 keyed, 10,000 in a table without a key) whose text holds
  tabs, newlines, backslashes, `\\N`, quotes, 4-byte characters, control and unit-separator
  characters and 3,000-character values, blobs with zero bytes, doubles at the ends of their
  range, decimals, dates, JSON, and NULLs everywhere;
- payments: 1,000,000 rows x 10 mixed columns (integers, text, VARCHAR, DECIMAL, REAL,
  BOOLEAN, text timestamps, epoch-second timestamps, BLOB).

Every command is timed whole, as a process (start-up, reflection, copy, indexes and
verification). sqlite3-to-mysql (pip install sqlite3-to-mysql) gets the whole hostile file
and the first --peer-rows payments (it runs at a few thousand rows/s; its rate is compared);
it cannot read a TIMESTAMP column of epoch seconds, so its copy of payments declares that
column INTEGER. pgloader (Debian's package) gets both whole files. Each peer's target is
counted afterwards: pgloader exits 0 having loaded no row of a table whose COPY failed (it
makes REAL a 4-byte real, which refuses 1e300, and reads epoch seconds as a year), so a peer
that loaded fewer rows than the source holds is reported as failed, and pgloader is timed
again on a copy of the file whose declared types it can load. After the timings, the content
of mlkit's targets is compared row by row with the source, independently of mlkit's own
verification.

Targets: mlkit's whole command >= 30x sqlite3-to-mysql on both files; mlkit into PostgreSQL
no slower than pgloader.

    python benchmarks/bench_migrate.py [--rows 1000000] [--hostile-rows 100000] [--peer-rows 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

MYSQL = os.environ.get("MLKIT_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306")
POSTGRES = os.environ.get("MLKIT_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432")
PAYMENTS = """
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
HOSTILE = """
    id INTEGER PRIMARY KEY,
    body TEXT,
    tag VARCHAR(40),
    data BLOB,
    ratio REAL,
    amount NUMERIC(12, 2),
    flag BOOLEAN,
    day DATE,
    at DATETIME,
    meta JSON
"""
LOG = "msg TEXT, level INTEGER, at DATETIME"
TEXTS = [
    "tab\there",
    "line\nbreak",
    "cr\rreturn\r\n",
    "back\\slash",
    "\\N",
    "NULL",
    "",
    "  spaces kept  ",
    "quotes ' \" ` and ;-- DROP TABLE x;",
    "4-byte 😀🎉 Zoë ñ 漢字",
    "combining e\u0301 and zero\u200bwidth",
    "rtl \u202e abc",
    "\\",
    "ends with a backslash\\",
    "unit\x1fseparator",
    "ctrl \x01\x02\x1a\x7f",
    "%s %(x)s {0} $1",
    "ＦＵＬＬ width",
]
FLOATS = [-0.0, 1e300, -1e-300, 5e-324, 0.1, 1 / 3, 2.0**53 + 2, 123456.789, None]
JSONS = [
    '{"b": [1, 2.50, {"é": "😀"}], "a": null, "a ": "\\t"}',
    "[]",
    '{"k": "line\\nbreak", "n": -0.0, "big": 1e300}',
    '"just text"',
    None,
]


def build_payments(path: Path, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE payments ({PAYMENTS})")
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


def build_hostile(path: Path, rows: int, seed: int = 11) -> None:
    rng = random.Random(seed)
    keyed = rows * 9 // 10
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE hostile ({HOSTILE})")
    conn.execute(f"CREATE TABLE log ({LOG})")

    def text(i: int) -> str | None:
        if i % 17 == 0:
            return None
        if i % 101 == 0:
            return "x" * 2990 + " 😀 long"
        return TEXTS[i % len(TEXTS)] + f" #{i}"

    def generate():
        for i in range(1, keyed + 1):
            yield (
                i,
                text(i),
                TEXTS[(i * 7) % len(TEXTS)][:30] if i % 5 else None,
                rng.randbytes(i % 24) if i % 9 else (b"\x00\\N\t\n" if i % 2 else None),
                FLOATS[i % len(FLOATS)] if i % 4 else rng.uniform(-1e6, 1e6),
                round(rng.uniform(-99_999, 99_999), 2) if i % 6 else None,
                i % 2 if i % 11 else None,
                f"20{i % 30:02d}-{i % 12 + 1:02d}-{i % 28 + 1:02d}",
                f"2024-02-29 23:59:{i % 60:02d}" + (f".{i % 1_000_000:06d}" if i % 3 else ""),
                JSONS[i % len(JSONS)],
            )

    conn.executemany(f"INSERT INTO hostile VALUES ({', '.join('?' * 10)})", generate())
    conn.executemany(
        "INSERT INTO log VALUES (?, ?, ?)",
        ((text(i), i % 5, None if i % 7 else "2024-05-05 10:00:00") for i in range(rows - keyed)),
    )
    conn.commit()
    conn.close()


def first_rows(source: Path, path: Path, table: str, rows: int, columns: str) -> None:
    copy_as(source, path, {table: columns}, f"WHERE id <= {rows}")


def copy_as(source: Path, path: Path, tables: dict[str, str], where: str = "") -> None:
    """The source's tables (with `where`'s rows) in a new file, declared as `tables` says."""
    conn = sqlite3.connect(path)
    conn.execute("ATTACH DATABASE ? AS src", (str(source),))
    for table, columns in tables.items():
        conn.execute(f"CREATE TABLE {table} ({columns})")
        conn.execute(f"INSERT INTO {table} SELECT * FROM src.{table} {where}")
    conn.commit()
    conn.close()


# What pgloader is given when it cannot load a file as it is, and why.
PGLOADER_VARIANTS = {
    "hostile": (
        {"hostile": HOSTILE.replace("ratio REAL", "ratio DOUBLE PRECISION"), "log": LOG},
        "ratio declared DOUBLE PRECISION",
    ),
    "payments": (
        {"payments": PAYMENTS.replace("paid_at TIMESTAMP", "paid_at INTEGER")},
        "paid_at declared INTEGER",
    ),
}
TABLES = {"hostile": ["hostile", "log"], "payments": ["payments"]}


def source_rows(source: Path, tables: list[str]) -> int:
    conn = sqlite3.connect(source)
    try:
        return sum(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables)
    finally:
        conn.close()


def target_rows(url: str, tables: list[str]) -> int:
    """Rows the target holds in these tables (a table the peer did not create holds none)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            names = set(sa.inspect(conn).get_table_names())
            return sum(
                conn.exec_driver_sql(f"SELECT COUNT(*) FROM {t}").scalar() or 0
                for t in tables
                if t in names
            )
    finally:
        engine.dispose()


def admin(server: str, sql: str) -> None:
    engine = sa.create_engine(f"{server}/{'postgres' if 'postgres' in server else ''}")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(sql)
    engine.dispose()


def timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    return time.perf_counter() - started, done


def run_mlkit(source: Path, url: str) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "mlkit.commands.main", "migrate", "--source"]
    elapsed, done = timed([*cmd, f"sqlite:///{source}", "--target", url, "--json"])
    if done.returncode != 0:
        sys.exit(f"mlkit migrate failed:\n{done.stderr}")
    return elapsed, json.loads(done.stdout)


def run_peer(source: Path, database: str, tables: list[str]) -> tuple[float | None, str]:
    tool = shutil.which("sqlite3mysql")
    if tool is None:
        return None, "not installed (pip install sqlite3-to-mysql)"
    url = sa.engine.make_url(MYSQL)
    elapsed, done = timed(
        [
            *(tool, "-f", str(source), "-d", database, "-u", url.username or "root"),
            *("--mysql-password", url.password or "", "-h", url.host or "127.0.0.1"),
            *("-P", str(url.port or 3306), "-S", "-q"),
        ]
    )
    lines = (done.stdout + done.stderr).strip().splitlines()
    if done.returncode != 0:
        return None, lines[-1] if lines else f"exit status {done.returncode}"
    return elapsed, short_of(source, f"{MYSQL}/{database}", tables, lines, elapsed)


def short_of(source: Path, url: str, tables: list[str], lines: list[str], seconds: float) -> str:
    """'' when the peer's target holds every source row, else what it loaded."""
    want, have = source_rows(source, tables), target_rows(url, tables)
    if have == want:
        return ""
    error = next((line for line in lines if "ERROR" in line), "")
    return f"loaded {have:,} of {want:,} rows in {seconds:.1f}s, exit status 0; {error}".strip()


def run_pgloader(source: Path, database: str, tables: list[str]) -> tuple[float | None, str]:
    tool = shutil.which("pgloader")
    if tool is None:
        return None, "not installed (apt-get install pgloader)"
    url = sa.engine.make_url(POSTGRES)
    target = f"postgresql://{url.username}@{url.host}:{url.port or 5432}/{database}"
    elapsed, done = timed([tool, f"sqlite:///{source}", target])
    lines = (done.stdout + done.stderr).strip().splitlines()
    if done.returncode != 0:
        return None, lines[-1] if lines else f"exit status {done.returncode}"
    return elapsed, short_of(source, f"{POSTGRES}/{database}", tables, lines, elapsed)


# ---------------------------------------------------------------- content, independently


def _plain(value, kind: str):
    """One value as a comparable Python value, from either side."""
    if value is None:
        return None
    if kind == "blob":
        return bytes(value)
    if kind == "text":
        return value
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "decimal":
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if kind == "json":  # numbers as decimals: jsonb keeps 1e300 as the exact 10**300
        return json.loads(value, parse_float=Decimal, parse_int=Decimal)
    if kind == "day":
        return value if isinstance(value, date) else date.fromisoformat(value)
    if kind == "epoch":
        if isinstance(value, int):
            return datetime.fromtimestamp(value, UTC).replace(tzinfo=None)
        return value
    if isinstance(value, str):  # datetime
        return datetime.fromisoformat(value)
    return value


KINDS = {
    "payments": "int int text text decimal float int datetime epoch blob",
    "hostile": "int text text blob float decimal int day datetime json",
    "log": "text int datetime",
}


def same_content(source: Path, url: str, tables: list[str]) -> str:
    """'identical', or what differs: every row of every table compared as values."""
    # JSON as the text the target holds, as on the other side (psycopg2 would decode it).
    engine = sa.create_engine(url, json_deserializer=lambda text: text)
    src = sqlite3.connect(source)
    try:
        for table in tables:
            kinds = KINDS[table].split()

            # By key where there is one: repr would order -0.0 and 0.0 apart.
            order = repr if table == "log" else (lambda row: row[0])

            def plain(rows, kinds=kinds, order=order):
                return sorted(
                    (tuple(_plain(v, k) for v, k in zip(r, kinds, strict=True)) for r in rows),
                    key=order,
                )

            mine = plain(src.execute(f"SELECT * FROM {table}"))
            with engine.connect() as conn:
                theirs = plain(conn.exec_driver_sql(f"SELECT * FROM {table}"))
            if mine != theirs:
                missing = len(set(map(repr, mine)) - set(map(repr, theirs)))
                return f"DIFFERENT in {table} ({missing} source rows not found)"
    finally:
        engine.dispose()
        src.close()
    return "identical"


# ---------------------------------------------------------------- the floor


def load_alone(source: Path, url: str) -> float:
    """Seconds the target takes for the file's rows by its bulk path alone (LOAD DATA
    LOCAL INFILE, COPY), from text made ready beforehand, in the batches mlkit commits:
    the server's share of a migration, which no client can go below."""
    from sqlalchemy.schema import CreateTable

    from mlkit.toolkit.migrate import build_plan, open_source, open_target
    from mlkit.toolkit.migrate.bulk import TextLoad

    engine = open_source(str(source))
    target = open_target(url, create=False)
    plan = build_plan(engine, target)
    batches = []  # (table's bulk text maker, payload)
    with target.engine.begin() as conn:
        for tp in plan.tables:
            conn.execute(CreateTable(tp.table, include_foreign_key_constraints=[]))
            load = TextLoad(conn, tp, "sqlite")
            cursor = engine.raw_connection().driver_connection.cursor()
            cursor.execute(f"SELECT * FROM {tp.name}")
            while rows := cursor.fetchmany(tp.batch_rows):
                batches.append((load, load.payload(rows, convert=True)))
    engine.dispose()
    with tempfile.TemporaryDirectory() as folder:
        files = []
        for i, (load, data) in enumerate(batches):
            path = Path(folder) / f"{i}.tsv"
            path.write_bytes(data)
            files.append((load, path))
        raw = target.engine.raw_connection()
        cursor = raw.driver_connection.cursor()
        if target.dialect == "mysql":
            cursor.execute("SET SESSION foreign_key_checks = 0")
            cursor.execute("SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO'")
            cursor.execute("SET SESSION time_zone = '+00:00'")
        else:
            cursor.execute("SET synchronous_commit = off")
        raw.driver_connection.commit()
        started = time.perf_counter()
        for load, path in files:
            if target.dialect == "mysql":
                cursor.execute(load.statement(str(path)))
            else:
                with path.open("rb") as handle:
                    cursor.copy_expert(load.copy, handle)
            raw.driver_connection.commit()
        seconds = time.perf_counter() - started
        raw.close()
    target.engine.dispose()
    return seconds


def floor(source: Path, url: str, one_row: Path, url_one: str) -> tuple[float, float]:
    """(the whole command on a one-row file of the same tables: start-up, reflection, DDL,
    verification, every fixed cost; the target's bulk load of every row alone)."""
    fixed, _doc = run_mlkit(one_row, url_one)
    return fixed, load_alone(source, url)


def print_floors(server: str, base: str, databases: dict, files: dict, mine: dict, peers: dict):
    """The floor of each file (hostile, payments) into one server, beside mlkit's time."""
    for label, (path, one_row) in files.items():
        fixed, load = floor(
            path,
            f"{base}/{databases[f'load_{label}']}",
            one_row,
            f"{base}/{databases[f'one_{label}']}",
        )
        print_floor(f"{server} {label}", fixed, load, peers.get(label), mine[label])


def print_floor(label: str, fixed: float, load: float, peer: float | None, mine: float) -> None:
    best = fixed + load
    line = (
        f"floor {label}: the command's fixed cost (a one-row file) {fixed:.1f}s + the server's "
        f"bulk load of every row alone {load:.1f}s = {best:.1f}s (mlkit {mine:.1f}s)"
    )
    if peer is not None:
        line += f"; the peer's time / this floor = {peer / best:.1f}x at most"
    print(line)


# ---------------------------------------------------------------- the run


def describe(label: str, seconds: float, rows: int, doc: dict) -> None:
    copy = sum(t["seconds"] for t in doc["tables"])
    methods = sorted({t["verify"]["method"] for t in doc["tables"]})
    verified = all(t["verify"]["ok"] for t in doc["tables"])
    print(
        f"{label}: {rows:,} rows, whole command {seconds:.1f}s = {rows / seconds:,.0f} rows/s "
        f"(copy {copy:.1f}s; verified {'ok' if verified else 'MISMATCH'} by "
        f"{', '.join(methods)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--hostile-rows", type=int, default=100_000)
    parser.add_argument("--peer-rows", type=int, default=100_000, help="payments rows for the peer")
    args = parser.parse_args()
    tag = os.getpid()
    my_names = ("hostile", "payments", "peer_h", "peer_p")
    my_names += ("one_hostile", "one_payments", "load_hostile", "load_payments")
    my = {n: f"mlkit_bench_mig_{tag}_{n}" for n in my_names}
    pg_names = ("hostile", "payments", "pgl_hostile", "pgl_payments")
    pg_names += ("pgl_hostile_variant", "pgl_payments_variant")
    pg_names += ("one_hostile", "one_payments", "load_hostile", "load_payments")
    pg = {n: f"mlkit_bench_mig_{tag}_{n}" for n in pg_names}
    with tempfile.TemporaryDirectory() as tmp:
        hostile, payments = Path(tmp) / "hostile.db", Path(tmp) / "payments.db"
        peer_payments = Path(tmp) / "peer_payments.db"
        started = time.perf_counter()
        build_hostile(hostile, args.hostile_rows)
        build_payments(payments, args.rows)
        peer_rows = min(args.peer_rows, args.rows)
        epoch_as_int = PAYMENTS.replace("paid_at TIMESTAMP", "paid_at INTEGER")
        first_rows(payments, peer_payments, "payments", peer_rows, epoch_as_int)
        one_row = {
            "hostile": Path(tmp) / "one_hostile.db",
            "payments": Path(tmp) / "one_payments.db",
        }
        copy_as(hostile, one_row["hostile"], {"hostile": HOSTILE, "log": LOG}, "LIMIT 1")
        copy_as(payments, one_row["payments"], {"payments": PAYMENTS}, "LIMIT 1")
        print(
            f"sources: hostile {args.hostile_rows:,} rows ({hostile.stat().st_size / 1e6:.0f} MB), "
            f"payments {args.rows:,} rows ({payments.stat().st_size / 1e6:.0f} MB), "
            f"built in {time.perf_counter() - started:.1f}s"
        )
        for name in my.values():
            admin(MYSQL, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        for name in pg.values():
            admin(POSTGRES, f'CREATE DATABASE "{name}"')
        try:
            print("-- MariaDB")
            h_sec, h_doc = run_mlkit(hostile, f"{MYSQL}/{my['hostile']}")
            describe("mlkit migrate hostile", h_sec, args.hostile_rows, h_doc)
            p_sec, p_doc = run_mlkit(payments, f"{MYSQL}/{my['payments']}")
            describe("mlkit migrate payments", p_sec, args.rows, p_doc)
            peer_h, why_h = run_peer(hostile, my["peer_h"], TABLES["hostile"])
            peer_p, why_p = run_peer(peer_payments, my["peer_p"], TABLES["payments"])
            if peer_h is not None and not why_h:
                print(f"sqlite3-to-mysql hostile: {args.hostile_rows:,} rows in {peer_h:.1f}s")
                ratio = peer_h / h_sec
                verdict = "met" if ratio >= 30 else "MISSED"
                print(
                    f"mlkit / sqlite3-to-mysql, hostile {args.hostile_rows:,} rows, whole command: "
                    f"{ratio:.1f}x (target >= 30x: {verdict})"
                )
            else:
                print(f"sqlite3-to-mysql hostile: failed: {why_h}")
            if peer_p is not None and not why_p:
                rate = peer_rows / peer_p
                print(
                    f"sqlite3-to-mysql payments: first {peer_rows:,} rows (paid_at as INTEGER) in "
                    f"{peer_p:.1f}s = {rate:,.0f} rows/s, so {args.rows / rate:.0f}s for all"
                )
                ratio = (args.rows / p_sec) / rate
                verdict = "met" if ratio >= 30 else "MISSED"
                print(
                    f"mlkit / sqlite3-to-mysql, payments {args.rows:,} rows, whole command: "
                    f"{ratio:.1f}x by rate (target >= 30x: {verdict})"
                )
            else:
                print(f"sqlite3-to-mysql payments: failed: {why_p}")
            peer_all = {
                "hostile": peer_h if peer_h is not None and not why_h else None,
                "payments": args.rows * peer_p / peer_rows if peer_p and not why_p else None,
            }
            files = {
                "hostile": (hostile, one_row["hostile"]),
                "payments": (payments, one_row["payments"]),
            }
            print_floors(
                "MariaDB", MYSQL, my, files, {"hostile": h_sec, "payments": p_sec}, peer_all
            )
            print("-- PostgreSQL")
            ph_sec, ph_doc = run_mlkit(hostile, f"{POSTGRES}/{pg['hostile']}")
            describe("mlkit migrate hostile", ph_sec, args.hostile_rows, ph_doc)
            pp_sec, pp_doc = run_mlkit(payments, f"{POSTGRES}/{pg['payments']}")
            describe("mlkit migrate payments", pp_sec, args.rows, pp_doc)
            for label, path, mine, rows in (
                ("hostile", hostile, ph_sec, args.hostile_rows),
                ("payments", payments, pp_sec, args.rows),
            ):
                seconds, why = run_pgloader(path, pg[f"pgl_{label}"], TABLES[label])
                note = ""
                if seconds is not None and why:
                    print(f"pgloader {label}: FAILED: {why}")
                    columns, note = PGLOADER_VARIANTS[label]
                    variant = Path(tmp) / f"pgloader_{label}.db"
                    copy_as(path, variant, columns)
                    database = pg[f"pgl_{label}_variant"]
                    seconds, why = run_pgloader(variant, database, TABLES[label])
                    note = f" ({note})"
                if seconds is None or why:
                    print(f"pgloader {label}{note}: failed: {why}")
                    continue
                verdict = "met" if mine <= seconds else "MISSED"
                print(
                    f"pgloader {label}{note}: {rows:,} rows in {seconds:.1f}s; mlkit {mine:.1f}s = "
                    f"{seconds / mine:.2f}x pgloader's speed (target >= 1x: {verdict})"
                )
            mine = {"hostile": ph_sec, "payments": pp_sec}
            print_floors("PostgreSQL", POSTGRES, pg, files, mine, {})
            print("-- content of mlkit's targets, compared row by row with the source")
            for label, path, url, tables in (
                ("MariaDB hostile", hostile, f"{MYSQL}/{my['hostile']}", ["hostile", "log"]),
                ("MariaDB payments", payments, f"{MYSQL}/{my['payments']}", ["payments"]),
                ("PostgreSQL hostile", hostile, f"{POSTGRES}/{pg['hostile']}", ["hostile", "log"]),
                ("PostgreSQL payments", payments, f"{POSTGRES}/{pg['payments']}", ["payments"]),
            ):
                print(f"{label}: {same_content(path, url, tables)}")
        finally:
            for name in my.values():
                admin(MYSQL, f"DROP DATABASE IF EXISTS `{name}`")
            for name in pg.values():
                admin(POSTGRES, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
