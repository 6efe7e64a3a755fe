"""Signal models on the demo market world beside their honest references and the regime oracle.

Per seed and symbol: walk-forward accuracy and macro-F1 (90 % block-bootstrap intervals) of the
model, of each reference it is gated against, and of an oracle that knows the hidden regime
(each regime mapped to its commonest label on the fold's training rows); whether the model
gets at least half of the way from the training-majority to the oracle; the gate's verdict.

Run: python benchmarks/models_signal.py [--seeds 0 1 2] [--days 365]
"""

from __future__ import annotations

import argparse
import logging
from datetime import datetime

import numpy as np

from mlkit.toolkit.demo import market
from mlkit.toolkit.demo.params import DemoParams
from mlkit.toolkit.gate import judge
from mlkit.toolkit.signal.evaluation import GATE_METRIC, SCORES, scorecard
from mlkit.toolkit.signal.labels import fit_thresholds, make_labels
from mlkit.toolkit.signal.train import TrainSettings, prepare, walk_forward

DAYS = 365  # a year of hourly bars: about fifty regimes, half of them in the test folds
SHOWN = ("model", "training_majority", "random", "momentum", "logistic", "oracle")


def world(seed: int, days: float):
    params = DemoParams(seed=seed, orders=1, days=days, start=datetime(2025, 1, 1), world_orders=1)
    return market.generate(params, None)


def oracle(prepared, walk, regimes: np.ndarray, settings: TrainSettings) -> np.ndarray:
    """Per fold: each regime's commonest training label, predicted from the bar's regime."""
    parts = []
    for fold in walk.folds:
        returns = prepared.returns[: fold.train_end]
        thresholds = fit_thresholds(returns, settings.sell_quantile, settings.buy_quantile)
        labels = make_labels(returns, thresholds)
        train_regimes = regimes[: fold.train_end]
        mapping = {
            r: int(np.bincount(labels[train_regimes == r], minlength=3).argmax())
            for r in set(train_regimes)
        }
        test = regimes[fold.test_start : fold.test_end]
        parts.append([mapping.get(r, 1) for r in test])
    return np.concatenate(parts).astype(int)


def measure_symbol(frames: dict, symbol: str, settings: TrainSettings) -> tuple[str, bool]:
    bars = frames["market_data"]
    bars = bars[bars["symbol"] == symbol].drop(columns="symbol").reset_index(drop=True)
    truth = frames["demo_truth_regimes"]
    regimes = truth.loc[truth["symbol"] == symbol, "regime"].to_numpy()
    settings = settings.for_bars(bars["ts"])  # signal.horizon counted in these bars
    prepared = prepare(bars, settings)
    walk = walk_forward(prepared, settings)
    predictions = walk.predictions | {
        "oracle": oracle(prepared, walk, regimes[prepared.bar_rows], settings)
    }
    card = scorecard(
        walk.y_true,
        predictions,
        prepared.next_returns[walk.test_rows],
        cost_bps=settings.trade_cost_bps,
        block=settings.horizon,
    )
    verdict = judge(
        GATE_METRIC,
        SCORES[GATE_METRIC],
        walk.y_true,
        walk.y_pred,
        walk.baselines,
        block=settings.horizon,
        unit="bar",
    )
    majority, best = card["training_majority"]["accuracy"], card["oracle"]["accuracy"]
    target = majority + 0.5 * (best - majority)
    model = card["model"]["accuracy"]
    share = (model - majority) / (best - majority) if best > majority else float("nan")
    met = model >= target
    figures = []
    for metric in ("accuracy", "macro_f1"):
        figures.append(
            f"{metric}: "
            + ", ".join(
                f"{name} {card[name][metric]:.3f} [{card[name][metric + '_interval'][0]:.3f}, "
                f"{card[name][metric + '_interval'][1]:.3f}]"
                for name in SHOWN
            )
        )
    backtests = ", ".join(f"{name} {card[name]['backtest']['return']:+.1%}" for name in SHOWN)
    head = (
        f"{symbol} ({len(walk.y_true)} test bars, {len(walk.folds)} folds): half-way target "
        f"accuracy >= {target:.3f}: {'met' if met else 'MISSED'} (model at {share:.0%} of the "
        f"way from training_majority to oracle); gate on {GATE_METRIC}: "
        f"{'passes' if verdict.passed else 'fails'}"
    )
    lines = [head, *[f"    {text}" for text in figures], f"    backtest: {backtests}"]
    if not verdict.passed:
        lines.append(f"    gate: {'; '.join(verdict.reasons)}")
    return "\n".join(lines), met


def measure(seeds: list[int], days: float = DAYS) -> list[str]:
    """One block of lines per seed and symbol, then the tally of the half-way target."""
    logging.getLogger("mlkit.train").setLevel(logging.WARNING)
    settings = TrainSettings.default()
    lines, met = [], 0
    for seed in seeds:
        frames = world(seed, days)
        for symbol in market.SYMBOLS:
            text, ok = measure_symbol(frames, symbol, settings)
            lines.append(f"signal seed {seed} {text}")
            met += ok
    total = len(seeds) * len(market.SYMBOLS)
    lines.append(
        f"signal: half-way target met on {met} of {total} (seed, symbol) pairs "
        f"({days:g} demo days each, model seed {settings.model.random_seed})"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--days", type=float, default=DAYS)
    args = parser.parse_args()
    for line in measure(args.seeds, args.days):
        print(line, flush=True)


if __name__ == "__main__":
    main()
