"""`mlkit score fraud` on PostgreSQL: predictions written per second, beside a plain COPY.

Seeds `demo seed --orders N` into a scratch PostgreSQL database, builds the features, trains
a model, then scores every order twice (the second run replaces the version's rows) and
prints predictions/s of the whole scoring call and of its write (delete + COPY + commit;
target >= 200,000/s) with each phase's seconds, then the whole `mlkit score fraud` command
as a fresh process (imports, features caught up, model, write), beside the reference:
psycopg2's `copy_expert` of the same rows, as CSV, into a table shaped like
fraud_predictions (its indexes too), and the write's ratio to it. On PostgreSQL the
features are read and the predictions written by binary COPY (toolkit/pgbinary.py).

Run: python benchmarks/bench_score.py [--orders 500000] [--seed 7]
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time

from _common import fresh_home, options
from _scratch import scratch_postgres

from mlkit.toolkit.demo.seed import seed_demo
from mlkit.toolkit.fraud import etl
from mlkit.toolkit.fraud.pipeline import train_fraud_model
from mlkit.toolkit.fraud.scoring import score_configured

COLUMNS = "order_id, fraud_score, decision, model_version, created_at"


# The indexes fraud_predictions had before (besides its primary key): the previous write's
# reference.
PREVIOUS_INDEXES = ("order_id", "created_at", "decision, created_at")


def plain_copy_seconds(engine, table: str, indexes: tuple[str, ...] | None) -> tuple[float, int]:
    """Seconds of one COPY FROM STDIN of the scored rows into a fresh table `table` of the
    same shape (its id sequence and primary key too; fraud_predictions' indexes, or these
    `indexes`), and how many rows."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        data = io.BytesIO()
        cursor.copy_expert(f"COPY (SELECT {COLUMNS} FROM fraud_predictions) TO STDOUT CSV", data)
        like = "INCLUDING ALL" if indexes is None else "INCLUDING DEFAULTS"
        cursor.execute(f"CREATE TABLE {table} (LIKE fraud_predictions {like})")
        cursor.execute(f"CREATE SEQUENCE {table}_id OWNED BY {table}.id")
        cursor.execute(f"ALTER TABLE {table} ALTER id SET DEFAULT nextval('{table}_id')")
        if indexes is not None:
            cursor.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (id)")
            for columns in indexes:
                cursor.execute(f"CREATE INDEX ON {table} ({columns})")
        raw.commit()
        data.seek(0)
        started = time.perf_counter()
        cursor.copy_expert(f"COPY {table} ({COLUMNS}) FROM STDIN CSV", data)
        raw.commit()
        seconds = time.perf_counter() - started
        cursor.execute(f"SELECT count(*) FROM {table}")
        return seconds, cursor.fetchone()[0]
    finally:
        raw.close()


def run_command(url: str, home, *args: str) -> str:
    """`mlkit --database URL ARGS...` as a user runs it, in this mlkit home; its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "mlkit.commands.main", "--database", url, *args],
        capture_output=True,
        text=True,
        env=os.environ | {"MLKIT_HOME": str(home)},
    )
    if done.returncode != 0:
        raise SystemExit(f"mlkit {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def main() -> None:
    args = options(__doc__, orders=500_000, seed=7)
    logging.basicConfig(level=logging.WARNING)
    with scratch_postgres() as url:
        config, engine = fresh_home(url)
        seed_demo(engine, orders=args.orders, seed=args.seed, families=("fraud",))
        etl.run_etl(engine, *etl.resolve_range(engine, None, None))
        train_fraud_model(engine, config, kind="xgboost", alias="prod")
        print(f"load average before: {os.getloadavg()[0]:.1f} (2 cores)")
        rates = []
        for run in ("first", "re-score"):
            result = score_configured(engine, config, "fraud@prod", catch_up=False)
            rate = result.rows / result.write_seconds
            rates.append(rate)
            verdict = "ok" if rate >= 200_000 else "SLOW"
            print(
                f"score fraud ({run}): {result.rows:,} predictions in {result.seconds:.2f} s = "
                f"{result.rows / result.seconds:,.0f}/s whole call "
                f"(model {result.predict_seconds:.2f} s); write (delete + COPY + commit) "
                f"{result.write_seconds:.2f} s = {rate:,.0f} predictions/s "
                f"(target >= 200,000) {verdict}; "
                + ", ".join(f"{k} {v:.2f} s" for k, v in result.write_phases.items())
            )
        started = time.perf_counter()
        said = run_command(url, config.home, "score", "fraud", "--json")
        whole = time.perf_counter() - started
        scored = json.loads(said)
        print(
            f"mlkit score fraud (the whole command, a fresh process): {scored['rows']:,} "
            f"predictions in {whole:.2f} s = {scored['rows'] / whole:,.0f}/s, of which the "
            f"scoring call {scored['seconds']:.2f} s ({scored['features_caught_up']:,} feature "
            f"rows caught up first, model {scored['predict_seconds']:.2f} s, write "
            f"{scored['write_seconds']:.2f} s = {scored['rows'] / scored['write_seconds']:,.0f}/s)"
        )
        for table, indexes, what in (
            ("reference", None, "fraud_predictions' indexes"),
            ("previous", PREVIOUS_INDEXES, "the previous indexes"),
        ):
            seconds, rows = plain_copy_seconds(engine, table, indexes)
            print(
                f"reference: plain psycopg2 COPY of the same {rows:,} rows into a table with "
                f"{what}: {seconds:.2f} s = {rows / seconds:,.0f} rows/s"
            )
            if indexes is None:
                reference = rows / seconds
        print(
            "score fraud's write / the plain COPY into the same indexes: "
            + ", ".join(f"{rate / reference:.2f}x" for rate in rates)
            + f" (first, re-score); load average after: {os.getloadavg()[0]:.1f}"
        )
        engine.dispose()


if __name__ == "__main__":
    main()
