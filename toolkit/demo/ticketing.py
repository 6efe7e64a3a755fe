"""A reproducible NFT-ticketing world for the fraud and pricing demo families.

`generate` makes one period of the world; `read_state` reads back what an `--append`
needs to continue it. Wallets have a latent kind (normal, scalper bot, stolen payment)
that only shows through behaviour; primary sales are priced by one of four strategies
whose true conversion depends on the event type; fraud labels arrive late and not always.

Everything is vectorised over orders and wallets: the only Python loops run over a
handful of categories (cities, event types) or rejection rounds. Times are int64 seconds
after the period's origin until the frames are built.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from .. import schema
from .params import DemoParams

DAY = 86_400
HOUR = 3_600

# ---------------------------------------------------------------- the world's fixed facts

# (city, country, lat, lon, relative size): homes, venues and where orders come from.
_CITY_ROWS = (
    ("New York", "US", 40.71, -74.01, 9),
    ("Los Angeles", "US", 34.05, -118.24, 6),
    ("Chicago", "US", 41.88, -87.63, 4),
    ("Toronto", "CA", 43.65, -79.38, 4),
    ("Mexico City", "MX", 19.43, -99.13, 5),
    ("Sao Paulo", "BR", -23.55, -46.63, 5),
    ("Buenos Aires", "AR", -34.60, -58.38, 3),
    ("London", "GB", 51.51, -0.13, 8),
    ("Paris", "FR", 48.86, 2.35, 6),
    ("Berlin", "DE", 52.52, 13.40, 5),
    ("Frankfurt", "DE", 50.11, 8.68, 2),
    ("Madrid", "ES", 40.42, -3.70, 4),
    ("Rome", "IT", 41.90, 12.50, 3),
    ("Amsterdam", "NL", 52.37, 4.90, 3),
    ("Stockholm", "SE", 59.33, 18.07, 2),
    ("Warsaw", "PL", 52.23, 21.01, 2),
    ("Prague", "CZ", 50.08, 14.44, 2),
    ("Istanbul", "TR", 41.01, 28.98, 4),
    ("Dubai", "AE", 25.20, 55.27, 3),
    ("Cairo", "EG", 30.04, 31.24, 2),
    ("Lagos", "NG", 6.52, 3.38, 2),
    ("Johannesburg", "ZA", -26.20, 28.05, 2),
    ("Mumbai", "IN", 19.08, 72.88, 4),
    ("Singapore", "SG", 1.35, 103.82, 4),
    ("Bangkok", "TH", 13.76, 100.50, 3),
    ("Hong Kong", "HK", 22.32, 114.17, 3),
    ("Seoul", "KR", 37.57, 126.98, 5),
    ("Tokyo", "JP", 35.68, 139.69, 7),
    ("Sydney", "AU", -33.87, 151.21, 4),
    ("Melbourne", "AU", -37.81, 144.96, 3),
)
CITY_NAMES = np.array([row[0] for row in _CITY_ROWS], dtype=object)
CITY_COUNTRIES = np.array([row[1] for row in _CITY_ROWS], dtype=object)
CITY_LAT = np.array([row[2] for row in _CITY_ROWS])
CITY_LON = np.array([row[3] for row in _CITY_ROWS])
CITY_SHARE = np.array([row[4] for row in _CITY_ROWS], dtype=float)
CITY_SHARE /= CITY_SHARE.sum()
N_CITIES = len(_CITY_ROWS)

EVENT_TYPES = ("concert", "sports", "theatre", "festival", "conference")
_EVENT_TYPE_SHARE = np.array([0.34, 0.24, 0.18, 0.09, 0.15])
_BASE_PRICE_MEDIAN = np.array([80.0, 70.0, 65.0, 95.0, 110.0])
_BASE_PRICE_SD = 0.2  # of log base price within a type
_POPULARITY_SD = 0.5  # of log popularity: some hits, many quieter events
_SALE_WINDOW_DAYS = np.array([28.0, 14.0, 21.0, 45.0, 35.0])
_CAPACITY_MEDIAN = np.array([5_000, 25_000, 900, 30_000, 1_500])
_VENUE_KINDS = np.array(
    [
        ("Arena", "Music Hall", "Club"),
        ("Stadium", "Arena", "Ballpark"),
        ("Theatre", "Opera House", "Playhouse"),
        ("Park", "Fairgrounds", "Showgrounds"),
        ("Convention Center", "Expo Center", "Congress Hall"),
    ],
    dtype=object,
)
_BAND_WORDS = (
    np.array(
        [
            "Neon",
            "Velvet",
            "Silver",
            "Midnight",
            "Electric",
            "Golden",
            "Crimson",
            "Wild",
            "Lunar",
            "Static",
            "Paper",
            "Hollow",
        ],
        dtype=object,
    ),
    np.array(
        [
            "Wolves",
            "Tides",
            "Echoes",
            "Harbor",
            "Machines",
            "Satellites",
            "Roses",
            "Parade",
            "Ghosts",
            "Rivers",
        ],
        dtype=object,
    ),
)
_TEAM_WORDS = np.array(
    ["Lions", "Falcons", "United", "Rangers", "Comets", "Sharks", "Titans", "Royals"], dtype=object
)
_PLAYS = np.array(
    [
        "Hamlet",
        "The Seagull",
        "A Doll's House",
        "The Tempest",
        "Cabaret",
        "The Cherry Orchard",
        "Macbeth",
        "Twelfth Night",
        "The Glass Menagerie",
        "Waiting for Godot",
    ],
    dtype=object,
)
_FESTIVAL_WORDS = np.array(
    ["Summer", "Winter", "Sound", "Lights", "Open Air", "Jazz"], dtype=object
)
_CONFERENCE_TOPICS = np.array(
    ["Web3", "AI", "Fintech", "DevOps", "Data", "Cloud", "Security", "Blockchain"], dtype=object
)

# ---------------------------------------------------------------- pricing truth

ARMS = ("baseline", "surge_pricing", "early_bird", "ml_pricing")
# demo_truth_orders.pricing_arm of a resale: the seller set that price, no platform strategy.
RESALE_ARM = "resale"
_RESALE_INDEX = len(ARMS)
# The multiplier each strategy applies to the base price; baseline is exactly 1.
_ARM_MULTIPLIER = np.array([[1.0, 1.0], [1.15, 1.5], [0.7, 0.92], [0.96, 1.08]])
# Mostly uniform exploration, a little extra traffic on the platform's current favourite.
_ARM_SHARE = np.array([0.2375, 0.2375, 0.2375, 0.2875])
# True conversion per (event type, arm). Revenue per offer = conversion x mean price ratio,
# so the best arm is surge for concerts, ML pricing for sports and conferences, baseline for
# theatre and early bird for festivals: for sports and theatre it is neither the arm that
# converts best nor the most expensive one.
TRUE_CONVERSION = np.array(
    [
        [0.50, 0.45, 0.58, 0.51],  # concert
        [0.46, 0.30, 0.54, 0.52],  # sports
        [0.50, 0.28, 0.55, 0.45],  # theatre
        [0.38, 0.22, 0.60, 0.38],  # festival
        [0.34, 0.27, 0.38, 0.40],  # conference
    ]
)
_EVENT_CONVERSION_SD = 0.15  # per-event shift of every arm's conversion, on the logit scale
RESALE_COMPLETION = 0.93

# ---------------------------------------------------------------- buyers

KINDS = ("normal", "scalper_bot", "stolen_payment")
NORMAL, BOT, STOLEN = 0, 1, 2
PAYMENT_METHODS = (
    "credit_card",
    "debit_card",
    "crypto_wallet",
    "paypal",
    "apple_pay",
    "bank_transfer",
)
_CREDIT_CARD, _CRYPTO = 0, 2
_NORMAL_METHOD_SHARE = np.array([0.34, 0.22, 0.08, 0.17, 0.14, 0.05])
STATUSES = ("COMPLETED", "FAILED", "PENDING", "REFUNDED")
COMPLETED, FAILED, PENDING, REFUNDED = 0, 1, 2, 3

# Share of primary orders placed by each fraudulent kind (times the `fraud` shift).
_BOT_ORDER_SHARE = 0.035
_STOLEN_ORDER_SHARE = 0.012
RESALE_SHARE = 0.04
_FOLLOW_UP_SHARE = 0.18  # normal orders that are a second ticket minutes after the first
_TRAVEL_SHARE = 0.03
_GIFT_SHARE = 0.015
_REFUND_SHARE = 0.004
_QUICK_RESALE_SECONDS = 48 * HOUR
_FLAT_DEMAND = 0.3  # share of a sale's demand spread evenly; the rest ramps up to the date
_JET_SPEED_KMH = 900.0
_POPCOUNT = np.array([bin(i).count("1") for i in range(64)])  # of a 6-bit payment-method mask

# True fraud logit: an intercept, terms an order's features can see before it is placed and
# the latent kind of the wallet acting (the seller of a resale), which its behaviour betrays.
# No private per-order noise: the truth is the best probability anyone could know, so the
# oracle it gives is one a model can approach, not one that knows what no data shows.
_FRAUD_LOGIT = {
    "intercept": -7.0,
    "log_velocity_1h": 1.1,  # log1p(orders of the buyer in the previous hour)
    "youth": 0.6,  # log(30 days / wallet age), floored at 0
    "extra_payment_methods": 1.0,  # distinct methods used before, beyond the first
    "jet_speed": 2.0,  # faster than a plane since the previous order
    "resale_markup": 1.3,  # resale price above 1.3x face value
    "log_quick_resales": 0.6,  # log1p(the actor's tickets resold within 48 h, before)
}
_KIND_LOGIT = np.array([0.0, 1.8, 2.8])

# Public first octets of residential ISPs and of hosting providers (bots rent those).
_RESIDENTIAL_OCTETS = np.array(
    [
        24,
        31,
        37,
        46,
        62,
        66,
        71,
        76,
        78,
        81,
        82,
        84,
        86,
        88,
        90,
        92,
        95,
        98,
        109,
        121,
        151,
        176,
        178,
        188,
        201,
        212,
        217,
    ]
)
_HOSTING_OCTETS = np.array([34, 35, 45, 104, 138, 139, 159, 185, 193])

# Local hour-of-day weights (0..23): quiet nights, lunch and evening peaks.
_HOURLY = np.array(
    [
        0.15,
        0.10,
        0.07,
        0.05,
        0.05,
        0.07,
        0.15,
        0.30,
        0.45,
        0.55,
        0.65,
        0.70,
        0.80,
        0.75,
        0.70,
        0.70,
        0.75,
        0.85,
        0.95,
        1.00,
        1.00,
        0.90,
        0.60,
        0.30,
    ]
)

# Tables whose ids this module assigns, and their id column.
ID_COLUMNS = {
    "wallets": "wallet_id",
    "events": "event_id",
    "tickets": "ticket_id",
    "orders": "order_id",
    "ticket_transfers": "transfer_id",
    "security_alerts": "alert_id",
    "bot_detection": "detection_id",
    "security_events": "id",
    "admin_audit_log": "id",
}

# Columns of TicketingState.wallets.
STATE_WALLET_COLUMNS = (
    "wallet_id",
    "address",
    "country",
    "created_at",
    "kind",
    "home_lat",
    "home_lon",
    "activity",
    "last_order_at",
    "last_geo_lat",
    "last_geo_lon",
    "payment_methods_mask",
    "quick_resales",
)


# Columns of TicketingState.events: the events table's, and the tickets sold so far.
EVENT_STATE_COLUMNS = (
    "event_id",
    "event_type",
    "city",
    "venue_lat",
    "venue_lon",
    "base_price",
    "capacity",
    "sale_start",
    "event_date",
    "created_at",
    "name",
    "venue",
    "sold",
)

# ---------------------------------------------------------------- public API


@dataclass
class TicketingState:
    """What an append needs to continue an existing world.

    wallets: one row per existing wallet (STATE_WALLET_COLUMNS): identity, latent truth
    (kind, home, activity) and the history the fraud truth looks back on: the last order
    (time and place), the payment methods ever used (bit i = PAYMENT_METHODS[i]) and how
    many of its tickets it resold within 48 h.
    max_ids: the largest id per table in ID_COLUMNS (absent or 0 when the table is empty).
    blacklisted_addresses: already blacklisted, never inserted twice.
    pricing_truth: demo_truth_pricing as stored; the conversions of the world continue.
    events: the events whose date lies after the newest order (EVENT_STATE_COLUMNS): their
    sales go on in the appended period, so an event's history does not end with a period.
    """

    wallets: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=list(STATE_WALLET_COLUMNS))
    )
    max_ids: dict[str, int] = field(default_factory=dict)
    blacklisted_addresses: frozenset[str] = frozenset()
    pricing_truth: pd.DataFrame | None = None
    events: pd.DataFrame | None = None


def generate(params: DemoParams, state: TicketingState | None) -> dict[str, pd.DataFrame]:
    """One period of the ticketing world: table name -> frame of schema columns."""
    rng = params.rng("ticketing")
    clock = _Clock.of(params)
    state = state if state is not None else TicketingState()
    next_id = {t: int(state.max_ids.get(t) or 0) + 1 for t in ID_COLUMNS}
    conversion = _conversion_table(state.pricing_truth)

    n_orders = int(params.orders)
    n_resale = round(RESALE_SHARE * n_orders)
    n_primary = n_orders - n_resale
    fraud = params.factor("fraud")
    n_bot = round(min(_BOT_ORDER_SHARE * fraud, 0.3) * n_primary)
    n_stolen = round(min(_STOLEN_ORDER_SHARE * fraud, 0.15) * n_primary)
    n_normal = n_primary - n_bot - n_stolen

    ongoing = _ongoing_events(state.events, clock)
    if ongoing is not None:
        ongoing.price_factor[:] = params.factor("price")
    if ongoing is None:
        events = _make_events(rng, params, clock, max(20, round(n_orders / 400)))
    else:  # sales go on; new events open at the world's pace (one per 400 orders)
        fresh = _make_events(rng, params, clock, int(rng.poisson(n_orders / 400)), False)
        events = _Events.concat(ongoing, fresh, clock.horizon)
    wallets = _Wallets.from_state(state.wallets, clock)
    bots = _bot_sessions(rng, events, wallets, n_bot)
    stolen = _stolen_sessions(rng, events, wallets, n_stolen)
    n_new_normal = (
        max(10, n_orders // 6 - bots.n_new_wallets - stolen.n_new_wallets)
        if params.period == 0 or not (wallets.kind == NORMAL).any()
        else max(10, round(0.2 * n_orders / 6))
    )
    wallets.add_normal(rng, n_new_normal)
    primary = _concat(
        [
            _normal_orders(rng, events, wallets, n_normal),
            _bot_orders(rng, events, wallets, bots),
            _stolen_orders(rng, events, wallets, stolen),
        ]
    )
    _price_and_convert(rng, events, conversion, primary, clock)

    tickets = _mint_tickets(rng, primary, clock, 0)
    resales, sold = _resales(rng, events, wallets, tickets, n_resale, clock)
    if len(resales["t"]) < n_resale:  # too few tickets to resell: top up with primary sales
        extra = _normal_orders(rng, events, wallets, n_resale - len(resales["t"]))
        _price_and_convert(rng, events, conversion, extra, clock)
        tickets = _concat([tickets, _mint_tickets(rng, extra, clock, len(tickets["minted"]))])
        primary = _concat([primary, extra])
    gifts = _gifts(rng, events, wallets, tickets, sold)

    orders = _concat([primary, resales])
    order_rank = np.lexsort((np.arange(len(orders["t"])), orders["t"]))
    orders = {k: v[order_rank] for k, v in orders.items()}
    order_ids = np.empty_like(order_rank)
    order_ids[order_rank] = np.arange(len(order_rank))  # generation position -> sorted position
    wallets.settle_creation(rng, orders, gifts, clock)

    transfers = _transfers(primary, resales, gifts, tickets, order_ids, len(primary["t"]))
    features = _fraud_features(wallets, orders, transfers)
    truth = _fraud_truth(rng, features)
    labels = _labels(rng, wallets, orders, truth, features["actor"])

    frames = _frames(
        clock,
        next_id,
        events,
        wallets,
        orders,
        tickets,
        transfers,
        truth,
        labels,
        features["actor"],
    )
    frames["security_events"] = _security_events(
        rng, clock, wallets, orders, n_orders, next_id["security_events"]
    )
    frames["blacklisted_wallets"] = _blacklist(
        rng, clock, wallets, labels, features["actor"], state.blacklisted_addresses
    )
    frames["admin_audit_log"] = _admin_audit_log(rng, clock, next_id["admin_audit_log"])
    if params.period == 0:
        frames["demo_truth_pricing"] = _pricing_truth_frame(conversion)
    return frames


def read_state(conn: sa.Connection) -> TicketingState:
    """Read what an append needs from the database, with a few set-based queries."""
    w, tw, o = schema.wallets, schema.demo_truth_wallets, schema.orders
    wallets = pd.read_sql(
        sa.select(
            w.c.wallet_id,
            w.c.address,
            w.c.country,
            w.c.created_at,
            tw.c.kind,
            tw.c.home_lat,
            tw.c.home_lon,
            tw.c.activity,
        )
        .select_from(w.outerjoin(tw, tw.c.wallet_id == w.c.wallet_id))
        .order_by(w.c.wallet_id),
        conn,
    )
    last_at = (
        sa.select(o.c.buyer_wallet_id.label("wallet_id"), sa.func.max(o.c.created_at).label("at"))
        .group_by(o.c.buyer_wallet_id)
        .subquery()
    )
    last_orders = pd.read_sql(
        sa.select(
            last_at.c.wallet_id,
            o.c.order_id,
            o.c.created_at.label("last_order_at"),
            o.c.geo_lat.label("last_geo_lat"),
            o.c.geo_lon.label("last_geo_lon"),
        ).join_from(
            last_at,
            o,
            sa.and_(o.c.buyer_wallet_id == last_at.c.wallet_id, o.c.created_at == last_at.c.at),
        ),
        conn,
    )
    methods = pd.read_sql(
        sa.select(o.c.buyer_wallet_id.label("wallet_id"), o.c.payment_method).distinct(), conn
    )
    t, tk = schema.ticket_transfers, schema.tickets
    resold = pd.read_sql(
        sa.select(t.c.from_wallet_id.label("wallet_id"), t.c.transferred_at, tk.c.minted_at)
        .join_from(t, tk, tk.c.ticket_id == t.c.ticket_id)
        .where(t.c.transfer_type == "resale"),
        conn,
    )
    max_ids = conn.execute(
        sa.select(
            *[
                sa.select(sa.func.max(schema.metadata.tables[name].c[column]))
                .scalar_subquery()
                .label(name)
                for name, column in ID_COLUMNS.items()
            ]
        )
    ).one()
    blacklisted = conn.execute(sa.select(schema.blacklisted_wallets.c.wallet_address)).scalars()
    pricing = pd.read_sql(sa.select(schema.demo_truth_pricing), conn)
    e = schema.events
    sold = (
        sa.select(tk.c.event_id, sa.func.count().label("sold")).group_by(tk.c.event_id).subquery()
    )
    events = pd.read_sql(
        sa.select(
            *[e.c[name] for name in EVENT_STATE_COLUMNS if name != "sold"],
            sa.func.coalesce(sold.c.sold, 0).label("sold"),
        )
        .select_from(e.outerjoin(sold, sold.c.event_id == e.c.event_id))
        .where(e.c.event_date > sa.select(sa.func.max(o.c.created_at)).scalar_subquery())
        .order_by(e.c.event_id),
        conn,
    )

    last_orders = last_orders.sort_values("order_id").drop_duplicates("wallet_id", keep="last")
    wallets = wallets.merge(last_orders.drop(columns="order_id"), on="wallet_id", how="left")
    bits = methods["payment_method"].map({m: 1 << i for i, m in enumerate(PAYMENT_METHODS)})
    masks = bits.fillna(0).astype(np.int64).groupby(methods["wallet_id"]).sum()
    wallets["payment_methods_mask"] = wallets["wallet_id"].map(masks).fillna(0).astype(np.int64)
    held = pd.to_datetime(resold["transferred_at"]) - pd.to_datetime(resold["minted_at"])
    quick = resold.loc[held < pd.Timedelta(seconds=_QUICK_RESALE_SECONDS), "wallet_id"]
    wallets["quick_resales"] = (
        wallets["wallet_id"].map(quick.value_counts()).fillna(0).astype(np.int64)
    )
    return TicketingState(
        wallets=wallets[list(STATE_WALLET_COLUMNS)],
        max_ids={name: int(value or 0) for name, value in max_ids._mapping.items()},
        blacklisted_addresses=frozenset(blacklisted),
        pricing_truth=pricing if len(pricing) else None,
        events=events,
    )


# ---------------------------------------------------------------- time


@dataclass(frozen=True)
class _Clock:
    origin: np.datetime64  # the first whole second at or after params.start
    horizon: int  # every generated time t satisfies 0 <= t < horizon

    @classmethod
    def of(cls, params: DemoParams) -> _Clock:
        start = pd.Timestamp(params.start).ceil("s")
        horizon = int((pd.Timestamp(params.end) - start) // pd.Timedelta(seconds=1))
        return cls(np.datetime64(start.to_datetime64(), "s"), max(horizon, 1))

    def stamp(self, seconds: np.ndarray) -> np.ndarray:
        """Relative seconds (NaN = missing) -> naive UTC datetime64[us]."""
        seconds = np.asarray(seconds, dtype=float)
        out = np.full(seconds.shape, np.datetime64("NaT"), dtype="datetime64[us]")
        known = ~np.isnan(seconds)
        out[known] = self.origin + np.floor(seconds[known]).astype(np.int64).astype("m8[s]")
        return out

    def seconds(self, stamps) -> np.ndarray:
        """Datetimes -> relative float seconds (NaT -> NaN)."""
        values = pd.to_datetime(pd.Series(stamps)).to_numpy(dtype="datetime64[us]")
        out = (values - self.origin.astype("datetime64[us]")) / np.timedelta64(1, "s")
        return np.floor(out.astype(float))


# ---------------------------------------------------------------- small helpers


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A bijective 64-bit mixer: per-wallet habits that survive across periods."""
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _habit(hashes: np.ndarray, salt: int) -> np.ndarray:
    """A uniform in [0, 1) fixed per wallet and salt."""
    mixed = _splitmix64(hashes ^ _splitmix64(np.array([salt], dtype=np.uint64)))
    return (mixed >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _random_addresses(rng: np.random.Generator, n: int) -> np.ndarray:
    raw = rng.integers(0, 256, size=(n, 20), dtype=np.uint8)
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    text = np.empty((n, 42), dtype=np.uint8)
    text[:, 0], text[:, 1] = ord("0"), ord("x")
    text[:, 2::2], text[:, 3::2] = digits[raw >> 4], digits[raw & 15]
    return text.view("S42").ravel().astype(str).astype(object)


def _address_hashes(addresses: np.ndarray) -> np.ndarray:
    """The first 16 hex digits of each address as a uint64 (habits derive from it)."""
    if len(addresses) == 0:
        return np.zeros(0, dtype=np.uint64)
    text = np.asarray(addresses).astype("S42").view(np.uint8).reshape(len(addresses), 42)
    chars = text[:, 2:18] | 0x20  # lower-case letters, digits unchanged
    nibbles = np.where(chars >= ord("a"), chars - ord("a") + 10, chars - ord("0"))
    nibbles = nibbles.astype(np.uint64) & np.uint64(15)
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    return np.bitwise_or.reduce(nibbles << shifts, axis=1)


def _haversine_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    lat1, lon1, lat2, lon2 = map(np.radians, (lat1, lon1, lat2, lon2))
    a = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0 * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def _weighted_choice(rng: np.random.Generator, weights: np.ndarray, n: int) -> np.ndarray:
    """n indices drawn with replacement, proportionally to weights."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    cumulative = np.cumsum(weights, dtype=float)
    return np.searchsorted(cumulative, rng.random(n) * cumulative[-1], side="right").clip(
        0, len(weights) - 1
    )


def _sample_without_replacement(rng: np.random.Generator, weights: np.ndarray, k: int):
    """k distinct indices, each drawn proportionally to its weight (Efraimidis-Spirakis)."""
    if k >= len(weights):
        return np.arange(len(weights))
    keys = np.log(rng.random(len(weights))) / weights
    return np.sort(np.argpartition(-keys, k)[:k])


def _sizes_summing_to(rng: np.random.Generator, total: int, base: int, extra_mean: float):
    """Group sizes base + Poisson(extra_mean), the last one trimmed so they sum to total."""
    if total <= 0:
        return np.zeros(0, dtype=np.int64)
    sizes = np.zeros(0, dtype=np.int64)
    while sizes.sum() < total:
        more = int(1.3 * (total - sizes.sum()) / (base + extra_mean)) + 4
        sizes = np.concatenate([sizes, base + rng.poisson(extra_mean, more)])
    cumulative = np.cumsum(sizes)
    last = int(np.searchsorted(cumulative, total))
    sizes = sizes[: last + 1].copy()
    sizes[-1] -= cumulative[last] - total
    return sizes


def _within_group_offsets(sizes: np.ndarray) -> np.ndarray:
    """For groups laid out one after another: each row's position inside its group."""
    starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
    return np.arange(int(sizes.sum())) - starts


def _jitter(rng: np.random.Generator, city: np.ndarray, km: float = 5.0):
    lat = CITY_LAT[city] + rng.normal(0, km / 111.0, len(city))
    lon = CITY_LON[city] + rng.normal(0, km / 111.0, len(city)) / np.cos(np.radians(CITY_LAT[city]))
    return lat, lon


def _join_text(*parts) -> pd.Series:
    """Element-wise concatenation of string / int arrays (and scalars) into a str Series."""
    arrays = [
        part if isinstance(part, str) else pc.cast(pa.array(np.asarray(part)), pa.string())
        for part in parts
    ]
    return pd.Series(pc.binary_join_element_wise(*arrays, ""), dtype="str")


def _text(labels, codes: np.ndarray | None = None) -> pd.Series:
    """A str Series from strings, or from category codes into a few labels (no copies)."""
    values = pa.array(np.asarray(labels, dtype=object), type=pa.string())
    if codes is not None:
        values = values.take(pa.array(np.asarray(codes, dtype=np.int64)))
    return pd.Series(values, dtype="str")


def _ips(octets: np.ndarray) -> pd.Series:
    a, b, c, d = (octets[:, i] for i in range(4))
    return _join_text(a, ".", b, ".", c, ".", d)


def _random_octets(rng: np.random.Generator, n: int, first: np.ndarray) -> np.ndarray:
    octets = rng.integers(0, 256, size=(n, 4))
    octets[:, 0] = first[rng.integers(0, len(first), n)]
    octets[:, 3] = rng.integers(1, 255, n)
    return octets


def _concat(parts: list[dict]) -> dict:
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


# ---------------------------------------------------------------- events


@dataclass
class _Events:
    type: np.ndarray
    city: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    base_price: np.ndarray
    capacity: np.ndarray
    opened: np.ndarray  # seconds; when the sale opened, possibly before the period
    event_date: np.ndarray  # seconds, may lie after the period
    created: np.ndarray
    popularity: np.ndarray
    conversion_shift: np.ndarray
    name: np.ndarray
    venue: np.ndarray
    # Events carried over from earlier periods: their id (-1 for this period's), tickets
    # sold before, and the factor of this period's price shift their orders still take
    # (a new event's base price already includes it).
    old_id: np.ndarray | None = None
    sold_before: np.ndarray | None = None
    price_factor: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.type)
        if self.old_id is None:
            self.old_id = np.full(n, -1, dtype=np.int64)
        if self.sold_before is None:
            self.sold_before = np.zeros(n, dtype=np.int64)
        if self.price_factor is None:
            self.price_factor = np.ones(n)
        self.sale_start = np.maximum(self.opened, 0)  # what the platform shows this period
        self.opened_now = self.opened >= 0

    @property
    def is_new(self) -> np.ndarray:
        return self.old_id < 0

    @classmethod
    def concat(cls, first: _Events, second: _Events, horizon: int) -> _Events:
        names = [f.name for f in fields(cls)]
        joined = cls(**{n: np.concatenate((getattr(first, n), getattr(second, n))) for n in names})
        joined.settle(horizon)
        return joined

    def settle(self, horizon: int) -> None:
        """Orders happen in [sale_start, limit). Demand over a whole sale is part flat,
        part ramping up linearly towards the event date; keep the period's slice of it."""
        self.limit = np.minimum(self.event_date, horizon)
        span = (self.event_date - self.opened).astype(float)
        self.low = (self.sale_start - self.opened) / span  # period slice, as window shares
        self.high = (self.limit - self.opened) / span
        self.flat_mass = _FLAT_DEMAND * (self.high - self.low)
        self.ramp_mass = (1 - _FLAT_DEMAND) * (self.high**2 - self.low**2)
        self.mass = self.popularity * (self.flat_mass + self.ramp_mass)


