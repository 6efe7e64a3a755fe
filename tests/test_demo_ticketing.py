"""The ticketing demo world: shape, integrity, reproducibility and the signals it hides."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score

from mlkit.toolkit import db, schema
from mlkit.toolkit.demo import ticketing
from mlkit.toolkit.demo.params import DemoParams

ORDERS = 60_000  # enough for the statistical checks, generated in a fraction of a second
DAYS = 45
START = datetime(2026, 1, 1)
TABLES = (
    "wallets",
    "events",
    "tickets",
    "orders",
    "ticket_transfers",
    "security_alerts",
    "bot_detection",
    "security_events",
    "blacklisted_wallets",
    "admin_audit_log",
    "demo_truth_orders",
    "demo_truth_wallets",
    "demo_truth_pricing",
)
# Timestamps that may lie outside the period: labels arrive later, wallets were created
# earlier, events take place later.
UNBOUNDED_TIMES = {
    ("wallets", "created_at"),
    ("events", "event_date"),
    ("security_alerts", "label_available_at"),
    ("bot_detection", "label_available_at"),
}


@pytest.fixture(scope="module")
def params() -> DemoParams:
    return DemoParams(seed=11, orders=ORDERS, days=DAYS, start=START)


@pytest.fixture(scope="module")
def world(params) -> dict[str, pd.DataFrame]:
    return ticketing.generate(params, None)


@pytest.fixture(scope="module")
def orders(world) -> pd.DataFrame:
    """Orders in time order with their truth and their actor's latent kind."""
    kinds = world["demo_truth_wallets"].set_index("wallet_id")["kind"]
    frame = world["orders"].merge(world["demo_truth_orders"], on="order_id")
    actor = np.where(frame.is_resale, frame.seller_wallet_id.fillna(-1), frame.buyer_wallet_id)
    frame["actor_kind"] = pd.Series(actor.astype(np.int64)).map(kinds)
    return frame.sort_values(["created_at", "order_id"], ignore_index=True)


def small_params(**changes) -> DemoParams:
    return DemoParams(**{"seed": 3, "orders": 3000, "days": 10, "start": START, **changes})


# ---------------------------------------------------------------- shape


def test_same_params_give_identical_frames_and_another_seed_does_not():
    first, again = (
        ticketing.generate(small_params(), None),
        ticketing.generate(small_params(), None),
    )
    assert set(first) == set(again) == set(TABLES)
    for name in TABLES:
        pd.testing.assert_frame_equal(first[name], again[name], obj=name)
    other = ticketing.generate(small_params(seed=4), None)
    assert not first["orders"]["price"].equals(other["orders"]["price"])
    assert set(first["wallets"]["address"]).isdisjoint(other["wallets"]["address"])


def test_exactly_the_requested_orders_each_with_its_truth(world):
    assert len(world["orders"]) == ORDERS
    assert len(world["demo_truth_orders"]) == ORDERS
    assert set(world["demo_truth_orders"].order_id) == set(world["orders"].order_id)
    assert world["orders"].is_resale.mean() == pytest.approx(ticketing.RESALE_SHARE, abs=0.002)


def test_volumes_follow_the_order_count(world):
    assert len(world["wallets"]) == pytest.approx(ORDERS / 6, rel=0.02)
    assert len(world["events"]) == ORDERS // 400
    assert len(ticketing.generate(small_params(orders=500), None)["events"]) == 20
    assert 3 <= len(world["admin_audit_log"]) <= 12


def test_columns_are_schema_columns_and_required_ones_are_filled(world):
    for name, frame in world.items():
        table = schema.metadata.tables[name]
        assert set(frame.columns) <= set(table.c.keys()), name
        for column in table.c:
            if column.nullable or column.default is not None:
                continue
            assert column.name in frame.columns, (name, column.name)
            assert frame[column.name].notna().all(), (name, column.name)
        for column in frame.columns:
            kind = table.c[column].type
            values = frame[column]
            if isinstance(kind, sa.DateTime):
                assert values.dtype == "datetime64[us]", (name, column)
                assert (values.dropna().dt.floor("s") == values.dropna()).all(), (name, column)
            elif isinstance(kind, sa.Boolean):
                assert values.dtype == bool, (name, column)
            elif isinstance(kind, sa.String) and values.dtype == "str":
                assert not (values == "").any(), (name, column)
                assert values.str.len().max() <= (kind.length or 10**6), (name, column)


