"""The shared promotion gate: paired bootstrap margins, block resampling, NaN and missing
references, the verdict stored with a version, and the core free of family imports."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from mlkit.toolkit.gate import Verdict, iter_resamples, judge, resample_indices, stored_verdict

ROOT = Path(__file__).resolve().parents[1]


def accuracy(truth: np.ndarray, predictions: np.ndarray) -> float:
    return float(np.mean(truth == predictions)) if len(truth) else float("nan")


def noisy(truth: np.ndarray, error_rate: float, seed: int) -> np.ndarray:
    """`truth` with a share of its labels flipped."""
    rng = np.random.default_rng(seed)
    flipped = rng.random(len(truth)) < error_rate
    return np.where(flipped, 1 - truth, truth)


@pytest.fixture
def truth() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 2, 2000)


def test_a_candidate_clearly_above_every_baseline_passes(truth):
    verdict = judge(
        "accuracy",
        accuracy,
        truth,
        noisy(truth, 0.1, 1),
        {"majority": np.ones_like(truth), "weak": noisy(truth, 0.3, 2)},
    )
    assert verdict.passed and verdict.reasons == []
    assert verdict.best.reference == "weak"  # the strongest baseline is the one compared
    low, high = verdict.best.interval
    assert 0 < low <= verdict.best.margin <= high
    assert "passes" in verdict.summary()


def test_a_candidate_no_better_than_its_baseline_fails(truth):
    candidate = noisy(truth, 0.3, 1)
    verdict = judge("accuracy", accuracy, truth, candidate, {"twin": noisy(truth, 0.3, 2)})
    assert not verdict.passed
    assert verdict.best.interval[0] <= 0 <= verdict.best.interval[1]
    assert "not above the twin baseline" in verdict.reasons[0]


def test_a_candidate_significantly_worse_than_prod_fails_even_above_its_baselines(truth):
    verdict = judge(
        "accuracy",
        accuracy,
        truth,
        noisy(truth, 0.2, 1),
        {"majority": np.ones_like(truth)},
        prod=("m:1", noisy(truth, 0.05, 2)),
    )
    assert verdict.best.significantly_better
    assert verdict.prod.significantly_worse
    assert verdict.reasons == [
        f"worse than m:1 on the same holdout: margin {verdict.prod.margin:+.4f}"
    ]


def test_no_baseline_is_no_evidence_of_skill(truth):
    verdict = judge("accuracy", accuracy, truth, truth.copy(), {})
    assert not verdict.passed and verdict.best is None
    assert verdict.reasons == ["no baseline could be computed on this holdout"]
    assert "no baseline to compare with" in verdict.summary()


def test_nan_figures_are_left_out_never_crash():
    truth = np.array([1] * 3 + [0] * 997)  # most resamples of 30 rows hold no positive

    def recall(t: np.ndarray, p: np.ndarray) -> float:
        return float(p[t == 1].mean()) if t.any() else float("nan")

    candidate = truth.copy()
    verdict = judge("recall", recall, truth, candidate, {"never": np.zeros_like(truth)})
    assert verdict.model == 1.0 and verdict.baselines == {"never": 0.0}
    assert np.isfinite(verdict.best.interval).all()  # resamples without a positive dropped
    # A baseline whose figure is NaN never becomes the one to beat.
    nan_first = judge(
        "recall",
        lambda t, p: float("nan") if p.sum() == 0 else recall(t, p),
        truth,
        candidate,
        {"nothing": np.zeros_like(truth), "half": np.where(np.arange(1000) % 2, truth, 0)},
    )
    assert nan_first.best.reference == "half"
    empty = judge("recall", recall, truth[:0], candidate[:0], {"never": truth[:0]})
    assert not empty.passed and all(np.isnan(empty.best.interval))
    assert "[+nan, +nan]" in empty.reasons[0]


def test_block_bootstrap_keeps_runs_of_neighbouring_rows():
    indices = resample_indices(100, block=10, rounds=50, seed=3)
    assert indices.shape == (50, 100)
    steps = np.diff(indices, axis=1)
    within = np.ones(99, dtype=bool)
    within[9::10] = False  # the step from one block to the next
    assert np.all((steps[:, within] == 1) | (steps[:, within] == -99))  # circular runs
    assert not np.all(steps[:, ~within] == 1)  # blocks start anywhere
    rows = resample_indices(100, block=1, rounds=50, seed=3)
    assert not np.all(np.diff(rows, axis=1)[:, within] == 1)
    assert resample_indices(5, block=10, rounds=2).shape == (2, 5)
    assert resample_indices(0, block=4, rounds=2).shape == (2, 0)


def test_block_bootstrap_widens_the_interval_of_serially_correlated_rows():
    # Errors in long runs: row resampling believes in 2,000 independent rows, blocks do not.
    truth = np.zeros(2000, dtype=int)
    candidate = np.repeat(np.random.default_rng(5).integers(0, 2, 40), 50)
    baseline = np.repeat(np.random.default_rng(6).integers(0, 2, 40), 50)
    rows = judge("accuracy", accuracy, truth, candidate, {"b": baseline}, block=1)
    blocks = judge("accuracy", accuracy, truth, candidate, {"b": baseline}, block=50)
    width = lambda v: v.best.interval[1] - v.best.interval[0]  # noqa: E731
    assert width(blocks) > 2 * width(rows)


def test_the_stored_verdict_reads_back_the_same(truth):
    verdict = judge(
        "accuracy",
        accuracy,
        truth,
        noisy(truth, 0.1, 1),
        {"weak": noisy(truth, 0.3, 2)},
        prod=("m:1", noisy(truth, 0.1, 3)),
        unit="order",
    )
    verdict.notes.append("m:0 not compared: it uses other features")
    document = json.loads(json.dumps(verdict.as_dict()))
    assert document["passed"] is True and document["level"] == 0.9
    again = Verdict.from_dict(stored_verdict({"gate": document, "auc_pr": 0.5}))
    assert again.summary() == verdict.summary() and again.passed
    assert "(m:0 not compared: it uses other features)" in again.summary()
    assert stored_verdict({"auc_pr": 0.5}) is None and stored_verdict(None) is None
    # NaN is stored as null and comes back as NaN.
    document["best"]["interval"] = [None, None]
    assert all(np.isnan(Verdict.from_dict(document).best.interval))


def test_validation_imports_no_family_module():
    """The core reaches the families only through families.py, by name."""
    tree = ast.parse((ROOT / "toolkit" / "validation.py").read_text())
    families = ("fraud", "pricing", "signal", "recommender")
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
            imported.update(f"{node.module}.{a.name}" for a in node.names if node.module)
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
    offenders = [
        name for name in imported if any(part in families for part in name.strip(".").split("."))
    ]
    assert offenders == []
    assert ".families" in imported


def test_resamples_come_one_at_a_time_and_again_the_same():
    """The gate iterates the resamples one array at a time (the matrix of 400 rounds of a
    large holdout was a gigabyte) and draws the same ones on every pass."""
    drawn = iter_resamples(1_000, block=24, rounds=5, seed=7)
    first = next(drawn)
    assert first.shape == (1_000,)
    assert np.array_equal(first, resample_indices(1_000, block=24, rounds=5, seed=7)[0])
    again = list(iter_resamples(1_000, block=24, rounds=5, seed=7))
    assert np.array_equal(np.stack(again), resample_indices(1_000, block=24, rounds=5, seed=7))