def _ongoing_events(frame: pd.DataFrame | None, clock: _Clock) -> _Events | None:
    """The events of earlier periods still on sale at the period's start, or None.

    Their latent popularity and conversion shift were never stored: each is drawn again
    from the event id, the same in every later period."""
    if frame is None or frame.empty:
        return None
    event_date = clock.seconds(frame["event_date"]).astype(np.int64)
    frame = frame[event_date > 0]
    if frame.empty:
        return None
    n = len(frame)
    ids = frame["event_id"].to_numpy(dtype=np.int64)
    hashes = _splitmix64(ids.astype(np.uint64))
    u1, u2, u3, u4 = (np.maximum(_habit(hashes, salt), 2.0**-53) for salt in (11, 12, 13, 14))
    normal_a = np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2)
    normal_b = np.sqrt(-2 * np.log(u3)) * np.cos(2 * np.pi * u4)
    events = _Events(
        type=frame["event_type"].map({t: i for i, t in enumerate(EVENT_TYPES)}).to_numpy(np.int64),
        city=frame["city"].map({c: i for i, c in enumerate(CITY_NAMES)}).to_numpy(np.int64),
        lat=frame["venue_lat"].to_numpy(float),
        lon=frame["venue_lon"].to_numpy(float),
        base_price=frame["base_price"].to_numpy(float),
        capacity=frame["capacity"].to_numpy(np.int64),
        opened=clock.seconds(frame["sale_start"]).astype(np.int64),
        event_date=clock.seconds(frame["event_date"]).astype(np.int64),
        created=clock.seconds(frame["created_at"]).astype(np.int64),
        popularity=np.exp(_POPULARITY_SD * normal_a),
        conversion_shift=_EVENT_CONVERSION_SD * normal_b,
        name=frame["name"].to_numpy(object),
        venue=frame["venue"].to_numpy(object),
        old_id=ids,
        sold_before=frame["sold"].to_numpy(np.int64),
        price_factor=np.ones(n),
    )
    events.settle(clock.horizon)
    return events


