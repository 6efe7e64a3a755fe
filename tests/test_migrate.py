"""`mlkit migrate` on real MariaDB and PostgreSQL: every column type round-trips with equal
checksums, dry runs write nothing, killed runs resume to the same result, bad input gives
one clear error."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import drop_database, make_database

SERVERS = ("mysql", "postgresql")
LONG_TEXT = "x" * 99_990 + "😀 end"  # 100,000 characters, a 4-byte one among them
SEQUENCE_HIGH = 900  # AUTOINCREMENT ids handed out before the last rows were deleted


def build_source(path: Path) -> Path:
    """A SQLite file with every type the migration handles, stored the ways SQLite allows."""
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE customers (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            email VARCHAR(40) UNIQUE,
            bio TEXT,
            photo BLOB,
            active BOOLEAN,
            balance NUMERIC(12, 2),
            score REAL,
            big BIGINT,
            joined DATE,
            seen_at DATETIME,
            paid_at TIMESTAMP,
            clicked_at TIMESTAMP,
            meta JSON
        );
        CREATE UNIQUE INDEX ux_customers_bio ON customers (bio);
        CREATE TABLE "order" (
            id INTEGER PRIMARY KEY,
            customer_id INTEGER NOT NULL REFERENCES customers (id),
            "total amount" NUMERIC(10, 2),
            "group" TEXT
        );
        CREATE INDEX ix_order_customer ON "order" (customer_id);
        CREATE TABLE pairs (a TEXT, b INTEGER, v TEXT, PRIMARY KEY (a, b));
        CREATE TABLE events_log (msg TEXT, level INTEGER, at DATETIME);
        """
    )
    customers = []
    for i in range(1, 301):
        customers.append(
            (
                i,
                f"name {i} Zoë 😀" if i % 2 else f"Name {i}",
                f"user{i}@example.org" if i % 7 else None,
                LONG_TEXT if i == 5 else f"bio {i}",
                bytes([i % 256, 0, 255]) * (i % 4),
                i % 2,
                round(i * 1.25, 2),
                i / 7 if i % 11 else None,
                2**62 + i,
                f"2024-01-{i % 28 + 1:02d}",
                f"2024-02-03 04:05:06.{i:06d}",
                1_700_000_000 + i,  # epoch seconds
                1_700_000_000_000 + i,  # epoch milliseconds
                json.dumps({"i": i, "tags": ["a", "b"], "ok": True}),
            )
        )
    conn.executemany(f"INSERT INTO customers VALUES ({', '.join('?' * 14)})", customers)
    conn.execute("INSERT INTO customers (id, name) VALUES (?, 'gone')", (SEQUENCE_HIGH,))
    conn.execute("DELETE FROM customers WHERE id = ?", (SEQUENCE_HIGH,))
    conn.executemany(
        'INSERT INTO "order" VALUES (?, ?, ?, ?)',
        [(i, i % 300 + 1, round(i * 0.5, 2), "g" if i % 2 else None) for i in range(1, 501)],
    )
    # 'a' and 'A' are different keys in SQLite: they must stay so on MySQL.
    conn.executemany(
        "INSERT INTO pairs VALUES (?, ?, ?)",
        [(k, n, f"{k}{n}") for k in ("a", "A", "a ", "b") for n in range(3)],
    )
    conn.executemany(
        "INSERT INTO events_log VALUES (?, ?, ?)",
        [("dup", 1, "2024-05-05 10:00:00")] * 3 + [(f"m{i}", i, None) for i in range(40)],
    )
    conn.commit()
    conn.close()
    return path


# A table a target cannot take whole: 'lots' is no integer, 0.125 has too many places.
PRICES = (
    "prices",
    "id INTEGER PRIMARY KEY, qty INTEGER, amount NUMERIC(8, 2)",
    [(1, 5, 1.5), (2, "lots", 2.0), (3, 7, 3.25), (4, 8, 0.125), (5, 9, 4.0)],
)


def add_table(path: Path, name: str, columns: str, rows: list[tuple]) -> Path:
    """One table and its rows added to the SQLite file at `path`."""
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE {name} ({columns})")
    conn.executemany(f"INSERT INTO {name} VALUES ({', '.join('?' * len(rows[0]))})", rows)
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def source_db(tmp_path) -> Path:
    return build_source(tmp_path / "source.db")


@pytest.fixture(params=SERVERS)
def target_url(request, tmp_path):
    url = make_database(request.param, tmp_path)
    yield url
    drop_database(url)


def run_json(cli, *args: str) -> tuple[int, dict, str]:
    result = cli("migrate", *args, "--json")
    document = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    return result.exit_code, document, result.stderr


def fail_then_skip(cli, source: Path, url: str, *extra: str) -> tuple[str, dict, list[dict]]:
    """Migrate `source` with the default --on-error fail, which must exit 1, then with `extra`
    and --on-error skip, which must succeed: the failure's stderr, the second run's first
    table and the reject file's lines."""
    args = ("--source", f"sqlite:///{source}", "--target", url)
    failed = cli("migrate", *args)
    assert failed.exit_code == 1
    rejects = source.parent / "rejects.jsonl"
    code, doc, stderr = run_json(
        cli, *args, *extra, "--on-error", "skip", "--reject-file", str(rejects)
    )
    assert code == 0, stderr
    lines = [json.loads(line) for line in rejects.read_text().splitlines()]
    return failed.stderr, doc["tables"][0], lines


