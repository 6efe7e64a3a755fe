"""`mlkit drift check` over 1,000,000 recent orders on PostgreSQL, beside reading them once.

Target: <= 10 s wall; the reference is a plain pandas read of the same feature rows plus
the training snapshot: what any drift check has to read.

Run: python benchmarks/bench_drift.py [--orders 1000000] [--database URL (reuse a seeded one)]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import sqlalchemy as sa
from _scratch import scratch_postgres

TARGET_S = 10.0
SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"
WINDOW = "3650d"  # every order of the world is "recent"


def mlkit(url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "mlkit.commands.main", "--database", url, *args],
        capture_output=True,
        text=True,
    )
    if check and done.returncode != 0:
        raise SystemExit(f"mlkit {' '.join(args)} failed:\n{done.stderr}")
    return done


def register_stand_in(url: str, snapshot: str) -> str:
    """A fraud model version whose training snapshot is the one just built: the drift
    check reads only the snapshot and the feature list, so no training is needed."""
    from mlkit.toolkit.config import load_config
    from mlkit.toolkit.db import make_engine
    from mlkit.toolkit.fraud.columns import FEATURES
    from mlkit.toolkit.registry import register_model

    engine = make_engine(url)
    mv = register_model(
        engine,
        load_config().artifacts_dir,
        name="fraud",
        family="fraud",
        write_artifact=lambda path: path.write_text("benchmark stand-in"),
        filename="model.txt",
        features=list(FEATURES),
        dataset_ref=snapshot,
    )
    engine.dispose()
    return mv.ref


def reference_seconds(url: str, snapshot: str, start) -> tuple[float, int]:
    import pandas as pd

    from mlkit.toolkit.fraud.columns import FEATURES

    engine = sa.create_engine(url)
    columns = ", ".join(FEATURES)
    started = time.perf_counter()
    with engine.connect() as conn:
        frame = pd.read_sql(
            sa.text(f"SELECT {columns} FROM fraud_features WHERE feature_ts >= :start"),
            conn,
            params={"start": start},
        )
    pd.read_parquet(Path(snapshot) / "data.parquet", columns=list(FEATURES))
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed, len(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--database", help="an already seeded database (with features) to reuse")
    args = parser.parse_args()
    home = tempfile.TemporaryDirectory(prefix="mlkit-bench-drift-")
    os.environ["MLKIT_HOME"] = home.name
    given = args.database
    with home, nullcontext(given) if given else scratch_postgres(SERVER) as url:
        if not given:
            print(f"seeding {args.orders:,} orders, computing features ...", file=sys.stderr)
            mlkit(url, "demo", "seed", "--orders", str(args.orders), "--families", "fraud")
            mlkit(url, "etl", "run")
        snapshot = json.loads(mlkit(url, "dataset", "build", "fraud", "--json").stdout)["path"]
        ref = register_stand_in(url, snapshot)
        started = time.perf_counter()
        done = mlkit(
            url, "drift", "check", "--model", ref, "--window", WINDOW, "--json", check=False
        )
        wall_s = time.perf_counter() - started
        if done.returncode not in (0, 3):
            raise SystemExit(f"drift check failed:\n{done.stderr}")
        document = json.loads(done.stdout)
        read_s, rows = min(
            (reference_seconds(url, snapshot, document["window"]["start"]) for _ in range(2)),
            key=lambda pair: pair[0],
        )
    ok = wall_s <= TARGET_S
    print(
        f"mlkit drift check: {document['current_rows']:,} recent orders x "
        f"{len(document['features'])} features against a {document['reference_rows']:,}-row "
        f"snapshot in {wall_s:.1f} s wall ({document['seconds']:.1f} s inside; target <= "
        f"{TARGET_S:.0f} s) {'ok' if ok else 'SLOW'}; "
        f"{len(document['features_drifted'])} drifted"
    )
    print(
        f"reference, pandas.read_sql of the same {rows:,} feature rows + read_parquet of the "
        f"snapshot: {read_s:.1f} s ({wall_s / read_s:.2f} x)"
    )


if __name__ == "__main__":
    main()