def _make_events(
    rng: np.random.Generator,
    params: DemoParams,
    clock: _Clock,
    n: int,
    already_open: bool = True,
) -> _Events:
    """`n` new events; with `already_open`, some sales opened before the period began (a
    new world), else they all open in it (earlier ones are carried over)."""
    kind = rng.choice(len(EVENT_TYPES), n, p=_EVENT_TYPE_SHARE)
    city = rng.choice(N_CITIES, n, p=CITY_SHARE)
    horizon = clock.horizon
    window = (
        np.round(np.clip(_SALE_WINDOW_DAYS[kind] * np.exp(rng.normal(0, 0.5, n)), 1.0, 180.0) * 24)
        * HOUR
    )
    # Sales open all through the period, and some were already open when it began (their
    # date at least a day into it), so demand is steady from the first day.
    opened = np.floor(rng.uniform(-(window - DAY) if already_open else 0, horizon))
    # Most sales open at 10:00 local time: the scalpers' rush hour.
    ten_local = np.floor(opened / DAY) * DAY + np.mod(10 - CITY_LON[city] / 15, 24) * HOUR
    snap = (rng.random(n) < 0.7) & (opened >= 0) & (ten_local >= 0) & (ten_local < horizon - HOUR)
    opened = np.floor(np.where(snap, ten_local, opened)).clip(None, horizon - 1)
    base_price = np.round(
        np.maximum(
            5.0,
            _BASE_PRICE_MEDIAN[kind]
            * np.exp(rng.normal(0, _BASE_PRICE_SD, n))
            * params.factor("price"),
        ),
        2,
    )
    capacity = np.round(_CAPACITY_MEDIAN[kind] * np.exp(rng.normal(0, 0.5, n)), -1).astype(int)
    created = np.maximum(0.0, opened - np.floor(rng.uniform(0, 5 * DAY, n)))
    events = _Events(
        type=kind,
        city=city,
        lat=CITY_LAT[city] + rng.normal(0, 0.03, n),
        lon=CITY_LON[city] + rng.normal(0, 0.03, n),
        base_price=base_price,
        capacity=np.maximum(capacity, 50),
        opened=opened.astype(np.int64),
        event_date=(opened + window).astype(np.int64),
        created=created.astype(np.int64),
        popularity=np.exp(rng.normal(0, _POPULARITY_SD, n)),
        conversion_shift=rng.normal(0, _EVENT_CONVERSION_SD, n),
        name=_event_names(rng, kind, city),
        venue=(CITY_NAMES[city] + " " + _VENUE_KINDS[kind, rng.integers(0, 3, n)]),
    )
    events.settle(horizon)
    return events