def test_every_type_round_trips_with_identical_checksums(cli, source_db, target_url):
    code, doc, stderr = run_json(cli, "--source", f"sqlite:///{source_db}", "--target", target_url)
    assert code == 0, stderr
    assert doc["ok"] and not doc["mismatched_tables"]
    tables = {t["table"]: t for t in doc["tables"]}
    assert set(tables) == {"customers", "order", "pairs", "events_log"}
    for table in tables.values():
        assert table["verify"]["ok"], table
        assert table["verify"]["source_checksum"] == table["verify"]["target_checksum"]
    engine = sa.create_engine(target_url)
    with engine.connect() as conn:
        bio, name, paid, clicked, active, balance, meta = conn.execute(
            sa.text(
                "SELECT bio, name, paid_at, clicked_at, active, balance, meta FROM customers "
                "WHERE id = 5"
            )
        ).one()
        assert bio == LONG_TEXT  # whole, 4-byte character included
        assert name == "name 5 Zoë 😀"
        assert str(paid) == "2023-11-14 22:13:25"
        assert str(clicked) == "2023-11-14 22:13:20.005000"
        assert bool(active) is True and float(balance) == 6.25
        assert (json.loads(meta) if isinstance(meta, str) else meta)["tags"] == ["a", "b"]
        # The reserved-word table with a quoted column, and the table without a key.
        assert conn.execute(sa.text(f"SELECT COUNT(*) FROM {_q(conn, 'order')}")).scalar() == 500
        assert (
            conn.execute(sa.text("SELECT COUNT(*) FROM events_log WHERE msg = 'dup'")).scalar() == 3
        )
        # Keys differing only in case or trailing space stay distinct.
        assert conn.execute(sa.text("SELECT COUNT(*) FROM pairs")).scalar() == 12
        # Ids continue after the highest ever handed out, not after MAX(id).
        conn.execute(sa.text("INSERT INTO customers (name) VALUES ('new')"))
        new_id = conn.execute(sa.text("SELECT MAX(id) FROM customers")).scalar()
        assert new_id == SEQUENCE_HIGH + 1
        # The unique index over a 100,000-character text keeps whole-value uniqueness.
        with pytest.raises(sa.exc.IntegrityError):
            conn.execute(
                sa.text("INSERT INTO customers (name, bio) VALUES ('x', :b)"), {"b": LONG_TEXT}
            )
        conn.rollback()
        inspector = sa.inspect(conn)
        fks = inspector.get_foreign_keys("order")
        assert [(fk["referred_table"], fk["constrained_columns"]) for fk in fks] == [
            ("customers", ["customer_id"])
        ]
    engine.dispose()


def _q(conn, name: str) -> str:
    return conn.dialect.identifier_preparer.quote_identifier(name)


def test_dry_run_writes_nothing_anywhere(cli, source_db, target_url):
    before = source_db.read_bytes()
    code, doc, stderr = run_json(
        cli, "--source", f"sqlite:///{source_db}", "--target", target_url, "--dry-run"
    )
    assert code == 0, stderr
    assert doc["dry_run"] is True
    customers = next(t for t in doc["tables"] if t["table"] == "customers")
    assert customers["rows"] == 300 and customers["batches"] == 1
    assert any("CREATE TABLE" in s for s in customers["ddl"])
    assert source_db.read_bytes() == before
    assert not Path(f"{source_db}-wal").exists()
    engine = sa.create_engine(target_url)
    assert sa.inspect(engine).get_table_names() == []
    engine.dispose()


def test_mysql_long_text_becomes_mediumtext_and_unique_index_uses_a_hash(cli, source_db, tmp_path):
    url = make_database("mysql", tmp_path)
    try:
        result = cli("migrate", "--source", f"sqlite:///{source_db}", "--target", url, "--dry-run")
        assert result.exit_code == 0, result.stderr
        assert "bio MEDIUMTEXT" in result.stdout
        assert "CREATE UNIQUE INDEX ux_customers_bio ON customers (bio_sha256)" in result.stdout
        assert "GENERATED ALWAYS AS (SHA2(`bio`, 256)) STORED" in result.stdout
        assert "`order`" in result.stdout and "`total amount`" in result.stdout
    finally:
        drop_database(url)


def test_non_empty_target_is_refused_without_resume_or_replace(cli, source_db, target_url):
    args = ("--source", f"sqlite:///{source_db}", "--target", target_url, "--tables", "pairs")
    assert cli("migrate", *args).exit_code == 0
    again = cli("migrate", *args)
    assert again.exit_code == 1
    assert "target tables are not empty: pairs (12 rows)" in again.stderr
    assert "--resume" in again.stderr
    replaced = cli("migrate", *args, "--replace", "--yes")
    assert replaced.exit_code == 0, replaced.stderr


def _progress(url: str, table: str) -> tuple[str, int] | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sa.text("SELECT status, rows_copied FROM migration_progress WHERE table_name = :t"),
                {"t": table},
            ).first()
            return (row[0], row[1]) if row else None
    except sa.exc.DBAPIError:
        return None
    finally:
        engine.dispose()


def _big_source(path: Path, rows: int) -> Path:
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE ticks (id INTEGER PRIMARY KEY, symbol TEXT, price REAL, ts DATETIME)"
    )
    conn.execute("CREATE TABLE tape (symbol TEXT, qty INTEGER)")  # no primary key
    conn.executemany(
        "INSERT INTO ticks VALUES (?, ?, ?, ?)",
        ((i, f"S{i % 50}", i * 0.01, f"2024-01-01 00:00:{i % 60:02d}") for i in range(1, rows + 1)),
    )
    conn.executemany("INSERT INTO tape VALUES (?, ?)", ((f"S{i % 7}", i % 3) for i in range(rows)))
    conn.commit()
    conn.close()
    return path