def test_nullable_ids_are_python_ints_or_none(world):
    orders = world["orders"]
    resale = orders.is_resale
    assert orders.seller_wallet_id[resale].notna().all()
    assert orders.seller_wallet_id[~resale].isna().all()
    assert orders.ticket_id[orders.status == "FAILED"].isna().all()
    assert orders.ticket_id[orders.status == "COMPLETED"].notna().all()
    assert {type(v) for v in orders.ticket_id.dropna()} == {int}


def test_ids_are_unique_and_count_from_one(world):
    for name, column in ticketing.ID_COLUMNS.items():
        ids = world[name][column]
        assert ids.is_unique, name
        assert ids.min() == 1 and ids.max() == len(ids), name
    assert world["wallets"].address.is_unique
    assert world["blacklisted_wallets"].wallet_address.is_unique
    assert world["wallets"].address.str.fullmatch(r"0x[0-9a-f]{40}").all()


def test_references_hold_within_the_frames(world):
    wallets, orders, tickets = world["wallets"], world["orders"], world["tickets"]
    transfers = world["ticket_transfers"]
    assert orders.buyer_wallet_id.isin(wallets.wallet_id).all()
    assert orders.seller_wallet_id.dropna().isin(wallets.wallet_id).all()
    assert orders.event_id.isin(world["events"].event_id).all()
    assert tickets.event_id.isin(world["events"].event_id).all()
    assert tickets.owner_wallet_id.isin(wallets.wallet_id).all()
    assert orders.ticket_id.dropna().isin(tickets.ticket_id).all()
    assert transfers.ticket_id.isin(tickets.ticket_id).all()
    assert transfers.order_id.dropna().isin(orders.order_id).all()
    for labels in (world["security_alerts"], world["bot_detection"]):
        assert labels.order_id.isin(orders.order_id).all()
        assert labels.wallet_id.isin(wallets.wallet_id).all()
    assert world["demo_truth_wallets"].wallet_id.equals(wallets.wallet_id)
    assert world["blacklisted_wallets"].wallet_address.isin(wallets.address).all()
    assert world["security_events"].user_id.isin(wallets.address).all()

    # One ticket per completed primary sale, at its price, minted by its buyer.
    primary = orders[~orders.is_resale & orders.ticket_id.notna()]
    assert len(primary) == len(tickets) and primary.ticket_id.is_unique
    minted = tickets.set_index("ticket_id").loc[primary.ticket_id.astype(np.int64)]
    assert (minted.face_price.to_numpy() == primary.price.to_numpy()).all()
    assert (minted.event_id.to_numpy() == primary.event_id.to_numpy()).all()
    # A resale seller owned the ticket before: its primary buyer, and the sale came later.
    first_buyer = primary.set_index("ticket_id").buyer_wallet_id
    resales = orders[orders.is_resale & orders.ticket_id.notna()]
    assert (
        resales.seller_wallet_id.to_numpy() == first_buyer.loc[resales.ticket_id].to_numpy()
    ).all()
    assert (resales.created_at.to_numpy() > minted_at(tickets, resales.ticket_id)).all()
    # Completed resales move the ticket: one resale transfer each, and ownership follows.
    sold = transfers[transfers.transfer_type == "resale"]
    assert sorted(sold.order_id) == sorted(resales.order_id)
    assert (transfers.transferred_at.to_numpy() >= minted_at(tickets, transfers.ticket_id)).all()
    last_holder = transfers.sort_values("transferred_at").groupby("ticket_id").to_wallet_id.last()
    owner = tickets.set_index("ticket_id").owner_wallet_id
    expected = first_buyer.copy()
    expected.loc[last_holder.index] = last_holder
    assert owner.sort_index().equals(expected.sort_index().rename("owner_wallet_id"))
    gifts = transfers[transfers.transfer_type == "gift"]
    assert len(gifts) > 0 and gifts.order_id.isna().all() and gifts.price.isna().all()


def minted_at(tickets: pd.DataFrame, ticket_ids: pd.Series) -> np.ndarray:
    return tickets.set_index("ticket_id").minted_at.loc[ticket_ids.astype(np.int64)].to_numpy()


def test_times_lie_in_the_period(world, params):
    start, end = pd.Timestamp(params.start), pd.Timestamp(params.end)
    for name, frame in world.items():
        for column in frame.columns:
            if frame[column].dtype != "datetime64[us]" or (name, column) in UNBOUNDED_TIMES:
                continue
            values = frame[column].dropna()
            assert (values >= start).all() and (values < end).all(), (name, column)
    orders, events = world["orders"], world["events"].set_index("event_id")
    assert (orders.completed_at.dropna() >= orders.created_at[orders.completed_at.notna()]).all()
    assert (orders.created_at >= orders.event_id.map(events.sale_start)).all()
    assert (orders.created_at < orders.event_id.map(events.event_date)).all()
    first_order = orders.groupby("buyer_wallet_id").created_at.min()
    created = world["wallets"].set_index("wallet_id").created_at
    assert (created.loc[first_order.index] <= first_order).all()
    for labels in (world["security_alerts"], world["bot_detection"]):
        placed = labels.order_id.map(orders.set_index("order_id").created_at)
        assert (labels.label_available_at > placed).all()
    assert (world["security_alerts"].label_available_at > end).any(), "no label still pending"


