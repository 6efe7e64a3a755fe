"""Fraud features: definitions checked against a per-order reference, and the leakage proof."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from fraud_rows import add_label, stored_features

from mlkit.toolkit import schema
from mlkit.toolkit.db import make_engine
from mlkit.toolkit.demo.seed import seed_demo
from mlkit.toolkit.errors import MlkitError
from mlkit.toolkit.fraud import etl
from mlkit.toolkit.fraud.columns import NUMERIC_FEATURES
from mlkit.toolkit.fraud.features import compute_features

WORLD_END = datetime(2026, 1, 21)
FAR = datetime(2027, 1, 1)


@pytest.fixture(scope="module")
def world(engine):
    seed_demo(
        engine,
        orders=3000,
        days=20,
        seed=5,
        families=("fraud",),
        start=WORLD_END - timedelta(days=20),
    )
    return etl.run_etl(engine, None, WORLD_END)


def test_etl_stores_one_row_per_order_with_labels(engine, world):
    features = stored_features(engine)
    assert world.rows == len(features) == 3000
    assert features["order_id"].is_unique
    assert 0 < features["label"].astype(bool).sum() < 200
    labelled = features[features["label"].astype(bool)]
    assert (pd.to_datetime(labelled["label_available_at"]) > labelled["feature_ts"]).all()


def test_rerun_is_idempotent(engine, world):
    before = stored_features(engine)
    etl.run_etl(engine, None, WORLD_END)
    after = stored_features(engine)
    pd.testing.assert_frame_equal(
        before.drop(columns="computed_at"), after.drop(columns="computed_at")
    )


def test_leakage_proof_later_rows_and_labels_never_change_earlier_features(engine, world):
    """Append later orders of the same wallets and events plus labels that arrive later
    (one on an already-featured order), rebuild: earlier vectors stay byte-for-byte equal."""
    before = stored_features(engine)
    seed_demo(engine, days=4, append=True)
    first_order = int(before["order_id"].min())
    add_label(engine, first_order, int(before["wallet_id"].iloc[0]), WORLD_END + timedelta(days=1))
    etl.run_etl(engine, None, FAR)
    after = stored_features(engine)
    assert len(after) > len(before)
    after_old = after[after["order_id"].isin(before["order_id"])].reset_index(drop=True)
    assert bool(after_old.loc[after_old.order_id == first_order, "label"].iloc[0])
    for column in (*NUMERIC_FEATURES, "wallet_id", "event_id"):
        old = before[column].to_numpy(dtype=float)
        new = after_old[column].to_numpy(dtype=float)
        assert old.tobytes() == new.tobytes(), f"{column} changed for earlier orders"
    assert (before["feature_ts"] == after_old["feature_ts"]).all()


def test_watermark_is_the_newest_order_processed(engine, world):
    with engine.connect() as conn:
        newest = conn.execute(sa.select(sa.func.max(schema.orders.c.created_at))).scalar()
    assert etl.read_watermark(engine) == newest < FAR
    with pytest.raises(MlkitError, match="no orders between"):
        etl.run_etl(engine, FAR, FAR + timedelta(days=1))
    # An explicit window without orders may be a quiet no-op; the watermark stays.
    quiet = etl.run_etl(engine, FAR, FAR + timedelta(days=1), allow_empty=True)
    assert quiet.rows == 0 and etl.read_watermark(engine) == newest
    caught_up = etl.catch_up(engine, lookback=timedelta(days=2), until=FAR)
    assert caught_up.rows == 0 and caught_up.watermark == newest


def test_range_arguments_are_checked(engine):
    now = datetime(2026, 6, 1)
    assert etl.resolve_range(engine, "30d", None, now=now) == (now - timedelta(days=30), now)
    for bad, message in (
        ("soon", "cannot read --since"),
        ("2026-07-01", "in the future"),
        ("last", "incremental run"),
    ):
        with pytest.raises(MlkitError, match=message):
            etl.resolve_range(engine, bad, None, now=now)


def test_missing_tables_point_to_db_init(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/empty.db")
    with pytest.raises(MlkitError, match="missing table") as caught:
        etl.run_etl(engine, None, FAR)
    assert "mlkit db init" in caught.value.hint


# ---------------------------------------------------------------- definitions, order by order


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('ref')}/ref.db")
    seed_demo(
        engine, orders=4000, days=15, seed=21, families=("fraud",), start=datetime(2026, 1, 1)
    )
    with engine.connect() as conn:
        return etl.extract(conn, FAR)


def reference_features(src, order) -> dict:
    """The definitions of features.py, written the slow obvious way for one order."""
    o = src.orders
    t = order.created_at
    wallet = o[(o.buyer_wallet_id == order.buyer_wallet_id) & (o.created_at < t)]
    event = src.events.set_index("event_id").loc[order.event_id]
    sold = o[
        (o.event_id == order.event_id)
        & (o.created_at < t)
        & (o.status == "COMPLETED")
        & ~o.is_resale.astype(bool)
    ]
    labels = src.labels.merge(o[["order_id", "event_id"]], on="order_id")
    available = labels[(labels.label_available_at < t) & (labels.order_id != order.order_id)]
    edges = src.transfers[src.transfers.transferred_at < t]
    partners = set(edges.loc[edges.from_wallet_id == order.buyer_wallet_id, "to_wallet_id"]) | set(
        edges.loc[edges.to_wallet_id == order.buyer_wallet_id, "from_wallet_id"]
    )
    return {
        "txn_velocity_1h": len(wallet[wallet.created_at >= t - timedelta(hours=1)]),
        "event_popularity_score": len(sold) / event.capacity,
        "price_deviation_ratio": order.price / event.base_price - 1,
        "cross_event_attendance": wallet.loc[wallet.status == "COMPLETED", "event_id"].nunique(),
        "payment_method_diversity": len(set(wallet.payment_method) | {order.payment_method}),
        "social_graph_centrality": len(partners),
        "wallet_labels_7d": int(
            (
                (available.wallet_id == order.buyer_wallet_id)
                & (available.label_available_at >= t - timedelta(days=7))
            ).sum()
        ),
        "event_labels_30d": int(
            (
                (available.event_id == order.event_id)
                & (available.label_available_at >= t - timedelta(days=30))
            ).sum()
        ),
    }


def test_vectorised_features_match_the_per_order_definitions(sources):
    computed = compute_features(sources).set_index("order_id")
    rng = np.random.default_rng(0)
    busy = sources.orders.groupby("buyer_wallet_id")["order_id"].transform("count") > 3
    picks = pd.concat(
        [
            sources.orders[busy].sample(40, random_state=1),
            sources.orders.sample(40, random_state=2),
            sources.orders[sources.orders.is_resale.astype(bool)].sample(10, random_state=3),
        ]
    )
    del rng
    for order in picks.itertuples():
        expected = reference_features(sources, order)
        row = computed.loc[order.order_id]
        for name, value in expected.items():
            assert row[name] == pytest.approx(value), (order.order_id, name)


def test_a_later_order_never_changes_an_earlier_vector_in_memory(sources):
    cut = sources.orders["created_at"].quantile(0.5)
    from dataclasses import replace

    early = replace(
        sources,
        orders=sources.orders[sources.orders.created_at < cut],
        transfers=sources.transfers[sources.transfers.transferred_at < cut],
        labels=sources.labels[sources.labels.label_available_at < cut],
    )
    small = compute_features(early).set_index("order_id")
    full = compute_features(sources).set_index("order_id").loc[small.index]
    pd.testing.assert_frame_equal(small[list(NUMERIC_FEATURES)], full[list(NUMERIC_FEATURES)])


def test_null_source_columns_are_named(sources):
    from dataclasses import replace

    from mlkit.toolkit.fraud.etl import _check_nulls

    broken = sources.orders.copy()
    broken.loc[broken.index[:3], "payment_method"] = None
    with pytest.raises(MlkitError, match=r"3 row\(s\) of orders.payment_method are NULL"):
        _check_nulls(replace(sources, orders=broken))
    _check_nulls(sources)  # optional columns (geo, seller, ticket) may be NULL


def test_two_runs_at_once_wait_for_each_other(engine, world):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(etl.run_etl, engine, None, FAR) for _ in range(2)]
        results = [run.result(timeout=120) for run in runs]
    assert results[0].rows == results[1].rows
    with engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(schema.fraud_features)).scalar()
    assert count == results[0].rows