@pytest.mark.parametrize("killed_table", ["ticks", "tape"])
def test_killed_migration_resumes_without_duplicates_or_gaps(tmp_path, target_url, killed_table):
    rows = 40_000
    source = _big_source(tmp_path / "big.db", rows)
    args = [sys.executable, "-m", "mlkit.commands.main", "migrate", "--batch-size", "200"]
    args += ["--source", f"sqlite:///{source}", "--target", target_url, "--no-verify"]
    env = {**os.environ, "MLKIT_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            state = _progress(target_url, killed_table)
            if state and state[0] == "copying" and 0 < state[1] < rows // 2:
                break
            assert proc.poll() is None, "the migration ended before it could be killed"
            time.sleep(0.01)
        else:
            pytest.fail("the migration never reached the table")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    status, copied = _progress(target_url, killed_table)
    assert status == "copying" and 0 < copied < rows
    refused = subprocess.run(args, env=env, capture_output=True, text=True)
    assert refused.returncode == 1 and "--resume" in refused.stderr
    resumed = subprocess.run(
        [*args[:-1], "--resume", "--json"], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    # The killed run's folder of LOAD DATA files is swept by the next run.
    assert not list(Path(tempfile.gettempdir()).glob(f"mlkit-load-{proc.pid}-*"))
    doc = json.loads(resumed.stdout)
    tables = {t["table"]: t for t in doc["tables"]}
    assert tables[killed_table]["status"] == "resumed"
    for table in tables.values():
        assert table["verify"]["ok"], table
        assert table["verify"]["target_rows"] == rows
    engine = sa.create_engine(target_url)
    with engine.connect() as conn:
        distinct = conn.execute(sa.text("SELECT COUNT(DISTINCT id) FROM ticks")).scalar()
        assert distinct == rows
    engine.dispose()


@pytest.mark.parametrize("server", ["mysql", "postgresql", "sqlite"])
def test_values_the_target_cannot_hold_fail_or_go_to_the_reject_file(cli, tmp_path, server):
    path = add_table(tmp_path / "dirty.db", *PRICES)
    url = make_database(server, tmp_path)
    try:
        failure, table, lines = fail_then_skip(cli, path, url, "--replace", "--yes")
        assert "prices: row [2] cannot go into the target" in failure
        assert "'lots' is not an integer" in failure
        assert table["copied"] == 3 and table["rejected"] == 2
        assert table["verify"]["ok"] and table["verify"]["rejected"] == 2
        assert [line["key"] for line in lines] == [[2], [4]]
        assert "not an integer" in lines[0]["reason"]
        assert "more than 2 decimal places" in lines[1]["reason"]
    finally:
        drop_database(url)


# ---------------------------------------------------------------- bad input


def test_table_not_in_the_source_lists_the_tables(cli, source_db, tmp_path):
    result = cli(
        "migrate",
        "--source",
        f"sqlite:///{source_db}",
        "--target",
        f"sqlite:///{tmp_path}/t.db",
        "--tables",
        "nope",
    )
    assert result.exit_code == 1
    assert "'nope' not in the source; it has: customers, events_log, order, pairs" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "t.db").exists()


def test_unreachable_target_writes_nothing_and_hides_the_password(cli, source_db, tmp_path):
    before = source_db.read_bytes()
    result = cli(
        "migrate",
        "--source",
        f"sqlite:///{source_db}",
        "--target",
        "mysql+pymysql://root:s3cret-pw@127.0.0.1:1/shop",
    )
    assert result.exit_code == 1
    assert "cannot reach the database at 127.0.0.1:1" in result.stderr
    assert "s3cret-pw" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert source_db.read_bytes() == before


def test_source_that_is_not_a_database(cli, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("just some text, not a database\n")
    for source in (f"sqlite:///{notes}", str(notes)):
        result = cli("migrate", "--source", source, "--target", f"sqlite:///{tmp_path}/t.db")
        assert result.exit_code == 1
        assert "is not a SQLite database" in result.stderr
    missing = cli(
        "migrate", "--source", f"sqlite:///{tmp_path}/missing.db", "--target", "sqlite:///x.db"
    )
    assert missing.exit_code == 1 and "does not exist" in missing.stderr
    assert not (tmp_path / "missing.db").exists()


def test_read_only_target_is_one_clear_error(cli, source_db, tmp_path):
    url = make_database("postgresql", tmp_path)
    try:
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            name = sa.engine.make_url(url).database
            conn.execute(sa.text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))
        engine.dispose()
        result = cli("migrate", "--source", f"sqlite:///{source_db}", "--target", url)
        assert result.exit_code == 1
        assert "is read-only" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        drop_database(url)


def test_mysql_variables_make_the_default_target(cli, source_db, tmp_path, monkeypatch):
    url = make_database("mysql", tmp_path)
    try:
        parsed = sa.engine.make_url(url)
        monkeypatch.setenv("MYSQL_ENABLED", "true")
        monkeypatch.setenv("MYSQL_HOST", parsed.host)
        monkeypatch.setenv("MYSQL_PORT", str(parsed.port or 3306))
        monkeypatch.setenv("MYSQL_USER", parsed.username)
        monkeypatch.setenv("MYSQL_PASSWORD", "")
        monkeypatch.setenv("MYSQL_DB", parsed.database)
        monkeypatch.setenv("MYSQL_CHARSET", "utf8mb4")
        monkeypatch.setenv("MLKIT_CONFIG", str(Path(__file__).resolve().parents[1] / "config.yaml"))
        code, doc, stderr = run_json(cli, "--source", str(source_db), "--tables", "pairs")
        assert code == 0, stderr
        assert doc["target"].endswith(f"/{parsed.database}?charset=utf8mb4")
        monkeypatch.delenv("MYSQL_HOST")
        monkeypatch.delenv("MYSQL_DB")
        missing = cli("migrate", "--source", str(source_db))
        assert missing.exit_code == 1
        assert "MYSQL_HOST, MYSQL_DB are not set" in missing.stderr
    finally:
        drop_database(url)


@pytest.mark.slow
@pytest.mark.parametrize("server", SERVERS)
def test_mlkit_commands_work_on_a_migrated_mlkit_database(cli, tmp_path, server):
    """mlkit's own SQLite database, moved: status and the registry read the same."""
    home_db = tmp_path / "home" / "mlkit.db"
    seeded = cli("demo", "seed", "--orders", "1500", "--json")
    assert seeded.exit_code == 0, seeded.stderr
    from mlkit.toolkit.db import make_engine
    from mlkit.toolkit.registry import register_model

    engine = make_engine(f"sqlite:///{home_db}")
    register_model(
        engine,
        tmp_path / "home" / "artifacts",
        name="fraud",
        family="fraud",
        write_artifact=lambda path: path.write_text('{"trees": []}'),
        filename="model.json",
        metrics={"auc_pr": 0.42},
        features=["amount", "hour"],
    )
    engine.dispose()
    url = make_database(server, tmp_path)
    try:
        code, doc, stderr = run_json(cli, "--source", f"sqlite:///{home_db}", "--target", url)
        assert code == 0, stderr
        assert doc["ok"] and "migration_progress" in doc["tables_not_copied"]
        # The copy is a database of its own: its identity (and so its artifacts home and
        # its Redis state) is never the source's.
        assert "bandit_generations" in doc["tables_not_copied"]
        from mlkit.toolkit.identity import database_id

        source_engine, target_engine = make_engine(f"sqlite:///{home_db}"), make_engine(url)
        assert database_id(target_engine) != database_id(source_engine)
        source_engine.dispose()
        target_engine.dispose()
        for args in (("status", "--json"), ("models", "list", "--json")):
            on_sqlite = cli(*args)
            on_target = cli("--database", url, *args)
            assert on_target.exit_code == 0, on_target.stderr
            assert json.loads(on_target.stdout) == json.loads(on_sqlite.stdout)
        counts = cli("--database", url, "db", "status", "--json")
        assert counts.exit_code == 0
        assert json.loads(counts.stdout)["tables"]["orders"] == 1500
    finally:
        drop_database(url)


# ---------------------------------------------------------------- MySQL's LOAD DATA path

AWKWARD_TEXTS = [
    "tab\there",
    "line\nbreak",
    "cr\rreturn\r\n",
    "back\\slash",
    "\\N",  # LOAD DATA's own NULL marker, as text
    "NULL",
    "\\\\N",
    "nul\x00byte",
    "ctrl-z\x1a",
    "",
    "  spaces kept  ",
    "4-byte 😀 and Zoë",
    "\\",
    "ends with a backslash\\",
    "\\t is not a tab",
    "all\t\n\\\r\x00at once",
    None,
]
AWKWARD_BLOBS = [b"\x00", b"", b"\x00\xff\x00", None, b"\t\n\\N", bytes(range(256))]
AWKWARD = (
    "awkward",
    "id INTEGER PRIMARY KEY, body TEXT, tag VARCHAR(20), data BLOB, n INTEGER, "
    "amount NUMERIC(8, 2), at DATETIME, paid INTEGER, ratio REAL",
    [
        (
            i,
            text,
            "NULL" if i % 3 == 0 else None,
            AWKWARD_BLOBS[i % len(AWKWARD_BLOBS)],
            None if i % 4 == 0 else -i,
            [0.5, 197, None, -0.0, 12.25][i % 5],
            None if i % 5 == 0 else f"2024-03-{i % 28 + 1:02d} 10:11:12",
            1_700_000_000 + i,
            [0.1, None, -0.0, 1e300, 3][i % 5],
        )
        for i, text in enumerate(AWKWARD_TEXTS, start=1)
    ],
)


def test_mysql_load_data_keeps_awkward_text_and_bytes_exact(cli, tmp_path):
    path = add_table(tmp_path / "awkward.db", *AWKWARD)
    rows = AWKWARD[2]
    url = make_database("mysql", tmp_path)
    try:
        code, doc, stderr = run_json(cli, "--source", f"sqlite:///{path}", "--target", url)
        assert code == 0, stderr
        table = doc["tables"][0]
        assert table["writer"] == "LOAD DATA LOCAL INFILE"
        assert table["copied"] == len(rows) and table["verify"]["ok"], table
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            back = conn.execute(
                sa.text("SELECT id, body, tag, data, n, at FROM awkward ORDER BY id")
            ).all()
        engine.dispose()
        for (i, text, tag, data, n, _amount, at, _paid, _ratio), got in zip(
            rows, back, strict=True
        ):
            assert got.id == i
            assert got.body == text, i  # \N and NULL stay text; None stays NULL
            assert got.tag == tag
            assert got.data == data  # zero bytes and the empty blob included
            assert got.n == n
            assert (str(got.at) if got.at else None) == at
    finally:
        drop_database(url)


def test_mysql_load_data_refused_values_fail_or_go_to_the_reject_file(cli, tmp_path):
    """A value the converter lets through but the target refuses (a target column narrower
    than the data): LOAD DATA only warns, so the batch goes again by INSERT, which names
    the row."""
    rows = [(1, "ok"), (2, "fine"), (3, "far too long"), (4, "\\N"), (5, None)]
    path = add_table(tmp_path / "notes.db", "notes", "id INTEGER PRIMARY KEY, body TEXT", rows)
    url = make_database("mysql", tmp_path)
    try:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE notes (id BIGINT PRIMARY KEY, body VARCHAR(5))"))
        failure, table, lines = fail_then_skip(cli, path, url)
        assert "notes: row [3] cannot go into the target" in failure
        assert "Data too long" in failure
        assert table["writer"] == "LOAD DATA LOCAL INFILE"
        assert table["copied"] == 4 and table["rejected"] == 1
        assert table["verify"]["ok"] and table["verify"]["rejected"] == 1
        assert [line["key"] for line in lines] == [[3]]
        assert "Data too long" in lines[0]["reason"]
        with engine.connect() as conn:
            back = conn.execute(sa.text("SELECT id, body FROM notes ORDER BY id")).all()
        assert [tuple(r) for r in back] == [(1, "ok"), (2, "fine"), (4, "\\N"), (5, None)]
        engine.dispose()
    finally:
        drop_database(url)


def test_column_shortcuts_agree_with_the_converters():
    """The whole-column shortcuts give what converting value by value gives, or None (then
    the values go one by one, and a bad one is refused there)."""
    from datetime import datetime
    from decimal import Decimal

    from mlkit.toolkit.migrate.reflect import ColumnSpec
    from mlkit.toolkit.migrate.values import (
        NORMALISERS,
        RejectValue,
        column_shortcut,
        make_converter,
        normalise_column,
        normalised_shortcut,
        row_hasher,
        sum_row_hashes,
    )

    cases = [
        (
            ColumnSpec("a", "decimal", "NUMERIC(8, 2)", precision=8, scale=2),
            [[0.5, 197, -0.0, 12.25, 0, -5], [0.125], [1e6], [1e20], ["1.5"], [True]],
        ),
        (
            ColumnSpec("f", "float", "REAL"),
            [[0.1, -0.0, 1e300, 3, 2**60 + 1], [float("inf")], [float("nan")], ["x"]],
        ),
        (
            ColumnSpec("d", "datetime", "DATETIME"),
            [
                ["2024-02-29 23:59:59", "1000-01-01 00:00:00"],
                ["2024-01-01 10:00:00.123456"],
                ["2024-01-01 10:00:00", "2024-01-01 10:00:00.123456", "2024-01-02 00:00:00"],
                ["2024-01-01 10:00:00", "2024-02-30 10:00:00.123456"],
                ["2024-02-30 00:00:00"],
                ["0999-12-31 00:00:00"],
                ["2024-01-01T10:00:00"],
                ["2024-01-01 10:00:00+02:00"],
                ["2024-01-01 24:00:00"],
                ["2024-01-01 10:00:00.123"],
                ["2024-01-01 10:00:00", 5],
            ],
        ),
        (
            ColumnSpec("e", "datetime", "TIMESTAMP", epoch_unit="s"),
            [
                [0, 1_700_000_005, -86_401, 253_402_300_799],
                [-30_610_224_001],
                [253_402_300_800],
                [True],
                [1.5],
            ],
        ),
        (ColumnSpec("g", "date", "DATE"), [["2024-02-29", "1970-01-01"], ["2023-02-29"]]),
    ]
    for col, batches in cases:
        convert = make_converter(col, "sqlite", "mysql")
        texts_of, normal_of = column_shortcut(col, "mysql"), normalised_shortcut(col, "mysql")
        for values in batches:
            try:
                converted = [convert(v) for v in values]
            except RejectValue:
                assert texts_of(values) is None and normal_of(values) is None, values
                continue
            texts, normal = texts_of(values), normal_of(values)
            if texts is not None:
                parse = {"decimal": Decimal, "float": float}.get(col.kind)
                if parse is not None:
                    assert [parse(t) for t in texts] == [parse(str(v)) for v in converted]
                else:
                    got = [datetime.fromisoformat(t) for t in texts]
                    want = [datetime.fromisoformat(str(v)) for v in converted]
                    assert got == want, values
            if normal is not None:
                assert normal == [NORMALISERS[col.kind](v) for v in converted], values
    # Column-wise hashing sums to the row-by-row checksum, NULLs included.
    columns = [
        ColumnSpec("i", "int", "INTEGER"),
        ColumnSpec("t", "text", "TEXT"),
        ColumnSpec("b", "blob", "BLOB"),
        ColumnSpec("r", "float", "REAL"),
    ]
    rows = [(1, "a\x1fb", b"\x00", -0.0), (None, None, None, None), (2**62, "😀", b"", 0.1)]
    hasher = row_hasher(columns)
    by_row = sum(hasher(r) for r in rows) % 2**64
    texts = [
        normalise_column(c, s.kind) for c, s in zip(zip(*rows, strict=True), columns, strict=True)
    ]
    assert sum_row_hashes(texts) == by_row


# ---------------------------------------------------------------- unchanged output

# Rejected everywhere ('many'); -inf is refused by MySQL alone. The reject lines show bytes
# as hex and infinities as their repr.
ODD = (
    "odd",
    "id INTEGER PRIMARY KEY, qty INTEGER, data BLOB, ratio REAL, note TEXT",
    [
        (1, 1, b"\x00\xff", 1.5, "ok"),
        (2, "many", b"\x01", math.inf, "tab\there"),
        (3, 3, None, -math.inf, None),
    ],
)
# (source rows, rejected, target rows, checksum) per table, recorded from the copy before it
# was split up; the checksums agree across targets but where a target rejects other rows.
UNCHANGED_CHECKS = {
    "awkward": (17, 0, 17, "1565ca50c4440030"),
    "customers": (300, 0, 300, "0a1995cda96d0ee5"),
    "events_log": (43, 0, 43, "6153b47b73f9c66f"),
    "odd": (3, 1, 2, "0e5f8ebb527b8b1d"),
    "order": (500, 0, 500, "d82e27baa852d849"),
    "pairs": (12, 0, 12, "0a871931daf8e017"),
    "prices": (5, 2, 3, "339034938c03549e"),
}
UNCHANGED_CHECKS_ON = {
    "postgresql": {"awkward": (17, 2, 15, "042c921f9c52f9c3")},
    "mysql": {"odd": (3, 2, 1, "025235cecd315fc9")},
}
_REJECT_ODD_2 = {
    "table": "odd",
    "key": [2],
    "reason": "column 'qty': 'many' is not an integer",
    "row": {"id": 2, "qty": "many", "data": {"hex": "01"}, "ratio": "inf", "note": "tab\there"},
    "raw_hash": 5225777907417669855,
}
_REJECT_PRICES_2 = {
    "table": "prices",
    "key": [2],
    "reason": "column 'qty': 'lots' is not an integer",
    "row": {"id": 2, "qty": "lots", "amount": 2},
    "raw_hash": 2229993509019925150,
}
_REJECT_PRICES_4 = {
    "table": "prices",
    "key": [4],
    "reason": "column 'amount': 0.125 has more than 2 decimal places",
    "row": {"id": 4, "qty": 8, "amount": 0.125},
    "raw_hash": 7915185493241362736,
}
_REJECT_AWKWARD_8 = {
    "table": "awkward",
    "key": [8],
    "reason": "A string literal cannot contain NUL (0x00) characters.",
    "row": {
        "id": 8,
        "body": "nul\x00byte",
        "tag": None,
        "data": {"hex": "00ff00"},
        "n": None,
        "amount": 0,
        "at": "2024-03-09 10:11:12",
        "paid": 1700000008,
        "ratio": 1e300,
    },
    "raw_hash": 5976842864954747593,
}
_REJECT_AWKWARD_16 = {
    "table": "awkward",
    "key": [16],
    "reason": "A string literal cannot contain NUL (0x00) characters.",
    "row": {
        "id": 16,
        "body": "all\t\n\\\r\x00at once",
        "tag": None,
        "data": {"hex": "090a5c4e"},
        "n": None,
        "amount": 197,
        "at": "2024-03-17 10:11:12",
        "paid": 1700000016,
        "ratio": None,
    },
    "raw_hash": 4308080972473916924,
}
_REJECT_ODD_3 = {
    "table": "odd",
    "key": [3],
    "reason": "column 'ratio': -inf: MySQL cannot store infinity or NaN",
    "row": {"id": 3, "qty": 3, "data": None, "ratio": "-inf", "note": None},
    "raw_hash": 868448076024130388,
}
UNCHANGED_REJECTS = {
    "sqlite": [_REJECT_ODD_2, _REJECT_PRICES_2, _REJECT_PRICES_4],
    "postgresql": [
        _REJECT_AWKWARD_8,
        _REJECT_AWKWARD_16,
        _REJECT_ODD_2,
        _REJECT_PRICES_2,
        _REJECT_PRICES_4,
    ],
    "mysql": [_REJECT_ODD_2, _REJECT_ODD_3, _REJECT_PRICES_2, _REJECT_PRICES_4],
}


def _migrate_odd_tables(cli, tmp_path, server: str, *extra: str) -> tuple[dict, Path]:
    """Every type and awkward value migrated with rejects skipped: (per-table verify
    documents, the reject file)."""
    source = build_source(tmp_path / "source.db")
    for table in (PRICES, AWKWARD, ODD):
        add_table(source, *table)
    rejects = tmp_path / "rejects.jsonl"
    url = make_database(server, tmp_path)
    try:
        code, doc, stderr = run_json(
            cli,
            *("--source", f"sqlite:///{source}", "--target", url),
            *("--on-error", "skip", "--reject-file", str(rejects), *extra),
        )
    finally:
        drop_database(url)
    assert code == 0, stderr
    checks = {}
    for table in doc["tables"]:
        check = table["verify"]
        assert check["ok"] and check["source_checksum"] == check["target_checksum"], table
        checks[table["table"]] = check
    return checks, rejects


@pytest.mark.parametrize("server", ["sqlite", "postgresql", "mysql"])
def test_migration_checksums_and_reject_file_are_unchanged(cli, tmp_path, server):
    """Verified by reading the rows back: the verifier's counts and checksums per table and
    the reject file's bytes equal those recorded."""
    checks, rejects = _migrate_odd_tables(cli, tmp_path, server, "--read-back")
    assert {c["method"] for c in checks.values()} == {"read back"}
    counted = {
        name: (c["source_rows"], c["rejected"], c["target_rows"], c["source_checksum"])
        for name, c in checks.items()
    }
    assert counted == {**UNCHANGED_CHECKS, **UNCHANGED_CHECKS_ON.get(server, {})}
    lines = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    assert lines == UNCHANGED_REJECTS[server]
    expected = "".join(json.dumps(line) + "\n" for line in UNCHANGED_REJECTS[server])
    assert rejects.read_text(encoding="utf-8") == expected


# The checksums PostgreSQL and MariaDB compute themselves (MD5 of each row's canonical text,
# digest.py), recorded when that method came: they differ by target only in how a double is
# written (IEEE bits on PostgreSQL, MariaDB's text) and how JSON is (jsonb's own text), and
# where a target rejects other rows.
_SERVER_CHECKS_ALIKE = {
    "events_log": (43, 0, 43, "f118d5578aff6f74"),
    "order": (500, 0, 500, "2d22c69b759c0383"),
    "pairs": (12, 0, 12, "5b475b9e631948ed"),
    "prices": (5, 2, 3, "32a7e3e4b1328713"),
}
SERVER_CHECKS = {
    "postgresql": {
        **_SERVER_CHECKS_ALIKE,
        "awkward": (17, 2, 15, "bc8ed1a8e200a203"),
        "customers": (300, 0, 300, "1e85f49cc11d2530"),
        "odd": (3, 1, 2, "b4ff9e8a72d02cf3"),
    },
    "mysql": {
        **_SERVER_CHECKS_ALIKE,
        "awkward": (17, 0, 17, "d66c31bdd348789d"),
        "customers": (300, 0, 300, "d0f37b46ecb630d2"),
        "odd": (3, 2, 1, "71c5cfbaef862d29"),
    },
}


@pytest.mark.parametrize("server", SERVERS)
def test_server_checksums_are_unchanged(cli, tmp_path, server):
    """The default verification on PostgreSQL and MariaDB: the target's own checksums, with
    the same counts and reject file as reading back."""
    checks, rejects = _migrate_odd_tables(cli, tmp_path, server)
    assert {c["method"] for c in checks.values()} == {"server checksum"}
    counted = {
        name: (c["source_rows"], c["rejected"], c["target_rows"], c["source_checksum"])
        for name, c in checks.items()
    }
    assert counted == SERVER_CHECKS[server]
    lines = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    assert lines == UNCHANGED_REJECTS[server]


def test_reject_lines_keep_values_as_the_source_stored_them():
    """What JSON cannot hold as such (a PostgreSQL source's JSON and ARRAY values included)
    stays its repr in the reject file; bytes go as hex and times as ISO text."""
    from datetime import datetime, timedelta
    from decimal import Decimal

    from mlkit.toolkit.migrate.rejects import reject_entry

    row = {
        "doc": {"a": [1, 2]},
        "tags": [1, "b"],
        "pair": (1, 2),
        "amount": Decimal("1.50"),
        "wait": timedelta(seconds=90),
        "data": b"\x00\xff",
        "ratio": math.nan,
        "at": datetime(2024, 1, 2, 3, 4, 5, 6),
        "gone": None,
    }
    entry = reject_entry("t", list(row), list(row.values()), [7, b"k"], "why", 5)
    assert entry == {
        "table": "t",
        "key": [7, {"hex": "6b"}],
        "reason": "why",
        "row": {
            "doc": "{'a': [1, 2]}",
            "tags": "[1, 'b']",
            "pair": "(1, 2)",
            "amount": "Decimal('1.50')",
            "wait": "datetime.timedelta(seconds=90)",
            "data": {"hex": "00ff"},
            "ratio": "nan",
            "at": "2024-01-02T03:04:05.000006",
            "gone": None,
        },
        "raw_hash": 5,
    }


# ---------------------------------------------------------------- verification catches damage


def _verify_again(source: Path, url: str) -> dict[str, tuple[bool, str]]:
    """The migration's verification run again over what the target holds now."""
    from mlkit.toolkit.migrate import build_plan, open_source, open_target
    from mlkit.toolkit.migrate.verify import Verification

    source_text = f"sqlite:///{source}"
    engine = open_source(source_text)
    target = open_target(url, create=False)
    plan = build_plan(engine, target)
    checks = Verification(source_text, engine, target, plan.tables, read_back=False).finish(
        target.engine, {}
    )
    target.engine.dispose()
    return {c.table: (c.ok, c.method) for c in checks}


@pytest.mark.parametrize("server", ["sqlite", "postgresql", "mysql"])
def test_verification_fails_on_a_changed_missing_or_extra_row(cli, source_db, tmp_path, server):
    """One double moved by one ulp, one row deleted, one row added, one NULL set: each
    table so touched fails verification, by the target's own checksum where it has one."""
    url = make_database(server, tmp_path)
    try:
        code, _doc, stderr = run_json(cli, "--source", f"sqlite:///{source_db}", "--target", url)
        assert code == 0, stderr
        method = "read back" if server == "sqlite" else "server checksum"
        tables = ("customers", "order", "pairs", "events_log")
        assert _verify_again(source_db, url) == dict.fromkeys(tables, (True, method))
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE customers SET score = :s WHERE id = 7"),
                {"s": math.nextafter(1.0, 2.0)},  # stored 7 / 7 = 1.0
            )
            conn.execute(sa.text(f"DELETE FROM {_q(conn, 'order')} WHERE id = 17"))
            conn.execute(sa.text("INSERT INTO pairs VALUES ('c', 1, 'c1')"))
            conn.execute(
                sa.text("UPDATE events_log SET at = :at WHERE msg = 'm5'"),
                {"at": "2024-05-05 10:00:00.000001"},
            )
        engine.dispose()
        assert _verify_again(source_db, url) == dict.fromkeys(tables, (False, method))
    finally:
        drop_database(url)