# ---------------------------------------------------------------- behaviour


def test_wallet_kinds_behave_differently(world, orders):
    truth = world["demo_truth_wallets"].set_index("wallet_id")
    created = world["wallets"].set_index("wallet_id").created_at
    first_order = orders.groupby("buyer_wallet_id").created_at.min()
    age_days = (first_order - created.loc[first_order.index]).dt.total_seconds() / 86_400
    age = age_days.groupby(truth.kind.loc[age_days.index]).median()
    assert age["scalper_bot"] < 2 < age["stolen_payment"] < 30 < age["normal"]

    primary = orders[~orders.is_resale]
    gaps = primary.groupby("buyer_wallet_id").created_at.diff().dt.total_seconds()
    gap = gaps.groupby(primary.actor_kind).median()
    assert gap["scalper_bot"] < 300 and gap["stolen_payment"] < 900 and gap["normal"] > 86_400

    methods = primary.groupby("buyer_wallet_id").payment_method.nunique()
    methods = methods.groupby(truth.kind.loc[methods.index]).mean()
    assert methods["normal"] < 1.6 and methods["stolen_payment"] > 2.5

    resales = orders[orders.is_resale]
    markup = resales.price / resales.ticket_id.map(
        world["tickets"].set_index("ticket_id").face_price
    )
    by_kind = markup.groupby(resales.actor_kind).median()
    assert 1.5 <= by_kind["scalper_bot"] <= 3 and 0.8 <= by_kind["normal"] <= 1.3


def test_security_events_contain_brute_force_bursts(world):
    events = world["security_events"]
    assert set(events.event_type) == {"failed_login", "password_reset", "rate_limited"}
    failed = events[events.event_type == "failed_login"].sort_values("created_at")
    # Failed logins per source address in the five minutes up to each attempt.
    window = failed.set_index("created_at").groupby("source_ip").id.rolling("5min").count()
    assert (window > 5).any()
    assert isinstance(events.metadata.iloc[0], dict)


# ---------------------------------------------------------------- fraud


def test_fraud_rate_is_realistic_and_labels_arrive_for_most(world, orders):
    assert 0.01 <= orders.is_fraud.mean() <= 0.03
    fraud = orders[orders.is_fraud]
    alerts, detections = world["security_alerts"], world["bot_detection"]
    confirmed = set(alerts.order_id[alerts.confirmed_fraud]) | set(
        detections.order_id[detections.is_bot]
    )
    assert confirmed <= set(fraud.order_id)
    assert 0.8 <= len(confirmed) / len(fraud) <= 0.97
    by_bot = set(fraud.order_id[fraud.actor_kind == "scalper_bot"])
    assert set(detections.order_id[detections.is_bot]) <= by_bot
    # Noise: alerts that were not fraud, bot flags on normal wallets.
    assert (~alerts.confirmed_fraud).sum() > 0 and (~detections.is_bot).sum() > 0
    delay = (
        detections.label_available_at
        - detections.order_id.map(orders.set_index("order_id").created_at)
    ).dt.total_seconds() / 86_400
    assert delay.between(0.5, 7.0).all()
    delay = (
        alerts.label_available_at - alerts.order_id.map(orders.set_index("order_id").created_at)
    ).dt.total_seconds() / 86_400
    assert delay.between(2.0, 30.0).all()


