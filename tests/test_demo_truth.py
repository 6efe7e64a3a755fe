"""Models never learn from the demo's truth: `demo_truth_*` only grades them."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from mlkit.toolkit import schema

ROOT = Path(__file__).resolve().parents[1]
TRUTH_TABLES = [t.name for t in schema.DEMO_TRUTH_TABLES]
# Metrics that grade a model against the truth, and timings; everything else must not change.
NOT_COMPARED = ("oracle_auc_pr", "oracle_auc_roc", "oracle_best_arm", "seconds")


def names_in(path: Path) -> set[str]:
    """Every identifier, attribute and string constant in a module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.add(node.value)
    return found


def test_the_truth_tables_are_named_only_by_the_demo_and_the_schema():
    allowed = {ROOT / "toolkit" / "schema.py"} | set((ROOT / "toolkit" / "demo").rglob("*.py"))
    offenders = [
        f"{path.relative_to(ROOT)}: {sorted(hits)}"
        for path in sorted((ROOT / "toolkit").rglob("*.py"))
        if path not in allowed
        and (hits := {n for n in names_in(path) if n.startswith("demo_truth") or "DEMO_TRUTH" in n})
    ]
    assert offenders == []


def trained_versions(database: Path) -> dict[str, tuple[str, dict]]:
    engine = sa.create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    schema.model_versions.c.name,
                    schema.model_versions.c.sha256,
                    schema.model_versions.c.metrics,
                )
            ).all()
    finally:
        engine.dispose()
    return {
        name: (sha256, json.loads(metrics) if isinstance(metrics, str) else metrics)
        for name, sha256, metrics in rows
    }


def ungraded(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in NOT_COMPARED}


@pytest.mark.slow
def test_every_family_trains_the_same_model_without_the_truth(cli, tmp_path):
    """Train every family on a demo world, and on a copy with the truth rows deleted: the
    same models (CatBoost files embed a fresh id, so signals compare by their metrics)."""
    env = {"MLKIT_NOW": "2026-11-01T00:00:00", "MLKIT_REDIS_URL": ""}
    with_truth = tmp_path / "home" / "mlkit.db"
    seeded = cli("demo", "seed", "--orders", "12000", "--days", "30", "--seed", "3", env=env)
    assert seeded.exit_code == 0, seeded.output
    without_truth = tmp_path / "without-truth.db"
    shutil.copy(with_truth, without_truth)
    engine = sa.create_engine(f"sqlite:///{without_truth}")
    with engine.begin() as conn:
        for table in TRUTH_TABLES:
            assert conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar() > 0
            conn.execute(sa.text(f"DELETE FROM {table}"))
    engine.dispose()

    for database in (with_truth, without_truth):
        result = cli("--database", f"sqlite:///{database}", "train", "all", "--json", env=env)
        assert result.exit_code in (0, 3), result.output  # 3: a gate kept a model from prod

    graded, blind = trained_versions(with_truth), trained_versions(without_truth)
    assert set(graded) == set(blind) >= {"fraud", "pricing", "recommender"}
    assert any(name.startswith("signal-") for name in graded)
    for name, (sha256, metrics) in graded.items():
        assert ungraded(metrics) == ungraded(blind[name][1]), name
        if not name.startswith("signal-"):
            assert sha256 == blind[name][0], name
    # The truth was there to grade with, and only there.
    assert "oracle_auc_pr" in graded["fraud"][1]
    assert "oracle_auc_pr" not in blind["fraud"][1]


def test_the_oracle_reads_the_truth_of_the_asked_orders_only(engine, monkeypatch):
    """The truth of some orders, read a batch of ids at a time (the whole table was gigabytes
    of a training's peak at 20M orders): the same values as reading all and keeping those,
    across batch boundaries, with ids the table lacks left out; None off a demo world."""
    import pandas as pd

    from mlkit.toolkit.demo import truth

    t = schema.demo_truth_orders
    rows = [
        {
            "order_id": i,
            "fraud_probability": i / 100,
            "is_fraud": i % 3 == 0,
            "pricing_arm": "baseline",
            "conversion_probability": 0.5,
        }
        for i in range(1, 41)
    ]
    with engine.begin() as conn:
        conn.execute(t.delete())
        conn.execute(t.insert(), rows)
    monkeypatch.setattr(truth, "TRUTH_IDS_PER_READ", 7)
    asked = pd.Series([38, 2, 2, 15, 99, 22, 23, 24, 25, 26, 27, 28, 29, 3])
    got = truth.fraud_probabilities(engine, asked)
    known = sorted({i for i in asked if i <= 40})
    assert list(got["order_id"]) == known
    assert list(got["fraud_probability"]) == [i / 100 for i in known]
    assert truth.fraud_probabilities(engine, [1_000, 2_000]) is None
    with engine.begin() as conn:
        conn.execute(t.delete())
