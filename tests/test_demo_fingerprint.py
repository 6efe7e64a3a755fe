"""The demo worlds' outputs, pinned: a digest of every frame each generator makes (and of
what a few `demo stream` ticks write) must not move when the code is reorganised."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from mlkit.toolkit import schema
from mlkit.toolkit.config import load_config
from mlkit.toolkit.db import make_engine
from mlkit.toolkit.demo import market, shop, ticketing
from mlkit.toolkit.demo.params import DemoParams
from mlkit.toolkit.demo.seed import seed_demo
from mlkit.toolkit.demo.stream import DemoStream

START = datetime(2026, 1, 1)
NOW = "2026-02-01T12:00:00"

# Recorded from the code before the demo package was split; a change here is a change in
# what the seeds write, never a refactor.
TICKETING_DIGEST = "b898049dbb4994ebc6fc45a8e385ca5f24729151d7931cc56fe789373ae3714c"
TICKETING_APPEND_DIGEST = "5f7469a920e291dc7a2bf392560b985c695975489d4df8274eccfbc97db2e574"
SHOP_DIGEST = "1a27798e297e9b25066474dc9a684af787ec72046f1eaa129b6b2ec0da225fc6"
MARKET_DIGEST = "b562ff4af26300462f864a4882196c10ea6eb85186c451b99470583692ea24b0"
# The stream prices each order with the bandit's policy: re-recorded when issue 17 changed
# Thompson sampling (optimistic, no half-variance reshaping).
STREAM_DIGEST = "07e686f6f452fd23c18307fce859eb8837a30d54a0706e8a2156a6d7a832573d"


def _value(value) -> str:
    """One cell as text: floats to 9 significant digits (a platform's last bit does not
    count), timestamps in ISO form, JSON values with sorted keys, missing values as null."""
    if value is None or value is pd.NaT:
        return "null"
    if isinstance(value, float | np.floating):
        return "nan" if math.isnan(value) else format(float(value), ".9g")
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return repr(value)


def digest(frames: dict[str, pd.DataFrame]) -> str:
    """sha256 over every frame, its columns in sorted order, cell by cell."""
    h = hashlib.sha256()
    for name in sorted(frames):
        frame = frames[name]
        h.update(f"{name}:{len(frame)}\n".encode())
        for column in sorted(frame.columns):
            h.update(f"{column}\n".encode())
            h.update("\x1f".join(_value(v) for v in frame[column].tolist()).encode())
    return h.hexdigest()


def params(**overrides) -> DemoParams:
    values = {"seed": 7, "orders": 3000, "days": 14, "start": START, "world_orders": 3000}
    values.update(overrides)
    return DemoParams(**values)


def test_ticketing_world_is_unchanged():
    assert digest(ticketing.generate(params(), None)) == TICKETING_DIGEST


def test_shop_world_is_unchanged():
    assert digest(shop.generate(params(), None)) == SHOP_DIGEST


def test_market_world_is_unchanged():
    assert digest(market.generate(params(), None)) == MARKET_DIGEST


@pytest.fixture
def seeded(tmp_path, monkeypatch):
    """A small ticketing world seeded into a fresh SQLite database, the clock held still."""
    monkeypatch.setenv("MLKIT_NOW", NOW)
    url = f"sqlite:///{tmp_path / 'fingerprint.db'}"
    engine = make_engine(url)
    seed_demo(engine, orders=1500, days=10, seed=7, families=("fraud", "pricing"))
    yield engine, url
    engine.dispose()


def test_append_and_stream_ticks_are_unchanged(seeded):
    engine, url = seeded
    with engine.connect() as conn:
        state = ticketing.read_state(conn)
        start = conn.execute(sa.select(sa.func.max(schema.demo_worlds.c.end_ts))).scalar()
    appended = ticketing.generate(
        params(orders=800, days=3, start=start, period=1, world_orders=1500), state
    )
    assert digest(appended) == TICKETING_APPEND_DIGEST

    with engine.connect() as conn:
        last_order = conn.execute(sa.select(sa.func.max(schema.orders.c.order_id))).scalar()
        last_wallet = conn.execute(sa.select(sa.func.max(schema.wallets.c.wallet_id))).scalar()
    stream = DemoStream(engine, load_config(database_url=url), seed=1)
    totals = stream.warm_start(20, datetime.fromisoformat(NOW))
    for second in range(3):
        stream.tick(40, totals, datetime.fromisoformat(NOW) + timedelta(seconds=second))
    written = {}
    with engine.connect() as conn:
        for table, column, first in (
            (schema.orders, "order_id", last_order),
            (schema.demo_truth_orders, "order_id", last_order),
            (schema.bot_detection, "order_id", last_order),
            (schema.security_alerts, "order_id", last_order),
            (schema.wallets, "wallet_id", last_wallet),
            (schema.demo_truth_wallets, "wallet_id", last_wallet),
        ):
            query = sa.select(table).where(table.c[column] > first).order_by(*table.primary_key)
            written[table.name] = pd.read_sql(query, conn)
    assert sum(len(frame) for frame in written.values()) > 0
    assert digest(written) == STREAM_DIGEST