def observable_features(world, orders: pd.DataFrame) -> pd.DataFrame:
    """Leak-free per-order features, each from the orders before it: wallet age, orders in
    the previous hour, distinct payment methods before, speed from the previous order and
    the markup of a resale."""
    frame = orders.sort_values(["buyer_wallet_id", "created_at", "order_id"])
    wallet = frame.buyer_wallet_id
    created = wallet.map(world["wallets"].set_index("wallet_id").created_at)
    seconds = (frame.created_at - START).dt.total_seconds().to_numpy()
    key = wallet.to_numpy() * 2**34 + seconds.astype(np.int64)
    position = np.arange(len(frame))
    first_method = ~frame.duplicated(["buyer_wallet_id", "payment_method"])
    earlier = frame.groupby("buyer_wallet_id")
    hours = (frame.created_at - earlier.created_at.shift()).dt.total_seconds().clip(lower=60) / 3600
    lat1, lon1 = np.radians(earlier.geo_lat.shift()), np.radians(earlier.geo_lon.shift())
    lat2, lon2 = np.radians(frame.geo_lat), np.radians(frame.geo_lon)
    a = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    )
    km = 2 * 6371 * np.arcsin(np.sqrt(a))
    base = frame.event_id.map(world["events"].set_index("event_id").base_price)
    features = pd.DataFrame(
        {
            "log_age_days": np.log(
                ((frame.created_at - created).dt.total_seconds() / 86_400).clip(lower=0.01)
            ),
            "log_orders_1h": np.log1p(position - np.searchsorted(key, key - 3600, side="left")),
            "methods_before": first_method.astype(int).groupby(wallet).cumsum() - first_method,
            "log_speed": np.log1p((km / hours).fillna(0)),
            "resale_markup": frame.is_resale * frame.price / base,
        },
        index=frame.index,
    )
    return features.loc[orders.index]


def test_fraud_truth_ranks_well_and_most_of_it_is_observable(world, orders):
    cut = int(0.8 * len(orders))
    test = orders.iloc[cut:]
    truth_ap = average_precision_score(test.is_fraud, test.fraud_probability)
    assert 0.4 <= truth_ap <= 0.9
    features = observable_features(world, orders)
    model = LogisticRegression(max_iter=1000).fit(features.iloc[:cut], orders.is_fraud[:cut])
    learned_ap = average_precision_score(
        test.is_fraud, model.predict_proba(features.iloc[cut:])[:, 1]
    )
    assert learned_ap >= 0.5 * truth_ap, (learned_ap, truth_ap)
    assert learned_ap < truth_ap + 0.05  # the truth is the ceiling


def test_the_fraud_shift_scales_fraudulent_orders():
    base = ticketing.generate(small_params(orders=20_000), None)["demo_truth_orders"]
    shifted = ticketing.generate(small_params(orders=20_000, shift={"fraud": 2.0}), None)
    assert shifted["demo_truth_orders"].is_fraud.mean() > 1.5 * base.is_fraud.mean()


# ---------------------------------------------------------------- pricing


def test_pricing_truth_has_a_different_best_arm_per_type(world):
    truth = world["demo_truth_pricing"]
    assert len(truth) == len(ticketing.EVENT_TYPES) * len(ticketing.ARMS)
    assert truth.groupby("event_type").is_best.sum().eq(1).all()
    revenue = truth.conversion * truth.mean_price_ratio
    assert np.allclose(revenue, truth.expected_revenue_ratio, atol=1e-6)
    by_type = truth.groupby("event_type")
    best = truth.loc[truth.is_best].set_index("event_type").arm.sort_index()
    assert best.nunique() >= 3
    assert best.equals(
        truth.loc[revenue.groupby(truth.event_type).idxmax()]
        .set_index("event_type")
        .arm.sort_index()
    )
    top_conversion = truth.loc[by_type.conversion.idxmax()].set_index("event_type").arm
    top_price = truth.loc[by_type.mean_price_ratio.idxmax()].set_index("event_type").arm
    neither = (best != top_conversion.sort_index()) & (best != top_price.sort_index())
    assert neither.sum() >= 2


def test_prices_reveal_the_strategy_and_conversion_follows_the_truth(world, orders):
    base = orders.event_id.map(world["events"].set_index("event_id").base_price)
    primary = ~orders.is_resale
    ratio = (orders.price / base)[primary]
    arm = orders.pricing_arm[primary]
    inferred = np.select(
        [orders.price[primary] == base[primary], ratio > 1.1, ratio < 0.95],
        ["baseline", "surge_pricing", "early_bird"],
        "ml_pricing",
    )
    assert (inferred == arm).all()
    assert (orders.pricing_arm[~primary] == ticketing.RESALE_ARM).all()
    shares = arm.value_counts(normalize=True)
    assert shares.between(0.2, 0.32).all()

    decided = orders[primary & orders.status.isin(["COMPLETED", "FAILED", "REFUNDED"])]
    decided = decided.assign(
        event_type=decided.event_id.map(world["events"].set_index("event_id").event_type),
        converted=decided.status != "FAILED",
    )
    observed = decided.groupby(["event_type", "pricing_arm"]).converted.mean()
    truth = world["demo_truth_pricing"].set_index(["event_type", "arm"]).conversion
    assert np.abs(observed - truth.loc[observed.index]).max() < 0.08
    expected = decided.groupby(["event_type", "pricing_arm"]).conversion_probability.mean()
    assert np.abs(observed - expected).max() < 0.05


