"""Signal training speed on 20,000 hourly demo bars (the configured feature set).

Times `mlkit train signal` end to end (target <= 60 s on 2 cores) beside one plain CatBoost
fit on every sanitised feature: what a model costs before selection shrinks it.

Run: python benchmarks/bench_signal.py [--bars 20000] [--symbol BTCUSDT] [--database URL]
"""

from __future__ import annotations

import argparse
import logging
import time
from datetime import datetime

from _common import fresh_home

from mlkit.toolkit.db import init_schema
from mlkit.toolkit.demo import market
from mlkit.toolkit.demo.params import DemoParams
from mlkit.toolkit.signal.family import train as train_signal_model
from mlkit.toolkit.signal.indicators import compute_features, sanitize
from mlkit.toolkit.signal.labels import fit_thresholds, make_labels
from mlkit.toolkit.signal.market import load_bars, upsert_bars
from mlkit.toolkit.signal.model import fit_classifier
from mlkit.toolkit.signal.train import TrainSettings, prepare

TARGET_SECONDS = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=20_000)
    parser.add_argument("--symbol", default="BTCUSDT", choices=sorted(market.SYMBOLS))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database", help="default: a fresh SQLite file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    config, engine = fresh_home(args.database)
    init_schema(engine)

    params = DemoParams(
        seed=args.seed,
        orders=1,
        days=args.bars / 24 + 1,
        start=datetime(2023, 1, 1),
        world_orders=1,
    )
    bars = market.generate(params, None)["market_data"]
    bars = bars[bars["symbol"] == args.symbol].drop(columns="symbol").head(args.bars)
    with engine.begin() as conn:
        upsert_bars(conn, args.symbol, bars)

    started = time.perf_counter()
    # Timing only: the version stays candidate (no alias) whatever its gate says.
    result = train_signal_model(engine, config, args.symbol, alias=None, force=True)
    total = time.perf_counter() - started
    seconds = result["metrics"]["seconds"]
    selection = seconds["selection"]
    print(
        f"train signal: {len(bars):,} bars x {result['raw_features']} raw features in "
        f"{total:.1f} s (target <= {TARGET_SECONDS:.0f} s) "
        f"{'ok' if total <= TARGET_SECONDS else 'SLOW'}"
    )
    print(
        f"feature selection ({result['selection']['method']}, "
        f"{result['sanitization']['final_features']} -> {result['features']} features): "
        f"{selection:.1f} s = {selection / total:.0%} of the training; indicators "
        f"{seconds['features']:.1f} s, walk-forward fits {seconds['walk_forward']:.1f} s, "
        f"final fit {seconds['final_fit']:.1f} s"
    )

    # Reference: one CatBoost fit on every sanitised feature of the same bars, no selection.
    settings = TrainSettings.from_config(config)
    logging.getLogger("mlkit.train").setLevel(logging.WARNING)
    prepared = prepare(load_bars(engine, args.symbol), settings)
    kept = sanitize(prepared.features, settings.max_missing_share).kept
    labels = make_labels(
        prepared.returns,
        fit_thresholds(prepared.returns, settings.sell_quantile, settings.buy_quantile),
    )
    started = time.perf_counter()
    fit_classifier(prepared.features[kept], labels, settings.model)
    plain = time.perf_counter() - started
    final_fit = seconds["final_fit"]
    print(
        f"reference: one plain CatBoost fit on all {len(kept)} features, no selection: "
        f"{plain:.1f} s; the same fit on the {result['features']} selected features: "
        f"{final_fit:.1f} s ({plain / max(final_fit, 1e-9):.1f}x faster)"
    )

    m, bt = result["metrics"], result["metrics"]["backtest"]
    print(
        f"walk-forward ({bt['bars']:,} test bars): accuracy {m['accuracy']:.3f} beside the "
        f"training-majority {m['majority_accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}; "
        f"backtest {bt['model']['return']:+.1%} beside buy and hold "
        f"{bt['buy_and_hold']['return']:+.1%} and the SMA/RSI fallback "
        f"{bt['fallback']['return']:+.1%}"
    )
    # Sanity: the wide indicator set really is 400+ columns on these bars.
    assert compute_features(bars.head(300)).shape[1] >= 400


if __name__ == "__main__":
    main()