@pytest.mark.parametrize("server", SERVERS)
def test_verification_fails_on_a_swapped_row_of_the_same_count(cli, source_db, tmp_path, server):
    """A row deleted and another one duplicated keeps the count: the checksum still moves;
    a false become NULL, a text changed by one accent or by a unit separator are caught too."""
    url = make_database(server, tmp_path)
    try:
        code, _doc, stderr = run_json(cli, "--source", f"sqlite:///{source_db}", "--target", url)
        assert code == 0, stderr
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM events_log WHERE msg = 'm3'"))
            conn.execute(sa.text("INSERT INTO events_log VALUES ('dup', 1, '2024-05-05 10:00:00')"))
            conn.execute(sa.text("UPDATE customers SET active = NULL WHERE id = 2"))
            order = _q(conn, "order")
            group = _q(conn, "group")
            conn.execute(sa.text(f"UPDATE {order} SET {group} = 'ǵ' WHERE id = 1"))
            conn.execute(
                sa.text("UPDATE pairs SET v = :v WHERE a = 'a' AND b = 1"), {"v": "a1\x1f"}
            )
        engine.dispose()
        checks = _verify_again(source_db, url)
        tables = ("customers", "order", "pairs", "events_log")
        assert checks == dict.fromkeys(tables, (False, "server checksum"))
    finally:
        drop_database(url)


