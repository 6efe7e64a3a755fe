"""Retention on every dialect: batches, crashes between and inside them, reruns, two at once."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from mlkit.toolkit import retention
from mlkit.toolkit.db import bulk_insert
from mlkit.toolkit.errors import MlkitError
from mlkit.toolkit.retention import run_retention
from mlkit.toolkit.schema import (
    fraud_predictions,
    fraud_predictions_archive,
    orders,
    orders_archive,
)

START = datetime(2024, 1, 1)
CUTOFF = "2024-01-11"  # the world's first ten of twenty days are old
BATCH = 150


@pytest.fixture
def world(engine):
    """1,500 orders over 20 days of 2024, a prediction or two for most, and a few old
    predictions whose order no longer exists."""
    from mlkit.toolkit.demo.seed import seed_demo

    seed_demo(engine, orders=1500, days=20, seed=3, families=("fraud",), start=START, replace=True)
    with engine.connect() as conn:
        frame = pd.read_sql(sa.select(orders.c.order_id, orders.c.created_at), conn)
    rng = np.random.default_rng(0)
    scored = frame.sample(frac=0.8, random_state=1)
    rescored = scored.sample(frac=0.3, random_state=2)
    orphans = pd.DataFrame(
        {"order_id": 10_000_000 + np.arange(7), "created_at": [START + timedelta(days=2)] * 7}
    )
    predictions = pd.concat([scored, rescored, orphans], ignore_index=True)
    predictions = predictions.assign(
        created_at=pd.to_datetime(predictions["created_at"]) + pd.Timedelta(minutes=5),
        fraud_score=rng.random(len(predictions)),
        decision="APPROVED",
        features=[{"txn_velocity_1h": 1.0}] * len(predictions),
        model_version="fraud:1",
    )
    with engine.begin() as conn:
        conn.execute(fraud_predictions.delete())
        conn.execute(fraud_predictions_archive.delete())  # the orphans an earlier test archived
        bulk_insert(conn, fraud_predictions, predictions)
    return engine


def snapshot(engine) -> dict:
    """Every order and prediction id, live and archived."""
    with engine.connect() as conn:

        def ids(table, column):
            return sorted(conn.execute(sa.select(table.c[column])).scalars())

        return {
            "orders": ids(orders, "order_id"),
            "orders_archive": ids(orders_archive, "order_id"),
            "predictions": ids(fraud_predictions, "id"),
            "predictions_archive": ids(fraud_predictions_archive, "id"),
        }


def assert_each_row_once(before: dict, after: dict) -> None:
    assert not set(after["orders"]) & set(after["orders_archive"])
    assert not set(after["predictions"]) & set(after["predictions_archive"])
    assert sorted(after["orders"] + after["orders_archive"]) == before["orders"]
    assert sorted(after["predictions"] + after["predictions_archive"]) == before["predictions"]


def test_dry_run_counts_and_changes_nothing(world):
    before = snapshot(world)
    document = run_retention(world, older_than=CUTOFF, batch_size=BATCH, dry_run=True)
    assert snapshot(world) == before
    with world.connect() as conn:
        old = conn.execute(
            sa.select(sa.func.count()).select_from(orders).where(orders.c.created_at < CUTOFF)
        ).scalar_one()
    assert document["to_move"]["orders"] == old > BATCH * 2
    assert document["moved"] == {"orders": 0, "predictions": 0}


def test_everything_old_moves_in_batches_with_its_predictions(world):
    before = snapshot(world)
    document = run_retention(world, older_than=CUTOFF, batch_size=BATCH)
    after = snapshot(world)
    assert_each_row_once(before, after)
    assert document["conserved"] and document["moved"] == document["to_move"]
    assert document["batches"] >= document["moved"]["orders"] / BATCH
    with world.connect() as conn:
        assert (
            conn.execute(
                sa.select(sa.func.count()).select_from(orders).where(orders.c.created_at < CUTOFF)
            ).scalar_one()
            == 0
        )
        # No live prediction points at an archived order; orphans of old dates moved too.
        live_orders = sa.select(orders.c.order_id)
        assert (
            conn.execute(
                sa.select(sa.func.count())
                .select_from(fraud_predictions)
                .where(fraud_predictions.c.order_id.not_in(live_orders))
            ).scalar_one()
            == 0
        )
        archived = conn.execute(
            sa.select(orders_archive).order_by(orders_archive.c.order_id).limit(1)
        ).one()
        source = conn.execute(sa.select(fraud_predictions_archive.c.features).limit(1)).scalar_one()
    assert archived.archived_at is not None and archived.price > 0
    assert source == {"txn_velocity_1h": 1.0}  # JSON survives the move
    again = run_retention(world, older_than=CUTOFF, batch_size=BATCH)
    assert again["moved"] == {"orders": 0, "predictions": 0} and snapshot(world) == after


def test_a_crash_between_batches_loses_nothing_and_a_rerun_finishes(world):
    before = snapshot(world)

    def crash(batch: int, moved: dict) -> None:
        if batch == 2:
            raise KeyboardInterrupt("killed between batches")

    with pytest.raises(KeyboardInterrupt):
        run_retention(world, older_than=CUTOFF, batch_size=BATCH, on_batch=crash)
    halfway = snapshot(world)
    assert_each_row_once(before, halfway)
    assert len(halfway["orders_archive"]) == 2 * BATCH
    finished = run_retention(world, older_than=CUTOFF, batch_size=BATCH)
    after = snapshot(world)
    assert_each_row_once(before, after)
    assert len(after["orders_archive"]) == 2 * BATCH + finished["moved"]["orders"]
    assert finished["conserved"]


def test_a_crash_inside_a_batch_rolls_the_whole_batch_back(world, monkeypatch):
    before = snapshot(world)
    real = retention._copy_then_delete
    calls = []

    def copy_then_crash(conn, source, archive, *args):
        calls.append(source.name)
        moved = real(conn, source, archive, *args)
        if source is orders and len(calls) > 2:  # the second batch: predictions already moved
            raise RuntimeError("power cut after the copy")
        return moved

    monkeypatch.setattr(retention, "_copy_then_delete", copy_then_crash)
    with pytest.raises(RuntimeError):
        run_retention(world, older_than=CUTOFF, batch_size=BATCH)
    halfway = snapshot(world)
    assert_each_row_once(before, halfway)
    assert len(halfway["orders_archive"]) == BATCH  # only the first batch committed
    with world.connect() as conn:  # the second batch's predictions are live again
        orphaned = conn.execute(
            sa.select(sa.func.count())
            .select_from(fraud_predictions_archive)
            .where(
                fraud_predictions_archive.c.order_id.not_in(sa.select(orders_archive.c.order_id))
            )
        ).scalar_one()
    assert orphaned == 0
    monkeypatch.setattr(retention, "_copy_then_delete", real)
    run_retention(world, older_than=CUTOFF, batch_size=BATCH)
    assert_each_row_once(before, snapshot(world))


def test_rows_already_archived_are_not_copied_twice(world):
    """A row in both places (a restore that forgot to clean up) is archived once."""
    before = snapshot(world)
    with world.begin() as conn:
        first = conn.execute(sa.select(orders).order_by(orders.c.order_id).limit(1)).one()
        conn.execute(orders_archive.insert().values(**first._asdict(), archived_at=START))
    run_retention(world, older_than=CUTOFF, batch_size=BATCH)
    after = snapshot(world)
    assert_each_row_once(before, after)


def test_two_runs_at_once_move_each_row_once(world):
    before = snapshot(world)
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = [
            pool.submit(run_retention, world, older_than=CUTOFF, batch_size=BATCH) for _ in range(2)
        ]
    results = [run.result() for run in runs]  # raises what a run raised
    assert_each_row_once(before, snapshot(world))
    moved = sorted(r["moved"]["orders"] for r in results)
    assert moved[0] == 0 and moved[1] > 0  # the second waited, then found nothing


@pytest.mark.parametrize(
    ("older_than", "message"),
    [("0d", "younger than a day"), ("2h", "younger than a day"), ("ages", "cannot read")],
)
def test_bad_cutoffs_are_refused(engine, older_than, message):
    with pytest.raises(MlkitError, match=message):
        run_retention(engine, older_than=older_than)
    with pytest.raises(MlkitError, match="batch size"):
        run_retention(engine, batch_size=0)


def test_cli_retention_and_kpi_refresh(world, cli, database_url):
    retention = ("--database", database_url, "retention", "run", "--older-than", CUTOFF)
    dry = cli(*retention, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    plan = json.loads(dry.stdout)["to_move"]
    result = cli(*retention, "--batch-size", "400")
    assert result.exit_code == 0, result.output
    assert f"archived {plan['orders']:,} orders" in result.stdout
    bad = cli("--database", database_url, "retention", "run", "--older-than", "yesterday-ish")
    assert bad.exit_code == 1 and "error: cannot read --older-than" in bad.stderr

    kpi = cli("--database", database_url, "kpi", "refresh", "--json")
    assert kpi.exit_code == 0, kpi.output
    document = json.loads(kpi.stdout)
    assert document["refreshed"] == (world.dialect.name == "postgresql")
    assert document["view"] == "kpi_hourly"
