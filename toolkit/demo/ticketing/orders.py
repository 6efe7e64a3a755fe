"""Primary orders: normal buyers, scalper-bot bursts and stolen-payment sessions, priced by
one of the strategies and converted or not."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...geo import haversine_km
from ...inputs import PAYMENT_METHODS
from .facts import (
    _ARM_MULTIPLIER,
    _ARM_SHARE,
    _CREDIT_CARD,
    _CRYPTO,
    _FOLLOW_UP_SHARE,
    _HOSTING_OCTETS,
    _NORMAL_METHOD_SHARE,
    _REFUND_SHARE,
    _RESIDENTIAL_OCTETS,
    _TRAVEL_SHARE,
    ARMS,
    BOT,
    CITY_LAT,
    CITY_LON,
    CITY_SHARE,
    COMPLETED,
    DAY,
    EVENT_TYPES,
    FAILED,
    HOUR,
    N_CITIES,
    NORMAL,
    PENDING,
    REFUNDED,
    STOLEN,
    TRUE_CONVERSION,
)
from .world import (
    _Clock,
    _Events,
    _habit,
    _jitter,
    _ramp_times,
    _random_octets,
    _sizes_summing_to,
    _Wallets,
    _weighted_choice,
    _within_group_offsets,
)

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
    lat, lon, method, octets = _whereabouts(rng, wallets, buyer, city, travel)

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


def _whereabouts(
    rng: np.random.Generator,
    wallets: _Wallets,
    buyer: np.ndarray,
    city: np.ndarray,
    travel: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where normal orders come from (home, or `city` when travelling), the buyers'
    habitual payment methods and their home address (a residential one when away)."""
    n = len(buyer)
    lat, lon = _jitter(rng, city, km=4.0)
    lat = np.where(travel, lat, wallets.home_lat[buyer] + rng.normal(0, 0.02, n))
    lon = np.where(travel, lon, wallets.home_lon[buyer] + rng.normal(0, 0.03, n))
    method = _habitual_methods(rng, wallets, buyer)
    octets = _home_octets(rng, wallets, buyer)
    octets[travel] = _random_octets(rng, int(travel.sum()), _RESIDENTIAL_OCTETS)
    return lat, lon, method, octets


def _events_near(rng: np.random.Generator, events: _Events, home: np.ndarray) -> np.ndarray:
    """Per home city: events by popularity x in-period demand x closeness."""
    distance = haversine_km(
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