def _event_names(rng: np.random.Generator, kind: np.ndarray, city: np.ndarray) -> np.ndarray:
    n = len(kind)

    def pick(words: np.ndarray) -> np.ndarray:
        return words[rng.integers(0, len(words), n)]

    other_city = (city + rng.integers(1, N_CITIES, n)) % N_CITIES
    by_type = [
        pick(_BAND_WORDS[0]) + " " + pick(_BAND_WORDS[1]) + " Live",
        CITY_NAMES[city]
        + " "
        + pick(_TEAM_WORDS)
        + " vs "
        + CITY_NAMES[other_city]
        + " "
        + pick(_TEAM_WORDS),
        pick(_PLAYS) + " (" + CITY_NAMES[city] + ")",
        CITY_NAMES[city] + " " + pick(_FESTIVAL_WORDS) + " Festival",
        pick(_CONFERENCE_TOPICS) + " Summit " + CITY_NAMES[city],
    ]
    return np.choose(kind, by_type)


def _ramp_times(
    rng: np.random.Generator, events: _Events, event: np.ndarray, lon: np.ndarray, daily: bool
) -> np.ndarray:
    """Order times inside each event's sale window, denser towards the event date, and
    (daily=True) following the local daily cycle by rejection."""
    opened = events.opened[event].astype(float)
    span = (events.event_date[event] - events.opened[event]).astype(float)
    low, high = events.low[event], events.high[event]
    flat, ramp = events.flat_mass[event], events.ramp_mass[event]
    flat_share = flat / (flat + ramp)

    def draw(rows: np.ndarray) -> np.ndarray:
        u = rng.random(len(rows))
        lo, hi = low[rows], high[rows]
        on_ramp = rng.random(len(rows)) >= flat_share[rows]
        share = np.where(on_ramp, np.sqrt(lo**2 + u * (hi**2 - lo**2)), lo + u * (hi - lo))
        return opened[rows] + span[rows] * share

    times = draw(np.arange(len(event)))
    if daily:
        pending = np.arange(len(event))
        for _ in range(8):
            hour = np.mod(times[pending] / HOUR + lon[pending] / 15, 24).astype(int)
            pending = pending[rng.random(len(pending)) >= _HOURLY[hour]]
            if not len(pending):
                break
            times[pending] = draw(pending)
    first, last = events.sale_start[event], events.limit[event] - 1
    return np.clip(np.floor(times), first, last).astype(np.int64)


# ---------------------------------------------------------------- wallets


class _Wallets:
    """Every wallet of the world: the existing ones (from the state) and this period's."""

    def __init__(self) -> None:
        self.old_id = np.zeros(0, dtype=np.int64)  # id in the database, -1 when new
        self.address = np.zeros(0, dtype=object)
        self.country = np.zeros(0, dtype=object)
        self.kind = np.zeros(0, dtype=np.int8)
        self.home = np.zeros(0, dtype=np.int64)  # city index
        self.home_lat = np.zeros(0)
        self.home_lon = np.zeros(0)
        self.activity = np.zeros(0)
        self.created = np.zeros(0)  # seconds; NaN for new wallets until settled
        self.last_t = np.zeros(0)
        self.last_lat = np.zeros(0)
        self.last_lon = np.zeros(0)
        self.method_mask = np.zeros(0, dtype=np.int64)
        self.quick_resales = np.zeros(0, dtype=np.int64)
        self.hash = np.zeros(0, dtype=np.uint64)

    @classmethod
    def from_state(cls, frame: pd.DataFrame, clock: _Clock) -> _Wallets:
        wallets = cls()
        if frame is None or frame.empty:
            return wallets
        n = len(frame)
        kind = frame["kind"].map({k: i for i, k in enumerate(KINDS)}).fillna(NORMAL)
        lat = pd.to_numeric(frame["home_lat"], errors="coerce").to_numpy(dtype=float)
        lon = pd.to_numeric(frame["home_lon"], errors="coerce").to_numpy(dtype=float)
        # A wallet without truth (inserted by someone else) lives in the first city.
        lat, lon = (
            np.where(np.isnan(lat), CITY_LAT[0], lat),
            np.where(np.isnan(lon), CITY_LON[0], lon),
        )
        home = np.argmin(
            _haversine_km(lat[:, None], lon[:, None], CITY_LAT[None, :], CITY_LON[None, :]), axis=1
        )
        activity = pd.to_numeric(frame["activity"], errors="coerce").fillna(1.0)

        def column(name: str, default: float) -> np.ndarray:
            if name not in frame:
                return np.full(n, default)
            return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)

        wallets.old_id = frame["wallet_id"].to_numpy(dtype=np.int64)
        wallets.address = frame["address"].astype(object).to_numpy()
        wallets.country = frame["country"].astype(object).to_numpy()
        wallets.kind = kind.to_numpy(dtype=np.int8)
        wallets.home, wallets.home_lat, wallets.home_lon = home, lat, lon
        wallets.activity = activity.to_numpy(dtype=float)
        wallets.created = clock.seconds(frame["created_at"])
        wallets.last_t = (
            clock.seconds(frame["last_order_at"])
            if "last_order_at" in frame
            else np.full(n, np.nan)
        )
        wallets.last_lat = column("last_geo_lat", np.nan)
        wallets.last_lon = column("last_geo_lon", np.nan)
        wallets.method_mask = np.nan_to_num(column("payment_methods_mask", 0)).astype(np.int64)
        wallets.quick_resales = np.nan_to_num(column("quick_resales", 0)).astype(np.int64)
        wallets.hash = _address_hashes(wallets.address)
        return wallets

    def __len__(self) -> int:
        return len(self.kind)

    @property
    def is_new(self) -> np.ndarray:
        return self.old_id < 0

    def add(self, rng: np.random.Generator, kind: int, home: np.ndarray, activity: np.ndarray):
        """Append len(home) new wallets of one kind; returns their indices."""
        n = len(home)
        first = len(self)
        address = _random_addresses(rng, n)
        country = CITY_COUNTRIES[home].copy()
        # Some people hold a wallet registered elsewhere (expats, exchanges).
        abroad = rng.random(n) < (0.05 if kind == NORMAL else 0.3)
        country[abroad] = CITY_COUNTRIES[rng.integers(0, N_CITIES, int(abroad.sum()))]
        lat, lon = _jitter(rng, home, km=8.0)
        nan = np.full(n, np.nan)
        self.old_id = np.concatenate([self.old_id, np.full(n, -1, dtype=np.int64)])
        self.address = np.concatenate([self.address, address])
        self.country = np.concatenate([self.country, country])
        self.kind = np.concatenate([self.kind, np.full(n, kind, dtype=np.int8)])
        self.home = np.concatenate([self.home, home])
        self.home_lat = np.concatenate([self.home_lat, lat])
        self.home_lon = np.concatenate([self.home_lon, lon])
        self.activity = np.concatenate([self.activity, np.asarray(activity, dtype=float)])
        self.created = np.concatenate([self.created, nan])
        self.last_t = np.concatenate([self.last_t, nan])
        self.last_lat = np.concatenate([self.last_lat, nan])
        self.last_lon = np.concatenate([self.last_lon, nan])
        self.method_mask = np.concatenate([self.method_mask, np.zeros(n, dtype=np.int64)])
        self.quick_resales = np.concatenate([self.quick_resales, np.zeros(n, dtype=np.int64)])
        self.hash = np.concatenate([self.hash, _address_hashes(address)])
        return np.arange(first, first + n)

    def add_normal(self, rng: np.random.Generator, n: int) -> np.ndarray:
        home = rng.choice(N_CITIES, n, p=CITY_SHARE)
        return self.add(rng, NORMAL, home, np.exp(rng.normal(0, 1.0, n)))

    def settle_creation(self, rng: np.random.Generator, orders: dict, gifts: dict, clock: _Clock):
        """New wallets were created some time before their first order or received gift:
        normal ones months to years (a few brand new), bots hours, stolen-payment days."""
        first = np.full(len(self), np.inf)
        np.minimum.at(first, orders["buyer"], orders["t"].astype(float))
        np.minimum.at(first, gifts["to"], gifts["t"].astype(float))
        new = np.flatnonzero(self.is_new)
        kind = self.kind[new]
        n = len(new)
        veteran = np.exp(rng.normal(np.log(250.0), 0.9, n)).clip(1.0, 6 * 365.0) * DAY
        newcomer = np.exp(rng.normal(np.log(5.0), 1.0, n)).clip(0.01, 60.0) * DAY
        age = np.where(rng.random(n) < 0.15, newcomer, veteran)
        age = np.where(
            kind == BOT, np.exp(rng.normal(np.log(12.0), 0.9, n)).clip(1, 96) * HOUR, age
        )
        age = np.where(
            kind == STOLEN, np.exp(rng.normal(np.log(8.0), 0.7, n)).clip(1, 60) * DAY, age
        )
        reference = first[new]
        idle = ~np.isfinite(reference)
        reference[idle] = rng.uniform(0, clock.horizon, int(idle.sum()))
        self.created[new] = np.floor(reference - age)


# ---------------------------------------------------------------- primary orders


