"""How `demo stream` draws its orders: normal buyers, fraud sessions and their truth (methods of
`DemoStream`).
"""

from __future__ import annotations

import numpy as np

from ..geo import haversine_km
from ..inputs import PAYMENT_METHODS

# The generator's own sampling, reused so streamed traffic has the seeded world's shape.
from .ticketing.facts import (
    _BOT_ORDER_SHARE,
    _FOLLOW_UP_SHARE,
    _HOSTING_OCTETS,
    _POPCOUNT,
    _RESIDENTIAL_OCTETS,
    _STOLEN_ORDER_SHARE,
    _TRAVEL_SHARE,
    BOT,
    CITY_SHARE,
    DAY,
    HOUR,
    N_CITIES,
    NORMAL,
    STOLEN,
)
from .ticketing.labels import _fraud_truth, _labels
from .ticketing.orders import _habitual_methods, _whereabouts
from .ticketing.world import _jitter, _random_octets, _weighted_choice

# Session shapes as ticketing.orders._bot_sessions / _stolen_sessions / _session_times draw them:
# size = base + Poisson(extra); gaps = min + Exp(mean) seconds; sessions per wallet 1 + Poisson.
BOT_SIZE = (1, 5.0)
STOLEN_SIZE = (2, 1.5)
BOT_GAP = (3, 40.0)
STOLEN_GAP = (10, 150.0)
BOT_SESSIONS_PER_WALLET = 2.0
STOLEN_SESSIONS_PER_WALLET = 0.4
VETERAN_BOT_SHARE = 0.2  # bot sessions run by a bot that already lives in the world
BOT_PROXY_SHARE = 0.3
# A follow-up is a second ticket 20 s + Exp(180 s) after a normal order.
FOLLOW_UP_GAP = (20, 180.0)
FOLLOW_UPS_PER_ANCHOR = _FOLLOW_UP_SHARE / (1 - _FOLLOW_UP_SHARE)
ORDER_FIELDS = ("due", "kind", "buyer", "event", "method", "city", "lat", "lon", "session")


