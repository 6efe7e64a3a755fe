"""Fraud for `bench_models.py`: per seed, a demo world of ORDERS orders on a scratch SQLite
file, `mlkit train fraud`'s model and gate, its test AUC-PR with a bootstrap interval beside
the no-skill prior, the logistic-regression baseline and the oracle (the generator's true
probabilities) on the same test orders.

Targets (issue 17): the model above logreg (the gate's lower bound over the best baseline
above zero) and within 0.03 of the oracle.
"""

from __future__ import annotations

from contextlib import suppress

from _common import fresh_home

ORDERS = 200_000  # the scale issue 17 measured the oracle gap at
DAYS = 90


def measure(seeds: list[int]) -> list[str]:
    """One line per seed, then the mean gap to the oracle."""
    lines, gaps = [], []
    for seed in seeds:
        line, gap = _one(seed)
        lines.append(line)
        gaps.append(gap)
    mean = sum(gaps) / len(gaps)
    lines.append(
        f"mean oracle gap {mean:.4f} over {len(seeds)} seed(s) (target <= 0.03) "
        f"{'ok' if mean <= 0.03 else 'MISSED'}"
    )
    return lines


def _one(seed: int) -> tuple[str, float]:
    from mlkit.toolkit.demo.seed import seed_demo
    from mlkit.toolkit.fraud.pipeline import train_fraud_model
    from mlkit.toolkit.gate import Verdict
    from mlkit.toolkit.registry import alias_target, resolve
    from mlkit.toolkit.validation import CandidateRejected

    config, engine = fresh_home()
    seed_demo(engine, orders=ORDERS, days=DAYS, seed=seed, families=("fraud",))
    with suppress(CandidateRejected):  # the verdict below says why
        train_fraud_model(engine, config, alias="prod")
    # fraud:1 is the XGBoost candidate; with nothing serving in this fresh home, a rejected
    # one leaves the logreg baseline registered as fraud:2 and serving.
    metrics = resolve(engine, "fraud:1").metrics
    prod = alias_target(engine, "fraud", "prod")
    verdict = Verdict.from_dict(metrics["gate"])
    test = metrics["split"]["test"]
    base = verdict.baselines
    margin = verdict.best
    oracle = metrics.get("oracle_auc_pr", float("nan"))
    gap = oracle - verdict.model
    line = (
        f"seed {seed}: {ORDERS:,} orders, test {test['rows']:,} orders ({test['positives']} "
        f"fraud): AUC-PR {verdict.model:.4f} vs prior {base['prior']:.4f}, logreg "
        f"{base.get('logreg', float('nan')):.4f} (margin over {margin.reference} "
        f"{margin.margin:+.4f}, 90% interval [{margin.interval[0]:+.4f}, "
        f"{margin.interval[1]:+.4f}]), oracle {oracle:.4f} (gap {gap:.4f}); gate "
        f"{'passes: prod' if verdict.passed else 'fails: stays candidate'}"
        + ("" if prod in (1, None) else f"; the logreg baseline fraud:{prod} serves")
    )
    return line, gap