def _normal_orders(rng: np.random.Generator, events: _Events, wallets: _Wallets, n: int) -> dict:
    """Normal wallets buy by activity, mostly for events near home, from home, with their
    habitual payment methods; some buy a second ticket minutes later."""
    pool = np.flatnonzero(wallets.kind == NORMAL)
    n_follow = round(_FOLLOW_UP_SHARE * n) if n > 1 else 0
    n_anchor = n - n_follow
    buyer = pool[_weighted_choice(rng, wallets.activity[pool], n_anchor)]
    home = wallets.home[buyer]
    travel = rng.random(n_anchor) < _TRAVEL_SHARE
    city = np.where(travel, rng.choice(N_CITIES, n_anchor, p=CITY_SHARE), home)
    event = _events_near(rng, events, home)
    t = _ramp_times(rng, events, event, CITY_LON[city], daily=True)
    lat, lon = _jitter(rng, city, km=4.0)
    lat = np.where(travel, lat, wallets.home_lat[buyer] + rng.normal(0, 0.02, n_anchor))
    lon = np.where(travel, lon, wallets.home_lon[buyer] + rng.normal(0, 0.03, n_anchor))
    method = _habitual_methods(rng, wallets, buyer)
    octets = _home_octets(rng, wallets, buyer)
    octets[travel] = _random_octets(rng, int(travel.sum()), _RESIDENTIAL_OCTETS)

    source = rng.integers(0, n_anchor, n_follow)
    gap = 20 + np.floor(rng.exponential(180, n_follow)).astype(np.int64)
    follow_t = np.minimum(t[source] + gap, events.limit[event[source]] - 1)
    same_method = rng.random(n_follow) < 0.8
    follow_method = np.where(
        same_method, method[source], _habitual_methods(rng, wallets, buyer[source])
    )
    return {
        "buyer": np.concatenate([buyer, buyer[source]]),
        "event": np.concatenate([event, event[source]]),
        "t": np.concatenate([t, follow_t]),
        "method": np.concatenate([method, follow_method]),
        "city": np.concatenate([city, city[source]]),
        "lat": np.concatenate([lat, lat[source] + rng.normal(0, 0.002, n_follow)]),
        "lon": np.concatenate([lon, lon[source] + rng.normal(0, 0.002, n_follow)]),
        "octets": np.concatenate([octets, octets[source]]),
        "session": np.full(n, -1, dtype=np.int64),
    }


def _events_near(rng: np.random.Generator, events: _Events, home: np.ndarray) -> np.ndarray:
    """Per home city: events by popularity x in-period demand x closeness."""
    distance = _haversine_km(
        CITY_LAT[:, None], CITY_LON[:, None], events.lat[None, :], events.lon[None, :]
    )
    weight = events.mass[None, :] * (np.exp(-distance / 800.0) + 0.03)
    chosen = np.empty(len(home), dtype=np.int64)
    order = np.argsort(home, kind="stable")
    bounds = np.searchsorted(home[order], np.arange(N_CITIES + 1))
    for city in range(N_CITIES):
        rows = order[bounds[city] : bounds[city + 1]]
        if len(rows):
            chosen[rows] = _weighted_choice(rng, weight[city], len(rows))
    return chosen


def _habitual_methods(rng: np.random.Generator, wallets: _Wallets, buyer: np.ndarray):
    """One or two habitual payment methods per wallet, fixed by its address; bots favour
    crypto wallets and credit cards; everyone strays now and then."""
    h = wallets.hash[buyer]
    first_choice = np.searchsorted(np.cumsum(_NORMAL_METHOD_SHARE), _habit(h, 1) * 0.999999)
    bot = wallets.kind[buyer] == BOT
    primary = np.where(bot, np.where(_habit(h, 1) < 0.6, _CRYPTO, _CREDIT_CARD), first_choice)
    has_second = _habit(h, 2) < np.where(bot, 0.3, 0.45)
    second = (primary + 1 + np.floor(_habit(h, 3) * 5).astype(np.int64)) % len(PAYMENT_METHODS)
    method = np.where(has_second & (rng.random(len(buyer)) < 0.25), second, primary)
    stray = rng.random(len(buyer)) < 0.01
    method[stray] = rng.integers(0, len(PAYMENT_METHODS), int(stray.sum()))
    return method.astype(np.int64)


def _home_octets(rng: np.random.Generator, wallets: _Wallets, buyer: np.ndarray) -> np.ndarray:
    """A stable residential address per wallet; the last octet changes now and then."""
    h = wallets.hash[buyer]
    octets = np.empty((len(buyer), 4), dtype=np.int64)
    octets[:, 0] = _RESIDENTIAL_OCTETS[
        np.floor(_habit(h, 4) * len(_RESIDENTIAL_OCTETS)).astype(np.int64)
    ]
    octets[:, 1] = np.floor(_habit(h, 5) * 256)
    octets[:, 2] = np.floor(_habit(h, 6) * 256)
    octets[:, 3] = 1 + np.floor(_habit(h, 7) * 254)
    dynamic = rng.random(len(buyer)) < 0.25
    octets[dynamic, 3] = rng.integers(1, 255, int(dynamic.sum()))
    return octets


@dataclass
class _Sessions:
    """Bursts of orders by one fraudulent wallet for one event."""

    sizes: np.ndarray
    event: np.ndarray
    start: np.ndarray
    wallet: np.ndarray
    n_new_wallets: int


def _assign_sessions(
    rng: np.random.Generator, start: np.ndarray, jitter: float, extra_mean: float
) -> tuple[np.ndarray, int]:
    """Give consecutive sessions (in time, with jitter) to the same wallet, so a wallet
    lives a short while: 1 + Poisson(extra_mean) sessions each."""
    n = len(start)
    order = np.argsort(start + rng.normal(0, jitter, n), kind="stable")
    per_wallet = _sizes_summing_to(rng, n, 1, extra_mean)
    local = np.empty(n, dtype=np.int64)
    local[order] = np.repeat(np.arange(len(per_wallet)), per_wallet)
    return local, len(per_wallet)


def _bot_sessions(
    rng: np.random.Generator, events: _Events, wallets: _Wallets, n_orders: int
) -> _Sessions:
    """Scalper bots camp on popular sales and buy in bursts just after they open."""
    sizes = _sizes_summing_to(rng, n_orders, 1, 5.0)
    n = len(sizes)
    # Only sales that open during the period have an opening rush to camp on.
    weight = events.popularity**1.5 * (events.opened_now if events.opened_now.any() else 1)
    event = _weighted_choice(rng, weight, n)
    room = (events.limit[event] - events.sale_start[event]).astype(float)
    offset = rng.exponential(1.5 * HOUR, n)
    late = offset > 0.5 * room
    offset[late] = rng.uniform(0, 0.5, int(late.sum())) * room[late]
    start = events.sale_start[event] + np.floor(offset).astype(np.int64)
    wallet = np.empty(n, dtype=np.int64)
    # In an append, some traffic comes from bots that survived the last period; the rest
    # from fresh ones.
    veterans = np.flatnonzero(wallets.kind == BOT)
    reuse = (rng.random(n) < 0.2) if len(veterans) else np.zeros(n, dtype=bool)
    wallet[reuse] = veterans[_weighted_choice(rng, wallets.activity[veterans], int(reuse.sum()))]
    fresh = np.flatnonzero(~reuse)
    local, n_bots = _assign_sessions(rng, start[fresh].astype(float), 0.7 * DAY, 2.0)
    homes = rng.choice(N_CITIES, n_bots, p=CITY_SHARE)
    wallet[fresh] = wallets.add(rng, BOT, homes, np.bincount(local, minlength=n_bots))[local]
    return _Sessions(sizes, event, start, wallet, n_bots)


def _stolen_sessions(
    rng: np.random.Generator, events: _Events, wallets: _Wallets, n_orders: int
) -> _Sessions:
    """Stolen-payment wallets place short sessions anywhere in a sale, card after card."""
    sizes = _sizes_summing_to(rng, n_orders, 2, 1.5)
    n = len(sizes)
    event = _weighted_choice(rng, events.mass, n)
    start = _ramp_times(rng, events, event, np.zeros(n), daily=False)
    local, n_wallets = _assign_sessions(rng, start.astype(float), 2 * DAY, 0.4)
    new = wallets.add(
        rng,
        STOLEN,
        rng.choice(N_CITIES, n_wallets, p=CITY_SHARE),
        np.bincount(local, minlength=n_wallets),
    )
    return _Sessions(sizes, event, start, new[local], n_wallets)


