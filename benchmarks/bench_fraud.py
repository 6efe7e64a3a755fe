"""Fraud model quality and speed on `mlkit demo seed --orders 200000 --seed 7`.

Prints XGBoost test AUC-PR beside the oracle (the generator's true probabilities on the
same test rows; target: within 0.03) and beside the logreg baseline (target: above it);
batch prediction throughput excluding the database write (target >= 100,000 orders/s);
`predict` p99 latency in-process with a warm model (target <= 10 ms).

Run: python benchmarks/bench_fraud.py [--orders 200000] [--seed 7] [--database URL]
"""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa
from _common import fresh_home, latency_ms, options

from mlkit.toolkit import schema
from mlkit.toolkit.db import read_frame
from mlkit.toolkit.demo.seed import seed_demo
from mlkit.toolkit.fraud import etl
from mlkit.toolkit.fraud.columns import FEATURES
from mlkit.toolkit.fraud.pipeline import train_fraud_model
from mlkit.toolkit.fraud.scoring import FraudPredictor, Thresholds, load_verified_model
from mlkit.toolkit.registry import resolve


def main() -> None:
    args = options(__doc__, database_help="default: a fresh SQLite file", orders=200_000, seed=7)
    logging.basicConfig(level=logging.WARNING)
    config, engine = fresh_home(args.database)
    seed_demo(engine, orders=args.orders, seed=args.seed, families=("fraud",))
    etl.run_etl(engine, *etl.resolve_range(engine, None, None))
    xgb = train_fraud_model(engine, config, kind="xgboost", alias="prod")
    logreg = train_fraud_model(engine, config, kind="logreg", alias=None)
    m, base = xgb["metrics"], logreg["metrics"]
    gap = m["oracle_auc_pr"] - m["auc_pr"]
    print(
        f"xgboost test AUC-PR {m['auc_pr']:.4f}, oracle {m['oracle_auc_pr']:.4f}: gap {gap:.4f} "
        f"(target <= 0.03) {'ok' if gap <= 0.03 else 'MISSED'}"
    )
    print(
        f"logreg baseline test AUC-PR {base['auc_pr']:.4f}: xgboost "
        f"{'above' if m['auc_pr'] > base['auc_pr'] else 'NOT above'} it"
    )

    mv = resolve(engine, "fraud@prod")
    model = load_verified_model(mv, config.artifacts_dir)
    f = schema.fraud_features
    with engine.connect() as conn:
        frame = read_frame(conn, sa.select(f.c.order_id, *[f.c[n] for n in FEATURES]))
    model.predict_proba(frame.head(1000))
    started = time.perf_counter()
    model.predict_proba(frame)
    rate = len(frame) / (time.perf_counter() - started)
    print(
        f"batch prediction: {rate:,.0f} orders/s on {len(frame):,} orders, database write "
        f"excluded (target >= 100,000) {'ok' if rate >= 100_000 else 'SLOW'}"
    )

    predictor = FraudPredictor(
        engine, mv, Thresholds.from_config(config), artifacts_dir=config.artifacts_dir
    )
    with engine.connect() as conn:
        orders = (
            conn.execute(sa.select(schema.orders).order_by(sa.func.random()).limit(300))
            .mappings()
            .all()
        )
    requests = [
        {
            k: o[k]
            for k in (
                "buyer_wallet_id",
                "event_id",
                "price",
                "payment_method",
                "geo_lat",
                "geo_lon",
                "created_at",
            )
        }
        for o in orders
    ]
    p50, p99, timed = latency_ms(predictor.predict, requests[:20], requests)
    print(
        f"predict (online features from the database + model), warm, {timed} orders: "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (target p99 <= 10 ms) {'ok' if p99 <= 10 else 'SLOW'}"
    )


if __name__ == "__main__":
    main()