def test_mariadb_doubles_print_as_the_server_prints_them():
    """The source side writes a double as MariaDB does: shortest digits, fixed or exponent
    at the server's thresholds; checked on the server over edge cases and random doubles."""
    import random
    import struct

    from mlkit.toolkit.migrate.digest import _mariadb_doubles, mariadb_double

    rng = random.Random(5)
    values = [0.0, -0.0, 1.0, -1.5, 5e-324, 1.7976931348623157e308, 2.2250738585072014e-308]
    for k in range(-20, 21):
        values += [10.0**k, 1.5 * 10.0**k, 1.2345678901234567 * 10.0**k, -(7.0 ** (k / 2))]
    values += [999999999999999.0, 1e15, 1234567890123456.8, 0.1 + 0.2]
    values += [rng.uniform(-1e6, 1e6) for _ in range(2000)]
    values += [struct.unpack("<d", rng.randbytes(8))[0] for _ in range(3000)]
    values = [v for v in values if math.isfinite(v)]
    url = make_database("mysql", tempfile.gettempdir())
    try:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE d (i INT PRIMARY KEY, x DOUBLE)"))
            conn.execute(
                sa.text("INSERT INTO d VALUES (:i, :x)"),
                [{"i": i, "x": x} for i, x in enumerate(values)],
            )
            printed = conn.execute(sa.text("SELECT CONCAT(x) FROM d ORDER BY i")).scalars().all()
        engine.dispose()
    finally:
        drop_database(url)
    assert [mariadb_double(v) for v in values] == printed
    assert _mariadb_doubles(values) == printed
    typical = [rng.uniform(-1e6, 1e6) for _ in range(100)] + [3.0, -0.0, 0.25]
    assert _mariadb_doubles(typical) == [mariadb_double(v) for v in typical]