def test_the_price_shift_raises_prices():
    base = ticketing.generate(small_params(orders=10_000), None)["orders"].price.median()
    shifted = ticketing.generate(small_params(orders=10_000, shift={"price": 2.0}), None)
    assert shifted["orders"].price.median() / base == pytest.approx(2.0, rel=0.05)


# ---------------------------------------------------------------- append


@pytest.fixture(scope="module")
def appended():
    """Period 0 loaded into SQLite, read back with read_state, then period 1 on top."""
    first = small_params(orders=4000, days=20)
    before = ticketing.generate(first, None)
    engine = sa.create_engine("sqlite://")
    schema.metadata.create_all(engine)
    with engine.begin() as conn:
        for table in schema.metadata.sorted_tables:
            if table.name in before:
                db.bulk_insert(conn, table, before[table.name])
        state = ticketing.read_state(conn)
    engine.dispose()
    second = small_params(
        orders=2000, days=5, start=first.end + timedelta(seconds=1), period=1, world_orders=4000
    )
    return before, state, second, ticketing.generate(second, state)


def test_read_state_reads_the_world_back(appended):
    before, state, _, _ = appended
    assert state.max_ids == {
        name: int(before[name][column].max()) for name, column in ticketing.ID_COLUMNS.items()
    }
    wallets = state.wallets.set_index("wallet_id")
    assert list(state.wallets.columns) == list(ticketing.STATE_WALLET_COLUMNS)
    assert len(wallets) == len(before["wallets"])
    truth = before["demo_truth_wallets"].set_index("wallet_id")
    assert (wallets.kind == truth.kind).all()
    orders = before["orders"]
    last = orders.sort_values(["created_at", "order_id"]).groupby("buyer_wallet_id").last()
    assert (wallets.last_order_at.loc[last.index] == last.created_at).all()
    assert (wallets.last_geo_lat.loc[last.index] == last.geo_lat).all()
    used = orders.groupby("buyer_wallet_id").payment_method.nunique()
    bits = wallets.payment_methods_mask.loc[used.index].map(lambda m: bin(m).count("1"))
    assert (bits == used).all()
    assert wallets.quick_resales.sum() > 0
    assert state.blacklisted_addresses == set(before["blacklisted_wallets"].wallet_address)
    assert len(state.pricing_truth) == len(before["demo_truth_pricing"])


def test_an_append_continues_the_same_world(appended):
    before, state, params, after = appended
    assert "demo_truth_pricing" not in after
    assert len(after["orders"]) == params.orders
    for name, column in ticketing.ID_COLUMNS.items():
        if len(after[name]):
            assert after[name][column].min() == state.max_ids[name] + 1, name
    assert after["orders"].created_at.min() >= pd.Timestamp(params.start)
    assert after["orders"].created_at.max() < pd.Timestamp(params.end)

    old_wallets = set(before["wallets"].wallet_id)
    buyers = after["orders"].buyer_wallet_id
    assert buyers.isin(old_wallets).mean() > 0.6, "existing wallets should keep buying"
    assert set(after["wallets"].wallet_id).isdisjoint(old_wallets)
    assert (buyers.isin(old_wallets) | buyers.isin(after["wallets"].wallet_id)).all()
    kinds = after["demo_truth_wallets"].kind.value_counts()
    assert kinds.get("scalper_bot", 0) > 0 and kinds.get("normal", 0) > 0
    assert set(after["wallets"].address).isdisjoint(before["wallets"].address)
    assert set(after["blacklisted_wallets"].wallet_address).isdisjoint(
        before["blacklisted_wallets"].wallet_address
    )

    # Reused normal wallets keep their homes and habits.
    home = before["demo_truth_wallets"].set_index("wallet_id")
    reused = after["orders"][
        buyers.isin(home.index[home.kind == "normal"]) & ~after["orders"].is_resale
    ]
    distance = np.hypot(
        reused.geo_lat - reused.buyer_wallet_id.map(home.home_lat),
        reused.geo_lon - reused.buyer_wallet_id.map(home.home_lon),
    )
    assert (distance < 1.0).mean() > 0.9
    habit = before["orders"].groupby("buyer_wallet_id").payment_method.agg(lambda m: m.mode()[0])
    known = reused[reused.buyer_wallet_id.isin(habit.index)]
    assert (known.payment_method == known.buyer_wallet_id.map(habit)).mean() > 0.6
