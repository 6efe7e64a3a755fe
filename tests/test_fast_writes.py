"""The bulk paths write what they should and nothing more: `score fraud`'s predictions,
`etl run`'s upsert of unchanged rows, `features materialize`'s incremental Redis keys."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
import sqlalchemy as sa

from mlkit.toolkit import schema
from mlkit.toolkit.config import load_config
from mlkit.toolkit.db import read_frame
from mlkit.toolkit.demo.seed import seed_demo
from mlkit.toolkit.fraud import etl
from mlkit.toolkit.fraud.columns import FEATURES
from mlkit.toolkit.fraud.materialize import materialize_wallets
from mlkit.toolkit.fraud.online import WALLET_KEY, _decode, _wallet_rows
from mlkit.toolkit.fraud.pipeline import train_fraud_model
from mlkit.toolkit.fraud.scoring import Thresholds, load_verified_model, score_orders
from mlkit.toolkit.outputs import feature_object
from mlkit.toolkit.registry import resolve

UNTIL = datetime(2026, 3, 1)


@pytest.fixture(scope="module")
def world(engine, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    url = engine.url.render_as_string(hide_password=False)
    config = load_config(database_url=url, env={"MLKIT_HOME": str(home)})
    seed_demo(engine, orders=3000, days=30, seed=5, families=("fraud",), start=datetime(2026, 1, 1))
    etl.run_etl(engine, None, UNTIL)
    train_fraud_model(engine, config, kind="logreg", alias="candidate")
    return config, resolve(engine, "fraud@candidate")


def _predictions(engine, label: str):
    p = schema.fraud_predictions
    with engine.connect() as conn:
        return read_frame(
            conn,
            sa.select(p.c.id, p.c.order_id, p.c.fraud_score, p.c.decision, p.c.features)
            .where(p.c.model_version == label)
            .order_by(p.c.order_id),
        )


def test_scoring_writes_each_orders_score_and_decision_and_a_rescore_replaces(engine, world):
    config, mv = world
    thresholds = Thresholds.from_config(config)
    first = score_orders(engine, mv, thresholds, artifacts_dir=config.artifacts_dir)
    label = f"{mv.name}:{mv.version}"
    stored = _predictions(engine, label)
    f = schema.fraud_features
    with engine.connect() as conn:
        frame = read_frame(
            conn, sa.select(f.c.order_id, *[f.c[n] for n in FEATURES]).order_by(f.c.order_id)
        )
    expected = np.round(load_verified_model(mv, config.artifacts_dir).predict_proba(frame), 6)
    assert first.rows == len(stored) == len(frame) == 3000
    assert stored["order_id"].tolist() == frame["order_id"].tolist()
    assert np.allclose(stored["fraud_score"].to_numpy(), expected, atol=1e-9)
    assert stored["decision"].tolist() == thresholds.decide(expected).tolist()
    assert (
        first.decisions
        == stored["decision"].value_counts().reindex(list(first.decisions), fill_value=0).to_dict()
    )
    assert stored["features"].isna().all()  # the vector lives in fraud_features only

    with engine.begin() as conn:  # a mark on every row: the rewritten ones lose it
        conn.execute(schema.fraud_predictions.update().values(fraud_score=-1.0))
    since = datetime(2026, 1, 20)
    again = score_orders(engine, mv, thresholds, since, artifacts_dir=config.artifacts_dir)
    after = _predictions(engine, label)
    assert 0 < again.rows < first.rows
    assert len(after) == 3000 and after["order_id"].is_unique  # replaced, never duplicated
    renewed = after["fraud_score"].to_numpy() >= 0
    assert renewed.sum() == again.rows  # only the window's rows were rewritten
    assert np.allclose(after["fraud_score"][renewed], stored["fraud_score"][renewed], atol=1e-9)


def test_a_predictions_features_are_built_from_fraud_features(engine, world):
    f = schema.fraud_features
    with engine.connect() as conn:
        row = conn.execute(sa.select(f).order_by(f.c.order_id.desc()).limit(1)).mappings().one()
        built = conn.execute(
            sa.select(feature_object(engine.dialect.name, f)).where(f.c.order_id == row["order_id"])
        ).scalar_one()
    document = json.loads(built) if isinstance(built, str) else built
    assert set(document) == set(FEATURES)
    for name in FEATURES:
        value = row[name]
        if value is None or isinstance(value, str):
            assert document[name] == value
        else:
            assert document[name] == pytest.approx(float(value), rel=1e-12)


def _feature_rows(engine) -> dict:
    f = schema.fraud_features
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            query = sa.select(f.c.order_id, sa.literal_column("xmin::text"), f.c.computed_at)
        else:
            query = sa.select(f.c.order_id, f.c.computed_at)
        return {row[0]: tuple(row[1:]) for row in conn.execute(query)}


def test_etl_run_again_writes_nothing_and_then_only_what_changed(engine, world):
    since = datetime(2026, 1, 10)
    before = _feature_rows(engine)
    result = etl.run_etl(engine, since, UNTIL)
    assert result.rows > 0 and result.written["skipped"] == result.rows
    assert result.written["inserted"] == result.written["updated"] == 0
    assert result.written["deleted"] == 0
    assert _feature_rows(engine) == before  # same row versions (xmin), same computed_at

    o, a = schema.orders, schema.security_alerts
    with engine.begin() as conn:
        order = conn.execute(
            sa.select(o.c.order_id, o.c.buyer_wallet_id, o.c.created_at)
            .where(o.c.created_at >= datetime(2026, 1, 25))
            .order_by(o.c.order_id)
            .limit(1)
        ).one()
        conn.execute(
            a.insert().values(
                order_id=order.order_id,
                wallet_id=order.buyer_wallet_id,
                alert_type="test",
                severity="high",
                confirmed_fraud=True,
                label_available_at=order.created_at + timedelta(days=1),
            )
        )
    again = etl.run_etl(engine, since, UNTIL)
    assert again.written["inserted"] == again.written["deleted"] == 0
    assert again.written["updated"] >= 1
    changed = {k for k, v in _feature_rows(engine).items() if before.get(k) != v}
    assert order.order_id in changed and len(changed) == again.written["updated"]


def _plain(value):
    """A value as both paths can hold it: numbers (bools, decimals) as floats, times to the
    second (the stored state's precision), NaN as None."""
    if isinstance(value, datetime):
        return value.replace(microsecond=0)
    if isinstance(value, (bool, int, float, Decimal)):
        return None if value != value else round(float(value), 6)
    return value


def _rows(tables: dict) -> dict:
    return {
        name: sorted(repr(sorted((k, _plain(v)) for k, v in row.items())) for row in rows)
        for name, rows in tables.items()
    }


def _state(client, wallet: int) -> dict:
    return _rows(_decode(client.get(WALLET_KEY.format(wallet)).decode()))


def test_materialize_is_incremental_and_equals_the_database_path(engine, world, redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    first = materialize_wallets(engine, client, 300, full=True)
    assert first.mode == "full" and first.written == first.wallets > 0
    second = materialize_wallets(engine, client, 300)
    # Only the wallets active at the newest moments (ties are rewritten, never missed).
    assert second.mode == "incremental" and second.written < first.wallets // 20
    assert second.written + second.kept == first.wallets

    o = schema.orders
    with engine.begin() as conn:
        template = dict(
            conn.execute(sa.select(o).order_by(o.c.order_id.desc()).limit(1)).one()._mapping
        )
        newest = conn.execute(sa.select(sa.func.max(o.c.created_at))).scalar()
        conn.execute(
            o.insert().values(
                {
                    **template,
                    "order_id": template["order_id"] + 1,
                    "created_at": newest + timedelta(hours=1),
                }
            )
        )
    client.delete(WALLET_KEY.format(1))  # an expired key comes back too
    third = materialize_wallets(engine, client, 300)
    owners = {template["buyer_wallet_id"], template["seller_wallet_id"], 1} - {None}
    assert len(owners) <= third.written <= len(owners) + second.written
    assert third.written + third.kept == first.wallets
    assert 0 < client.ttl(WALLET_KEY.format(1)) <= 300
    with engine.connect() as conn:
        for wallet in [*sorted(owners), 2, 3]:
            assert _state(client, wallet) == _rows(_wallet_rows(conn, wallet)), wallet


def test_materialize_after_an_older_mlkits_marks_rebuilds_every_key_once(engine, world, redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    marks = schema.etl_watermarks
    with engine.begin() as conn:  # the sources an older mlkit named, and no current one
        conn.execute(marks.delete().where(marks.c.job.like("wallet_state:%")))
        conn.execute(
            marks.insert(),
            [
                {"job": f"wallet_state:{name}", "watermark": UNTIL, "updated_at": UNTIL}
                for name in ("buyer", "seller", "completed_buyer", "completed_seller")
            ],
        )
    first = materialize_wallets(engine, client, 300)
    assert first.mode == "full" and first.written == first.wallets
    second = materialize_wallets(engine, client, 300)
    assert second.mode == "incremental" and second.written < first.wallets // 20
    with engine.connect() as conn:
        jobs = conn.execute(sa.select(marks.c.job).where(marks.c.job.like("wallet_state:%")))
        assert "wallet_state:buyer" not in set(jobs.scalars())