def test_jsonb_text_is_what_postgresql_prints():
    """The source side writes JSON as jsonb prints it: keys by length then bytes, the last
    duplicate kept, numbers as numeric prints them, escapes as PostgreSQL writes them."""
    from mlkit.toolkit.migrate.digest import jsonb_text

    texts = [
        '{"b": 1, "aa": 2, "a": 3, "é": 4, "z": {"y": [], "x": {}}}',
        '{"k": 1, "k": 2}',
        "[1, 1.0, 1.50, 1e2, 1E-2, -0, -0.0, 1.5e1, 123456789012345678901234567890, 1e300]",
        '["tab\\t", "nl\\n", "quote\\"", "back\\\\slash", "\\u001f", "\\u007f", "😀 Zoë", "/"]',
        '"just text"',
        "null",
        "true",
        "  [ false ,null ]  ",
    ]
    url = make_database("postgresql", tempfile.gettempdir())
    try:
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            printed = [
                conn.execute(sa.text("SELECT CAST(:t AS jsonb)::text"), {"t": t}).scalar()
                for t in texts
            ]
        engine.dispose()
    finally:
        drop_database(url)
    assert [jsonb_text(t) for t in texts] == printed


@pytest.mark.parametrize("server", SERVERS)
def test_invalid_json_is_rejected_and_verification_counts_it(cli, tmp_path, server):
    """The source side's own JSON parse (jsonb's text on PostgreSQL) refuses what the
    converter refuses: the row goes to the reject file and the checksums still agree."""
    rows = [(1, '{"b": 1, "a": [1.50, 1e300]}'), (2, "{not json"), (3, None), (4, '"text"')]
    path = add_table(tmp_path / "docs.db", "docs", "id INTEGER PRIMARY KEY, doc JSON", rows)
    url = make_database(server, tmp_path)
    try:
        failure, table, lines = fail_then_skip(cli, path, url)
        assert "is not valid JSON" in failure
        assert table["copied"] == 3 and table["rejected"] == 1
        assert table["verify"]["ok"] and table["verify"]["method"] == "server checksum"
        assert [line["key"] for line in lines] == [[2]]
    finally:
        drop_database(url)


