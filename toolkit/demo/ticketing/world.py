"""The world's clock, its events and its wallets, and the small vectorised helpers they share."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ...geo import haversine_km
from ..params import DemoParams
from .facts import (
    _BAND_WORDS,
    _BASE_PRICE_MEDIAN,
    _BASE_PRICE_SD,
    _CAPACITY_MEDIAN,
    _CONFERENCE_TOPICS,
    _EVENT_CONVERSION_SD,
    _EVENT_TYPE_SHARE,
    _FESTIVAL_WORDS,
    _FLAT_DEMAND,
    _HOURLY,
    _PLAYS,
    _POPULARITY_SD,
    _SALE_WINDOW_DAYS,
    _TEAM_WORDS,
    _VENUE_KINDS,
    BOT,
    CITY_COUNTRIES,
    CITY_LAT,
    CITY_LON,
    CITY_NAMES,
    CITY_SHARE,
    DAY,
    EVENT_TYPES,
    HOUR,
    KINDS,
    N_CITIES,
    NORMAL,
    STOLEN,
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
    """The events of earlier periods still on sale at the period's start, or None; their unstored
    latent traits are drawn again from the event id.
    """
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
            haversine_km(lat[:, None], lon[:, None], CITY_LAT[None, :], CITY_LON[None, :]), axis=1
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