class _Traffic:
    """`DemoStream`'s drawing of orders, on its rng, wallets, events and queue."""

    # ------------------------------------------------------------ drawing orders

    @staticmethod
    def _no_orders() -> dict:
        return {
            name: np.zeros(0, dtype=float if name in ("lat", "lon") else np.int64)
            for name in ORDER_FIELDS
        }

    def _queue(self, orders: dict, octets: np.ndarray) -> None:
        self.pending = {k: np.concatenate([self.pending[k], orders[k]]) for k in ORDER_FIELDS}
        self.pending_octets = np.concatenate([self.pending_octets, octets])

    def _fraud_wallet(self, kind: int, t: int, sessions_extra: float) -> int:
        """A stream-made fraudulent wallet with sessions left, or a fresh one created
        hours (bots) or days (stolen payment) before now, as settle_creation ages them."""
        live = self.sessions_left[kind]
        if live:
            live[0][1] -= 1
            wallet = live[0][0]
            if live[0][1] <= 0:
                live.pop(0)
            return wallet
        rng = self.rng
        sessions = 1 + int(rng.poisson(sessions_extra))
        home = rng.choice(N_CITIES, 1, p=CITY_SHARE)
        wallet = int(self.wallets.add(rng, kind, home, np.array([float(sessions)]))[0])
        if kind == BOT:
            age = np.exp(rng.normal(np.log(12.0), 0.9)).clip(1, 96) * HOUR
        else:
            age = np.exp(rng.normal(np.log(8.0), 0.7)).clip(1, 60) * DAY
        self.wallets.created[wallet] = np.floor(t - age)
        self.created_wallets.append(wallet)
        if sessions > 1:
            live.append([wallet, sessions - 1])
        return wallet

    def _start_sessions(self, kind: int, starts: np.ndarray, under_way_at: int | None = None):
        """Fraud sessions starting at `starts` (seconds); their orders wait in the queue
        until due. With `under_way_at`, only the sessions with an order due at or after
        that second are kept (the ones a warm start finds in flight)."""
        rng = self.rng
        base, extra = BOT_SIZE if kind == BOT else STOLEN_SIZE
        min_gap, mean_gap = BOT_GAP if kind == BOT else STOLEN_GAP
        weight = self.event_weight**1.5 if kind == BOT else self.event_weight
        for start in np.asarray(starts, dtype=np.int64).tolist():
            size = base + int(rng.poisson(extra))
            gaps = min_gap + np.floor(rng.exponential(mean_gap, size)).astype(np.int64)
            gaps[0] = 0
            due = start + np.cumsum(gaps)
            if under_way_at is not None and due[-1] < under_way_at:
                continue
            event = int(_weighted_choice(rng, weight, 1)[0])
            if kind == BOT and len(self.veteran_bots) and rng.random() < VETERAN_BOT_SHARE:
                pick = _weighted_choice(rng, self.wallets.activity[self.veteran_bots], 1)
                wallet = int(self.veteran_bots[pick[0]])
            else:
                extra_sessions = (
                    BOT_SESSIONS_PER_WALLET if kind == BOT else STOLEN_SESSIONS_PER_WALLET
                )
                wallet = self._fraud_wallet(kind, start, extra_sessions)
            buyer = np.full(size, wallet, dtype=np.int64)
            if kind == BOT:
                # Rented servers, a third of the sessions through a proxy elsewhere.
                proxy = rng.random() < BOT_PROXY_SHARE
                home = self.wallets.home[wallet]
                city = np.full(size, rng.choice(N_CITIES, p=CITY_SHARE) if proxy else home)
                lat, lon = _jitter(rng, city, km=3.0)
                octets = np.repeat(_random_octets(rng, 1, _HOSTING_OCTETS), size, axis=0)
                octets[:, 3] = rng.integers(1, 255, size)
                method = _habitual_methods(rng, self.wallets, buyer)
            else:
                # A different card each order, through residential proxies all over the world.
                first, step = rng.integers(0, len(PAYMENT_METHODS)), rng.choice([1, 5])
                method = (first + np.arange(size) * step) % len(PAYMENT_METHODS)
                city = rng.integers(0, N_CITIES, size)
                lat, lon = _jitter(rng, city, km=10.0)
                octets = _random_octets(rng, size, _RESIDENTIAL_OCTETS)
            session = self.next_session if kind == BOT else -1
            self.next_session += kind == BOT
            self._queue(
                {
                    "due": due,
                    "kind": np.full(size, kind),
                    "buyer": buyer,
                    "event": np.full(size, event),
                    "method": method.astype(np.int64),
                    "city": city.astype(np.int64),
                    "lat": lat,
                    "lon": lon,
                    "session": np.full(size, session),
                },
                octets,
            )

    def _normal_orders(
        self, n: int, t, follow_up_gaps: np.ndarray | None = None
    ) -> tuple[dict, np.ndarray]:
        """Normal buyers by activity, mostly near home, from home, with their habitual
        methods, at second(s) `t`; some come back for a second ticket minutes later
        (queued): a random share, or every one after `follow_up_gaps` when given."""
        rng, wallets = self.rng, self.wallets
        pool = self.normal_pool
        t = np.broadcast_to(np.asarray(t, dtype=np.int64), (n,)).copy()
        buyer = pool[_weighted_choice(rng, wallets.activity[pool], n)]
        home = wallets.home[buyer]
        travel = rng.random(n) < _TRAVEL_SHARE
        city = np.where(travel, rng.choice(N_CITIES, n, p=CITY_SHARE), home)
        event = np.empty(n, dtype=np.int64)
        for c in np.unique(home):
            rows = np.flatnonzero(home == c)
            event[rows] = _weighted_choice(rng, self.near_weight[c], len(rows))
        lat, lon, method, octets = _whereabouts(rng, wallets, buyer, city, travel)
        orders = {
            "due": t,
            "kind": np.full(n, NORMAL),
            "buyer": buyer,
            "event": event,
            "method": method,
            "city": city,
            "lat": lat,
            "lon": lon,
            "session": np.full(n, -1),
        }
        if follow_up_gaps is None:
            again = np.flatnonzero(rng.random(n) < FOLLOW_UPS_PER_ANCHOR)
            gaps = _follow_up_gaps(rng, len(again))
        else:
            again, gaps = np.arange(n), np.asarray(follow_up_gaps, dtype=np.int64)
        if len(again):
            k = len(again)
            follow = {key: value[again] for key, value in orders.items()}
            follow["due"] = t[again] + gaps
            other = _habitual_methods(rng, wallets, buyer[again])
            follow["method"] = np.where(rng.random(k) < 0.8, method[again], other)
            follow["lat"] = lat[again] + rng.normal(0, 0.002, k)
            follow["lon"] = lon[again] + rng.normal(0, 0.002, k)
            self._queue(follow, octets[again])
        return orders, octets

    def _draw(self, count: int, t: int) -> tuple[dict, np.ndarray]:
        """This tick's `count` orders: queued ones now due first (session orders and
        follow-ups, oldest first), then new normal orders."""
        rng = self.rng
        for kind, share, size in (
            (BOT, _BOT_ORDER_SHARE, BOT_SIZE),
            (STOLEN, _STOLEN_ORDER_SHARE, STOLEN_SIZE),
        ):
            self._start_sessions(kind, np.full(rng.poisson(count * share / sum(size)), t))
        taken, taken_octets = self._take_due(t, count)
        fresh, fresh_octets = self._normal_orders(count - len(taken["due"]), t)
        orders = {k: np.concatenate([taken[k], fresh[k]]) for k in ORDER_FIELDS}
        return orders, np.concatenate([taken_octets, fresh_octets])

    def _take_due(self, t: int, limit: int | None = None) -> tuple[dict, np.ndarray]:
        """Queued orders due by second `t`, oldest first (at most `limit`), off the queue."""
        due = np.flatnonzero(self.pending["due"] <= t)
        due = due[np.argsort(self.pending["due"][due], kind="stable")][:limit]
        taken = {k: v[due] for k, v in self.pending.items()}
        taken_octets = self.pending_octets[due]
        keep = np.ones(len(self.pending["due"]), dtype=bool)
        keep[due] = False
        self.pending = {k: v[keep] for k, v in self.pending.items()}
        self.pending_octets = self.pending_octets[keep]
        return taken, taken_octets

    # ------------------------------------------------------------ truth and labels

    def _truth(self, orders: dict, status: np.ndarray, at: np.ndarray) -> tuple[dict, dict]:
        """The generator's true fraud probability of each order from what came before it
        (velocity, age, payment methods, travel speed, the wallet's kind), second by second,
        its draw, and the labels that will arrive days later."""
        n = len(at)
        truth = {"probability": np.zeros(n), "is_fraud": np.zeros(n, dtype=bool)}
        for second in np.unique(at).tolist():
            rows = np.flatnonzero(at == second)
            part = self._truth_at({k: v[rows] for k, v in orders.items()}, second)
            truth["probability"][rows], truth["is_fraud"][rows] = (
                part["probability"],
                part["is_fraud"],
            )
        placed = {"t": at, "status": status, "resale": np.zeros(n, dtype=bool)}
        return truth, _labels(self.rng, self.wallets, placed, truth, orders["buyer"])

    def _truth_at(self, orders: dict, t: int) -> dict:
        """The truth of orders placed at second `t`; then the wallets remember them."""
        wallets, buyer = self.wallets, orders["buyer"]
        n = len(buyer)
        hour_ago = self.recent_t >= t - HOUR
        self.recent_buyer, self.recent_t = self.recent_buyer[hour_ago], self.recent_t[hour_ago]
        velocity = np.bincount(self.recent_buyer, minlength=len(wallets))[buyer]
        hours = np.maximum(t - wallets.last_t[buyer], 60.0) / HOUR
        speed = np.nan_to_num(
            haversine_km(
                wallets.last_lat[buyer], wallets.last_lon[buyer], orders["lat"], orders["lon"]
            )
            / hours
        )
        features = {
            "velocity_1h": velocity,
            "age_days": (t - wallets.created[buyer]) / DAY,
            "methods_before": _POPCOUNT[wallets.method_mask[buyer] & 63],
            "speed_kmh": speed,
            "quick_resales": wallets.quick_resales[buyer],
            "markup": np.ones(n),
            "resale": np.zeros(n, dtype=bool),
            "actor": buyer,
            "actor_kind": wallets.kind[buyer],
        }
        truth = _fraud_truth(self.rng, features)
        wallets.last_t[buyer] = t
        wallets.last_lat[buyer], wallets.last_lon[buyer] = orders["lat"], orders["lon"]
        np.bitwise_or.at(wallets.method_mask, buyer, np.left_shift(1, orders["method"]))
        self.recent_buyer = np.concatenate([self.recent_buyer, buyer])
        self.recent_t = np.concatenate([self.recent_t, np.full(n, t, dtype=np.int64)])
        return truth


def _follow_up_gaps(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds from a first ticket to its second."""
    min_gap, mean_gap = FOLLOW_UP_GAP
    return min_gap + np.floor(rng.exponential(mean_gap, n)).astype(np.int64)