# ---------------------------------------------------------------- batches formatted by workers


def _wide_source(path: Path, rows: int) -> Path:
    """A table big enough for worker processes, with a value no target takes (row 12345's
    qty), text PostgreSQL refuses (row 20000's NUL) and awkward text everywhere else."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE wide (id INTEGER PRIMARY KEY, qty INTEGER, note TEXT, x REAL)")
    notes = ["tab\there", "line\nbreak", "back\\slash", "\\N", "Zoë 😀", "unit\x1fsep", None]

    def row(i: int) -> tuple:
        qty = "lots" if i == 12_345 else i % 97
        note = "nul\x00byte" if i == 20_000 else notes[i % len(notes)]
        return (i * 3, qty, note, None if i % 5 == 0 else i / 7)  # keys 3, 6, 9...

    conn.executemany("INSERT INTO wide VALUES (?, ?, ?, ?)", (row(i) for i in range(1, rows + 1)))
    conn.commit()
    conn.close()
    return path


@pytest.mark.parametrize("server", SERVERS)
def test_worker_formatted_batches_name_refused_rows_and_verify(cli, tmp_path, server, monkeypatch):
    """A big integer-keyed table goes by worker processes a key range each: a refused value
    still fails the run naming its row, or goes to the reject file with --on-error skip,
    and the checksum the copy summed as it wrote equals the one the target computes."""
    from mlkit.toolkit.migrate import producers

    formatted = []
    by_workers = producers.batches

    def counted(*args):
        for batch in by_workers(*args):
            formatted.append(batch.rows is None)  # rows read by a worker, not here
            yield batch

    monkeypatch.setattr(producers, "batches", counted)
    rows = 30_000
    source = _wide_source(tmp_path / "wide.db", rows)
    url = make_database(server, tmp_path)
    try:
        args = ("--source", f"sqlite:///{source}", "--target", url, "--batch-size", "1000")
        failed = cli("migrate", *args)
        assert failed.exit_code == 1
        assert "wide: row [37035] cannot go into the target" in failed.stderr
        rejects = tmp_path / "rejects.jsonl"
        formatted.clear()
        code, doc, stderr = run_json(
            cli, *args, "--replace", "--yes", "--on-error", "skip", "--reject-file", str(rejects)
        )
        assert code == 0, stderr
        # 30 batches of 1000 keys, all but the one with 'lots' read and formatted by workers.
        assert formatted == [True] * 12 + [False] + [True] * 17
        (table,) = doc["tables"]
        refused = [[37_035]] + ([[60_000]] if server == "postgresql" else [])
        lines = [json.loads(line) for line in rejects.read_text().splitlines()]
        assert [line["key"] for line in lines] == refused
        assert table["copied"] == rows - len(refused) and table["rejected"] == len(refused)
        check = table["verify"]
        assert check["ok"] and check["method"] == "server checksum"
        assert check["source_rows"] == rows and check["target_rows"] == rows - len(refused)
        assert check["source_checksum"] == check["target_checksum"]
        # The same checksums from a separate pass over the source, as before the copy summed.
        assert _verify_again_with_rejects(source, url, rejects) == {"wide": True}
    finally:
        drop_database(url)


def _verify_again_with_rejects(source: Path, url: str, rejects: Path) -> dict[str, bool]:
    from mlkit.toolkit.migrate import build_plan, open_source, open_target
    from mlkit.toolkit.migrate.rejects import RejectLog
    from mlkit.toolkit.migrate.verify import Verification

    source_text = f"sqlite:///{source}"
    engine = open_source(source_text)
    target = open_target(url, create=False)
    plan = build_plan(engine, target)
    log = RejectLog(rejects)
    checks = Verification(source_text, engine, target, plan.tables, read_back=False).finish(
        target.engine, {tp.name: log.hashes(tp.name) for tp in plan.tables}
    )
    target.engine.dispose()
    return {c.table: c.ok for c in checks}