def _session_times(
    rng: np.random.Generator, events: _Events, sessions: _Sessions, mean_gap: float, min_gap: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per order: its session, its position in the session and its time."""
    session = np.repeat(np.arange(len(sessions.sizes)), sessions.sizes)
    position = _within_group_offsets(sessions.sizes)
    gaps = min_gap + np.floor(rng.exponential(mean_gap, len(session))).astype(np.int64)
    gaps[position == 0] = 0
    elapsed = np.cumsum(gaps)
    elapsed -= elapsed[np.repeat(np.cumsum(sessions.sizes) - sessions.sizes, sessions.sizes)]
    event = sessions.event[session]
    t = np.minimum(sessions.start[session] + elapsed, events.limit[event] - 1)
    return session, position, t


def _bot_orders(
    rng: np.random.Generator, events: _Events, wallets: _Wallets, sessions: _Sessions
) -> dict:
    session, _, t = _session_times(rng, events, sessions, 40.0, 3)
    n = len(session)
    buyer = sessions.wallet[session]
    # Bots run from rented servers; a third of their sessions go through a proxy elsewhere.
    proxy = rng.random(len(sessions.sizes)) < 0.3
    session_city = np.where(
        proxy, rng.choice(N_CITIES, len(proxy), p=CITY_SHARE), wallets.home[sessions.wallet]
    )
    city = session_city[session]
    lat, lon = _jitter(rng, city, km=3.0)
    session_octets = _random_octets(rng, len(sessions.sizes), _HOSTING_OCTETS)
    octets = session_octets[session].copy()
    octets[:, 3] = rng.integers(1, 255, n)  # rotating through a rented block
    return {
        "buyer": buyer,
        "event": sessions.event[session],
        "t": t,
        "method": _habitual_methods(rng, wallets, buyer),
        "city": city,
        "lat": lat,
        "lon": lon,
        "octets": octets,
        "session": session,
    }


def _stolen_orders(
    rng: np.random.Generator, events: _Events, wallets: _Wallets, sessions: _Sessions
) -> dict:
    session, position, t = _session_times(rng, events, sessions, 150.0, 10)
    n = len(session)
    # A different card each order (a step coprime with 6 never repeats within 6 orders),
    # through residential proxies all over the world.
    first = rng.integers(0, len(PAYMENT_METHODS), len(sessions.sizes))
    step = rng.choice([1, 5], len(sessions.sizes))
    method = (first[session] + position * step[session]) % len(PAYMENT_METHODS)
    city = rng.integers(0, N_CITIES, n)
    lat, lon = _jitter(rng, city, km=10.0)
    return {
        "buyer": sessions.wallet[session],
        "event": sessions.event[session],
        "t": t,
        "method": method.astype(np.int64),
        "city": city,
        "lat": lat,
        "lon": lon,
        "octets": _random_octets(rng, n, _RESIDENTIAL_OCTETS),
        "session": np.full(n, -1, dtype=np.int64),
    }


def _conversion_table(stored: pd.DataFrame | None) -> np.ndarray:
    """The world's true conversions: as stored by period 0, else this module's table."""
    table = TRUE_CONVERSION.copy()
    if stored is None or stored.empty:
        return table
    for row in stored.itertuples(index=False):  # 20 rows
        if row.event_type in EVENT_TYPES and row.arm in ARMS:
            table[EVENT_TYPES.index(row.event_type), ARMS.index(row.arm)] = float(row.conversion)
    return table


def _price_and_convert(
    rng: np.random.Generator, events: _Events, conversion: np.ndarray, orders: dict, clock: _Clock
) -> None:
    """Each primary order is an offer: a strategy sets the price, the buyer takes it or not."""
    n = len(orders["t"])
    event = orders["event"]
    arm = rng.choice(len(ARMS), n, p=_ARM_SHARE)
    low, high = _ARM_MULTIPLIER[arm, 0], _ARM_MULTIPLIER[arm, 1]
    multiplier = low + (high - low) * rng.random(n)
    base = events.base_price[event]
    base = np.round(base * events.price_factor[event], 2)
    price = np.round(base * multiplier, 2)
    price[arm == 0] = base[arm == 0]
    # ML prices never round to exactly the base price, which would read as baseline.
    tie = (arm == 3) & (price == base)
    price[tie] = np.round(base[tie] + np.where(multiplier[tie] >= 1, 0.01, -0.01), 2)
    logit = np.log(conversion / (1 - conversion))[events.type[event], arm]
    p = 1 / (1 + np.exp(-(logit + events.conversion_shift[event])))
    status = np.where(rng.random(n) < p, COMPLETED, FAILED)
    _settle_status(rng, orders["t"], status, clock)
    orders.update(
        arm=arm.astype(np.int64),
        price=price,
        face=price,
        conversion=p,
        status=status.astype(np.int64),
        seller=np.full(n, -1, dtype=np.int64),
        ticket=np.full(n, -1, dtype=np.int64),
        resale=np.zeros(n, dtype=bool),
    )


def _settle_status(rng: np.random.Generator, t: np.ndarray, status: np.ndarray, clock: _Clock):
    """Orders in the period's last ten minutes may still be pending; a few get refunded."""
    n = len(t)
    pending = (t >= clock.horizon - 600) & (rng.random(n) < 0.7)
    status[pending] = PENDING
    refunded = (status == COMPLETED) & (rng.random(n) < _REFUND_SHARE)
    status[refunded] = REFUNDED


def _completion_times(rng: np.random.Generator, t: np.ndarray, status: np.ndarray, clock: _Clock):
    done = (status == COMPLETED) | (status == REFUNDED)
    completed = np.minimum(t + 2 + np.floor(rng.exponential(15, len(t))), clock.horizon - 1)
    return np.where(done, completed, np.nan)


# ---------------------------------------------------------------- tickets, resales, gifts


def _mint_tickets(rng: np.random.Generator, primary: dict, clock: _Clock, first: int) -> dict:
    """One ticket per completed (or later refunded) primary order, minted on completion;
    tickets are numbered from `first` in minting order."""
    primary["completed"] = _completion_times(rng, primary["t"], primary["status"], clock)
    rows = np.flatnonzero(~np.isnan(primary["completed"]))
    minted = primary["completed"][rows].astype(np.int64)
    rows = rows[np.lexsort((rows, minted))]
    primary["ticket"][rows] = first + np.arange(len(rows))
    return {
        "order": rows,
        "event": primary["event"][rows],
        "buyer": primary["buyer"][rows],
        "owner": primary["buyer"][rows].copy(),
        "face": primary["price"][rows],
        "minted": primary["completed"][rows].astype(np.int64),
        "refunded": primary["status"][rows] == REFUNDED,
    }


def _resales(
    rng: np.random.Generator,
    events: _Events,
    wallets: _Wallets,
    tickets: dict,
    n: int,
    clock: _Clock,
) -> tuple[dict, np.ndarray]:
    """Bots flip most of their tickets within hours at 1.5-3x; people sometimes resell
    days later near face value. Buyers are normal wallets."""
    room = events.limit[tickets["event"]] - 1 - tickets["minted"]
    candidates = np.flatnonzero(~tickets["refunded"] & (room >= 60))
    seller_kind = wallets.kind[tickets["buyer"][candidates]]
    weight = np.where(seller_kind == BOT, 40.0, 1.0)
    chosen = candidates[_sample_without_replacement(rng, weight, min(n, len(candidates)))]
    k = len(chosen)
    seller = tickets["buyer"][chosen]
    bot = wallets.kind[seller] == BOT
    wish = np.where(bot, 600 + rng.exponential(8 * HOUR, k), HOUR + rng.exponential(5 * DAY, k))
    hold = np.floor(np.minimum(wish, room[chosen] * rng.uniform(0.2, 0.95, k))).astype(np.int64)
    t = tickets["minted"][chosen] + hold
    markup = np.where(bot, rng.uniform(1.5, 3.0, k), rng.uniform(0.8, 1.3, k))
    pool = np.flatnonzero(wallets.kind == NORMAL)
    pick = _weighted_choice(rng, wallets.activity[pool], k)
    buyer = pool[pick]
    buyer = np.where(buyer == seller, pool[(pick + 1) % len(pool)], buyer)
    status = np.where(rng.random(k) < RESALE_COMPLETION, COMPLETED, FAILED)
    _settle_status(rng, t, status, clock)
    status[status == REFUNDED] = COMPLETED  # resales are final
    city = wallets.home[buyer]
    event = tickets["event"][chosen]
    resales = {
        "buyer": buyer,
        "event": event,
        "t": t,
        "method": _habitual_methods(rng, wallets, buyer),
        "city": city,
        "lat": wallets.home_lat[buyer] + rng.normal(0, 0.02, k),
        "lon": wallets.home_lon[buyer] + rng.normal(0, 0.03, k),
        "octets": _home_octets(rng, wallets, buyer),
        "session": np.full(k, -1, dtype=np.int64),
        "arm": np.full(k, _RESALE_INDEX, dtype=np.int64),
        "price": np.round(tickets["face"][chosen] * markup, 2),
        "face": tickets["face"][chosen],
        "conversion": np.full(k, RESALE_COMPLETION),
        "status": status.astype(np.int64),
        "seller": seller,
        "ticket": np.where(status == COMPLETED, chosen, -1),
        "resale": np.ones(k, dtype=bool),
    }
    resales["completed"] = _completion_times(rng, t, status, clock)
    transferred = resales["ticket"] >= 0
    tickets["owner"][chosen[transferred]] = buyer[transferred]
    return resales, chosen


def _gifts(
    rng: np.random.Generator, events: _Events, wallets: _Wallets, tickets: dict, resold: np.ndarray
) -> dict:
    """People pass some tickets on to someone from their own city: the transfer graph."""
    room = events.limit[tickets["event"]] - 1 - tickets["minted"]
    eligible = ~tickets["refunded"] & (room >= 60) & (wallets.kind[tickets["owner"]] == NORMAL)
    eligible[resold] = False
    candidates = np.flatnonzero(eligible)
    k = min(len(candidates), round(_GIFT_SHARE * len(tickets["minted"])))
    chosen = np.sort(rng.choice(candidates, k, replace=False)) if k else candidates[:0]
    giver = tickets["owner"][chosen]
    pool = np.flatnonzero(wallets.kind == NORMAL)
    pool = pool[np.argsort(wallets.home[pool], kind="stable")]
    bounds = np.searchsorted(wallets.home[pool], np.arange(N_CITIES + 1))
    city = wallets.home[giver]
    count = bounds[city + 1] - bounds[city]
    pick = np.floor(rng.random(k) * count).astype(np.int64)
    to = pool[bounds[city] + pick]
    clash = to == giver
    to[clash] = pool[bounds[city[clash]] + (pick[clash] + 1) % count[clash]]
    keep = to != giver  # someone alone in a city keeps the ticket
    chosen, giver, to = chosen[keep], giver[keep], to[keep]
    t = tickets["minted"][chosen] + np.floor(
        room[chosen] * rng.uniform(0.05, 0.9, len(chosen))
    ).astype(np.int64)
    tickets["owner"][chosen] = to
    return {"ticket": chosen, "from": giver, "to": to, "t": t}


def _transfers(
    primary: dict, resales: dict, gifts: dict, tickets: dict, order_ids: np.ndarray, n_primary: int
) -> dict:
    """Completed resales and gifts, in the order they happened."""
    sold = np.flatnonzero(resales["ticket"] >= 0)
    order = np.concatenate([order_ids[n_primary + sold], np.full(len(gifts["t"]), -1)])
    transfers = {
        "ticket": np.concatenate([resales["ticket"][sold], gifts["ticket"]]),
        "order": order,
        "from": np.concatenate([resales["seller"][sold], gifts["from"]]),
        "to": np.concatenate([resales["buyer"][sold], gifts["to"]]),
        "resale": np.concatenate([np.ones(len(sold), bool), np.zeros(len(gifts["t"]), bool)]),
        "price": np.concatenate([resales["price"][sold], np.full(len(gifts["t"]), np.nan)]),
        "t": np.concatenate([resales["completed"][sold], gifts["t"].astype(float)]),
        "minted": np.concatenate(
            [tickets["minted"][resales["ticket"][sold]], tickets["minted"][gifts["ticket"]]]
        ),
    }
    rank = np.lexsort((np.arange(len(transfers["t"])), transfers["t"]))
    return {k: v[rank] for k, v in transfers.items()}


# ---------------------------------------------------------------- fraud truth and labels


def _fraud_features(wallets: _Wallets, orders: dict, transfers: dict) -> dict:
    """What each order's features could see before it: the buyer's last hour, age, payment
    methods and travel speed; the markup of a resale and the actor's quick flips.

    History before this period comes from the state (methods, last order, flips); only the
    hour before an append's first order is not looked at, a negligible loss."""
    n = len(orders["t"])
    position = np.arange(n)
    order = np.lexsort((position, orders["t"], orders["buyer"]))
    buyer, t = orders["buyer"][order], orders["t"][order]
    starts_group = np.r_[True, buyer[1:] != buyer[:-1]] if n else np.zeros(0, bool)
    group_start = np.maximum.accumulate(np.where(starts_group, position, 0))
    key = buyer.astype(np.int64) * 2**34 + t
    velocity = position - np.searchsorted(key, key - HOUR, side="left")

    age_days = (t - wallets.created[buyer]) / DAY

    method = orders["method"][order]
    known = (wallets.method_mask[buyer] >> method) & 1
    pair = buyer.astype(np.int64) * 8 + method
    by_pair = np.lexsort((position, pair))
    first_of_pair = by_pair[np.r_[True, pair[by_pair][1:] != pair[by_pair][:-1]]] if n else by_pair
    fresh = np.zeros(n, dtype=np.int64)
    fresh[first_of_pair] = 1
    fresh &= 1 - known
    running = np.cumsum(fresh)
    new_before = running - fresh - (running[group_start] - fresh[group_start])
    methods_before = _POPCOUNT[wallets.method_mask[buyer] & 63] + new_before

    lat, lon = orders["lat"][order], orders["lon"][order]
    prev_t = np.r_[np.nan, t[:-1].astype(float)]
    prev_lat, prev_lon = np.r_[np.nan, lat[:-1]], np.r_[np.nan, lon[:-1]]
    prev_t[starts_group] = wallets.last_t[buyer[starts_group]]
    prev_lat[starts_group] = wallets.last_lat[buyer[starts_group]]
    prev_lon[starts_group] = wallets.last_lon[buyer[starts_group]]
    hours = np.maximum(t - prev_t, 60.0) / HOUR
    speed = np.nan_to_num(_haversine_km(prev_lat, prev_lon, lat, lon) / hours)

    unsort = np.empty_like(order)
    unsort[order] = position
    features = {
        "velocity_1h": velocity[unsort],
        "age_days": age_days[unsort],
        "methods_before": methods_before[unsort],
        "speed_kmh": speed[unsort],
    }
    actor = np.where(orders["resale"], orders["seller"], orders["buyer"])
    quick = transfers["resale"] & (transfers["t"] - transfers["minted"] < _QUICK_RESALE_SECONDS)
    flips = np.sort(
        transfers["from"][quick].astype(np.int64) * 2**34 + transfers["t"][quick].astype(np.int64)
    )
    features["quick_resales"] = (
        np.searchsorted(flips, actor.astype(np.int64) * 2**34 + orders["t"], side="left")
        - np.searchsorted(flips, actor.astype(np.int64) * 2**34, side="left")
        + wallets.quick_resales[actor]
    )
    face = np.full(n, np.nan)
    resale = orders["resale"]
    face[resale] = orders["face"][resale]
    features["markup"] = np.where(resale, orders["price"] / face, 1.0)
    features["resale"] = resale
    features["actor"] = actor
    features["actor_kind"] = wallets.kind[actor]
    return features


def _fraud_truth(rng: np.random.Generator, features: dict) -> dict:
    c = _FRAUD_LOGIT
    n = len(features["resale"])
    logit = (
        c["intercept"]
        + c["log_velocity_1h"] * np.log1p(features["velocity_1h"])
        + c["youth"] * np.clip(np.log(30.0 / np.maximum(features["age_days"], 0.01)), 0, None)
        + c["extra_payment_methods"] * np.clip(features["methods_before"] - 1, 0, None)
        + c["jet_speed"] * (features["speed_kmh"] > _JET_SPEED_KMH)
        + c["resale_markup"] * np.clip(features["markup"] - 1.3, 0, None)
        + c["log_quick_resales"] * np.log1p(features["quick_resales"])
        + _KIND_LOGIT[features["actor_kind"]]
    )
    probability = 1 / (1 + np.exp(-logit))
    return {"probability": probability, "is_fraud": rng.random(n) < probability}


def _labels(
    rng: np.random.Generator, wallets: _Wallets, orders: dict, truth: dict, actor: np.ndarray
) -> dict:
    """Most frauds get a label days later: bot detections for scalper bots, security alerts
    (chargebacks, stolen payments) for the rest; plus false alarms that were not fraud."""
    n = len(orders["t"])
    kind = wallets.kind[actor]
    fraud = truth["is_fraud"]
    labelled = fraud & (rng.random(n) < 0.9)
    bot_rows = np.flatnonzero(labelled & (kind == BOT))
    false_bot = np.flatnonzero(~fraud & (kind == NORMAL) & (rng.random(n) < 0.003))
    detections = np.concatenate([bot_rows, false_bot])
    is_bot = np.r_[np.ones(len(bot_rows), bool), np.zeros(len(false_bot), bool)]
    score = np.where(
        is_bot, rng.beta(12, 1.5, len(detections)), rng.uniform(0.2, 0.7, len(detections))
    )
    bot_delay = rng.uniform(0.5, 7.0, len(detections)) * DAY

    alert_rows = np.flatnonzero(labelled & (kind != BOT))
    false_alerts = np.flatnonzero(~fraud & (rng.random(n) < 0.004))
    alerts = np.concatenate([alert_rows, false_alerts])
    confirmed = np.r_[np.ones(len(alert_rows), bool), np.zeros(len(false_alerts), bool)]
    alert_delay = np.exp(rng.normal(np.log(7.0), 0.6, len(alerts))).clip(2.0, 30.0) * DAY
    completed = orders["status"][alerts] != FAILED
    alert_kind = kind[alerts]
    pick = rng.random(len(alerts))
    confirmed_type = np.where(
        alert_kind == STOLEN,
        np.where(completed, np.where(pick < 0.6, "stolen_payment", "chargeback"), "card_testing"),
        np.where(
            orders["resale"][alerts],
            "resale_dispute",
            np.where(pick < 0.7, "chargeback", "account_takeover"),
        ),
    )
    false_type = np.array(["suspicious_velocity", "geo_mismatch", "chargeback"], dtype=object)[
        np.floor(pick * 3).astype(np.int64)
    ]
    severity_confirmed = np.where(rng.random(len(alerts)) < 0.3, "critical", "high")
    severity_false = np.where(rng.random(len(alerts)) < 0.6, "low", "medium")
    details_confirmed = np.array(
        [
            "issuer confirmed the card was stolen",
            "cardholder disputed the charge",
            "payment reversed after investigation",
            "fraud confirmed by the trust & safety team",
        ],
        dtype=object,
    )[rng.integers(0, 4, len(alerts))]
    details_false = np.array(
        [
            "reviewed: legitimate customer",
            "dispute withdrawn by the cardholder",
            "travel confirmed by the customer",
        ],
        dtype=object,
    )[rng.integers(0, 3, len(alerts))]
    return {
        "detection_order": detections,
        "detection_is_bot": is_bot,
        "detection_score": score,
        "detection_detector": np.array(
            ["velocity_rules", "behavioral_ml", "captcha_farm_check"], dtype=object
        )[rng.integers(0, 3, len(detections))],
        "detection_at": orders["t"][detections] + np.floor(bot_delay),
        "alert_order": alerts,
        "alert_confirmed": confirmed,
        "alert_type": np.where(confirmed, confirmed_type, false_type).astype(object),
        "alert_severity": np.where(confirmed, severity_confirmed, severity_false).astype(object),
        "alert_details": np.where(confirmed, details_confirmed, details_false).astype(object),
        "alert_at": orders["t"][alerts] + np.floor(alert_delay),
    }


# ---------------------------------------------------------------- frames


def _ids_or_null(ids: np.ndarray, index: np.ndarray) -> np.ndarray:
    """ids[index], None where index < 0; object dtype, so every loader path writes NULL."""
    out = np.full(len(index), None, dtype=object)
    known = index >= 0
    out[known] = ids[index[known]]  # int64 -> Python int
    return out


def _frames(
    clock: _Clock,
    next_id: dict[str, int],
    events: _Events,
    wallets: _Wallets,
    orders: dict,
    tickets: dict,
    transfers: dict,
    truth: dict,
    labels: dict,
    actor: np.ndarray,
) -> dict[str, pd.DataFrame]:
    # Existing wallets keep their ids; new ones are numbered in order of creation.
    new = np.flatnonzero(wallets.is_new)
    new = new[np.lexsort((new, wallets.created[new]))]
    wallet_id = wallets.old_id.copy()
    wallet_id[new] = next_id["wallets"] + np.arange(len(new))
    new_events = events.is_new
    event_id = events.old_id.copy()
    event_id[new_events] = next_id["events"] + np.arange(int(new_events.sum()))
    ticket_id = next_id["tickets"] + np.arange(len(tickets["minted"]))
    order_id = next_id["orders"] + np.arange(len(orders["t"]))

    frames = {
        "wallets": pd.DataFrame(
            {
                "wallet_id": wallet_id[new],
                "address": _text(wallets.address[new]),
                "country": _text(wallets.country[new]),
                "created_at": clock.stamp(wallets.created[new]),
            }
        ),
        "demo_truth_wallets": pd.DataFrame(
            {
                "wallet_id": wallet_id[new],
                "kind": _text(KINDS, wallets.kind[new]),
                "home_lat": np.round(wallets.home_lat[new], 5),
                "home_lon": np.round(wallets.home_lon[new], 5),
                "activity": wallets.activity[new],
            }
        ),
        "events": pd.DataFrame(
            {
                "event_id": event_id,
                "name": _text(events.name),
                "event_type": _text(EVENT_TYPES, events.type),
                "venue": _text(events.venue),
                "city": _text(CITY_NAMES, events.city),
                "venue_lat": np.round(events.lat, 5),
                "venue_lon": np.round(events.lon, 5),
                "base_price": events.base_price,
                # The platform sells part of a venue; never more than it holds.
                "capacity": np.maximum(
                    events.capacity,
                    np.ceil(1.1 * np.bincount(tickets["event"], minlength=len(event_id))),
                ).astype(np.int64),
                "sale_start": clock.stamp(events.sale_start),
                "event_date": clock.stamp(events.event_date),
                "created_at": clock.stamp(events.created),
            }
        )[new_events].reset_index(drop=True),
        "tickets": _tickets_frame(clock, events, tickets, ticket_id, event_id, wallet_id),
        "orders": pd.DataFrame(
            {
                "order_id": order_id,
                "buyer_wallet_id": wallet_id[orders["buyer"]],
                "seller_wallet_id": _ids_or_null(wallet_id, orders["seller"]),
                "event_id": event_id[orders["event"]],
                "ticket_id": _ids_or_null(ticket_id, orders["ticket"]),
                "price": orders["price"],
                "payment_method": _text(PAYMENT_METHODS, orders["method"]),
                "is_resale": orders["resale"],
                "status": _text(STATUSES, orders["status"]),
                "ip_address": _ips(orders["octets"]),
                "geo_lat": np.round(orders["lat"], 4),
                "geo_lon": np.round(orders["lon"], 4),
                "country": _text(CITY_COUNTRIES, orders["city"]),
                "created_at": clock.stamp(orders["t"]),
                "completed_at": clock.stamp(orders["completed"]),
            }
        ),
        "demo_truth_orders": pd.DataFrame(
            {
                "order_id": order_id,
                "fraud_probability": truth["probability"],
                "is_fraud": truth["is_fraud"],
                "pricing_arm": _text((*ARMS, RESALE_ARM), orders["arm"]),
                "conversion_probability": orders["conversion"],
            }
        ),
        "ticket_transfers": pd.DataFrame(
            {
                "transfer_id": next_id["ticket_transfers"] + np.arange(len(transfers["t"])),
                "ticket_id": ticket_id[transfers["ticket"]],
                "order_id": _ids_or_null(order_id, transfers["order"]),
                "from_wallet_id": wallet_id[transfers["from"]],
                "to_wallet_id": wallet_id[transfers["to"]],
                "transfer_type": _text(("gift", "resale"), transfers["resale"].astype(np.int64)),
                "price": transfers["price"],
                "transferred_at": clock.stamp(transfers["t"]),
            }
        ),
    }
    detected = labels["detection_order"]
    frames["bot_detection"] = _label_frame(
        "detection_id",
        next_id["bot_detection"],
        labels["detection_at"],
        clock,
        order_id=order_id[detected],
        wallet_id=wallet_id[actor[detected]],
        wallet_address=_text(wallets.address[actor[detected]]),
        bot_score=np.round(labels["detection_score"], 4),
        is_bot=labels["detection_is_bot"],
        detector=_text(labels["detection_detector"]),
    )
    alerted = labels["alert_order"]
    frames["security_alerts"] = _label_frame(
        "alert_id",
        next_id["security_alerts"],
        labels["alert_at"],
        clock,
        order_id=order_id[alerted],
        wallet_id=wallet_id[actor[alerted]],
        wallet_address=_text(wallets.address[actor[alerted]]),
        alert_type=_text(labels["alert_type"]),
        severity=_text(labels["alert_severity"]),
        confirmed_fraud=labels["alert_confirmed"],
        details=_text(labels["alert_details"]),
    )
    return frames


def _label_frame(id_column: str, first_id: int, available, clock: _Clock, **columns):
    """Labels are numbered in the order they became available."""
    rank = np.lexsort((np.arange(len(available)), available))
    frame = pd.DataFrame(columns).iloc[rank].reset_index(drop=True)
    frame.insert(0, id_column, first_id + np.arange(len(rank)))
    frame["label_available_at"] = clock.stamp(np.asarray(available)[rank])
    return frame


def _tickets_frame(clock, events, tickets, ticket_id, event_id, wallet_id) -> pd.DataFrame:
    n = len(tickets["minted"])
    # Seats are numbered per event in minting order: 20 seats a row, 20 rows a section.
    by_event = np.lexsort((np.arange(n), tickets["event"]))
    counts = np.bincount(tickets["event"], minlength=len(events.type))
    rank = np.empty(n, dtype=np.int64)
    rank[by_event] = _within_group_offsets(counts)
    rank += events.sold_before[tickets["event"]]  # seats sold in earlier periods stay taken
    sections = np.array(list("ABCDEFGH"), dtype=object)
    seat = _join_text(sections[(rank // 400) % 8], (rank // 20) % 20 + 1, "-", rank % 20 + 1)
    happened = events.event_date[tickets["event"]] < clock.horizon
    status = np.where(tickets["refunded"], "refunded", np.where(happened, "used", "active"))
    return pd.DataFrame(
        {
            "ticket_id": ticket_id,
            "event_id": event_id[tickets["event"]],
            "owner_wallet_id": wallet_id[tickets["owner"]],
            "seat": seat,
            "face_price": tickets["face"],
            "status": _text(status.astype(object)),
            "minted_at": clock.stamp(tickets["minted"]),
        }
    )


def _pricing_truth_frame(conversion: np.ndarray) -> pd.DataFrame:
    mean_ratio = _ARM_MULTIPLIER.mean(axis=1)
    revenue = conversion * mean_ratio[None, :]
    best = revenue.argmax(axis=1)
    types, arms = np.meshgrid(np.arange(len(EVENT_TYPES)), np.arange(len(ARMS)), indexing="ij")
    return pd.DataFrame(
        {
            "event_type": _text(EVENT_TYPES, types.ravel()),
            "arm": _text(ARMS, arms.ravel()),
            "conversion": conversion.ravel(),
            "mean_price_ratio": np.broadcast_to(mean_ratio, conversion.shape).ravel(),
            "expected_revenue_ratio": np.round(revenue.ravel(), 6),
            "is_best": (arms == best[:, None]).ravel(),
        }
    )


# ---------------------------------------------------------------- security noise


def _security_events(
    rng: np.random.Generator,
    clock: _Clock,
    wallets: _Wallets,
    orders: dict,
    n_orders: int,
    first_id: int,
) -> pd.DataFrame:
    """Failed logins (with a few brute-force bursts from one address), password resets and
    rate limits that bots hit while camping on a sale."""
    horizon = clock.horizon
    active = np.unique(orders["buyer"]) if len(orders["buyer"]) else np.arange(len(wallets))
    parts = []

    n_fail = max(5, n_orders // 80)
    parts.append(
        {
            "type": np.full(n_fail, "failed_login", dtype=object),
            "severity": np.full(n_fail, "low", dtype=object),
            "octets": _random_octets(rng, n_fail, _RESIDENTIAL_OCTETS),
            "wallet": active[rng.integers(0, len(active), n_fail)],
            "t": rng.integers(0, horizon, n_fail),
            "detail": np.array(
                ["invalid_signature", "expired_nonce", "wrong_network"], dtype=object
            )[rng.integers(0, 3, n_fail)],
        }
    )
    # Brute force: 6-14 failed logins within five minutes from one hosting address.
    sizes = rng.integers(6, 15, max(2, n_orders // 15_000))
    burst = np.repeat(np.arange(len(sizes)), sizes)
    gaps = 1 + np.floor(rng.exponential(12, len(burst)))
    elapsed = np.cumsum(gaps)
    elapsed -= elapsed[np.repeat(np.cumsum(sizes) - sizes, sizes)]
    start = rng.integers(0, max(horizon - 300, 1), len(sizes))
    targets = active[rng.integers(0, len(active), (len(sizes), 3))]
    single = rng.random(len(sizes)) < 0.7
    target = np.where(
        single[burst], targets[burst, 0], targets[burst, rng.integers(0, 3, len(burst))]
    )
    parts.append(
        {
            "type": np.full(len(burst), "failed_login", dtype=object),
            "severity": np.full(len(burst), "high", dtype=object),
            "octets": _random_octets(rng, len(sizes), _HOSTING_OCTETS)[burst],
            "wallet": target,
            "t": np.minimum(start[burst] + np.minimum(elapsed, 280), horizon - 1).astype(np.int64),
            "detail": np.full(len(burst), "invalid_signature", dtype=object),
        }
    )
    n_reset = max(3, n_orders // 250)
    parts.append(
        {
            "type": np.full(n_reset, "password_reset", dtype=object),
            "severity": np.full(n_reset, "low", dtype=object),
            "octets": _random_octets(rng, n_reset, _RESIDENTIAL_OCTETS),
            "wallet": active[rng.integers(0, len(active), n_reset)],
            "t": rng.integers(0, horizon, n_reset),
            "detail": np.array(["email", "sms"], dtype=object)[rng.integers(0, 2, n_reset)],
        }
    )
    # Bots hammering the order endpoint: about half of their sessions trip the rate limit.
    sessions, first_of_session = np.unique(orders["session"], return_index=True)
    first_of_session = first_of_session[sessions >= 0]
    session_rows = first_of_session[rng.random(len(first_of_session)) < 0.5]
    parts.append(
        {
            "type": np.full(len(session_rows), "rate_limited", dtype=object),
            "severity": np.full(len(session_rows), "medium", dtype=object),
            "octets": orders["octets"][session_rows],
            "wallet": orders["buyer"][session_rows],
            "t": orders["t"][session_rows],
            "detail": np.full(len(session_rows), "/api/v1/orders", dtype=object),
        }
    )
    events = _concat(parts)
    rank = np.lexsort((np.arange(len(events["t"])), events["t"]))
    events = {k: v[rank] for k, v in events.items()}
    kind = events["type"]
    minute_rate = rng.integers(120, 900, len(kind))
    # One small dict per security event (not per order): the JSON metadata column.
    metadata = [
        {"reason": d}
        if k == "failed_login"
        else {"channel": d}
        if k == "password_reset"
        else {"endpoint": d, "requests_per_minute": int(r)}
        for k, d, r in zip(kind, events["detail"], minute_rate, strict=True)
    ]
    return pd.DataFrame(
        {
            "id": first_id + np.arange(len(kind)),
            "event_type": _text(kind),
            "severity": _text(events["severity"]),
            "source_ip": _ips(events["octets"]),
            "user_id": _text(wallets.address[events["wallet"]]),
            "metadata": pd.Series(metadata, dtype=object),
            "created_at": clock.stamp(events["t"]),
        }
    )


def _blacklist(
    rng: np.random.Generator,
    clock: _Clock,
    wallets: _Wallets,
    labels: dict,
    actor: np.ndarray,
    already: frozenset[str],
) -> pd.DataFrame:
    """Trust & safety blacklists a wallet hours to days after its first confirmed bot
    detection or stolen-payment alert, when that still falls inside the period."""
    bot = labels["detection_is_bot"]
    stolen = labels["alert_confirmed"] & (labels["alert_type"] == "stolen_payment")
    wallet = np.concatenate(
        [actor[labels["detection_order"][bot]], actor[labels["alert_order"][stolen]]]
    )
    at = np.concatenate([labels["detection_at"][bot], labels["alert_at"][stolen]])
    at = at + np.floor(rng.uniform(HOUR, 3 * DAY, len(at)))
    reason = np.concatenate(
        [
            _join_text(
                "scalper bot confirmed by ",
                labels["detection_detector"][bot],
                " (bot score ",
                np.round(labels["detection_score"][bot], 2),
                ")",
            ).to_numpy(dtype=object),
            _join_text("stolen payment methods: ", labels["alert_details"][stolen]).to_numpy(
                dtype=object
            ),
        ]
    )
    rank = np.lexsort((np.arange(len(at)), at))
    wallet, at, reason = wallet[rank], at[rank], reason[rank]
    first = np.zeros(len(wallet), dtype=bool)
    first[np.unique(wallet, return_index=True)[1]] = True
    address = wallets.address[wallet]
    keep = first & (at < clock.horizon) & ~np.isin(address, np.array(sorted(already), dtype=object))
    return pd.DataFrame(
        {
            "wallet_address": _text(address[keep]),
            "reason": _text(reason[keep]),
            "created_at": clock.stamp(at[keep]),
        }
    )


def _admin_audit_log(rng: np.random.Generator, clock: _Clock, first_id: int) -> pd.DataFrame:
    n = int(rng.integers(5, 10))
    users = np.array(["alice.ops", "bob.fraud", "carol.pricing"], dtype=object)
    actions = np.array(
        [
            "review_alert",
            "blacklist_wallet",
            "export_orders",
            "update_event_capacity",
            "adjust_pricing_strategy",
            "rotate_api_key",
        ],
        dtype=object,
    )
    action = actions[rng.integers(0, len(actions), n)]
    t = np.sort(rng.integers(0, clock.horizon, n))
    metadata = [{"ticket": f"OPS-{int(k)}"} for k in rng.integers(1000, 9999, n)]
    return pd.DataFrame(
        {
            "id": first_id + np.arange(n),
            "admin_user": _text(users, rng.integers(0, len(users), n)),
            "action": _text(action),
            "ip_address": _join_text("10.20.", rng.integers(0, 4, n), ".", rng.integers(2, 250, n)),
            "metadata": pd.Series(metadata, dtype=object),
            "created_at": clock.stamp(t),
        }
    )
