"""`mlkit demo stream`: live traffic of the demo world, so a dashboard has something to watch.

Every second it places `rate` primary orders stamped by the clock, drawn the way `demo seed`
draws them (the ticketing package): normal wallets buying near home with their habitual payment
methods (some a second ticket minutes later), scalper-bot bursts from fresh wallets and
stolen-payment sessions card after card, in the world's shares. Each tick's orders go in with
one statement, are scored in one batch by the prod fraud model (the online feature
definitions), get their truth and late labels as the generator writes them, and reward the
bandit through `BanditStore.record`. The stream only ever inserts rows (and rewards arms).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import schema
from ..clock import utcnow
from ..errors import MlkitError
from ..geo import haversine_km
from ..inputs import PAYMENT_METHODS
from .fence import record_demo_rows
from .ticketing import read_state

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
    CITY_COUNTRIES,
    CITY_LAT,
    CITY_LON,
    CITY_SHARE,
    COMPLETED,
    DAY,
    FAILED,
    HOUR,
    KINDS,
    N_CITIES,
    NORMAL,
    STOLEN,
)
from .ticketing.labels import _fraud_truth, _labels
from .ticketing.orders import _habitual_methods, _home_octets
from .ticketing.world import _Clock, _jitter, _random_octets, _Wallets, _weighted_choice

DEFAULT_CONVERSION = 0.45
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
FAR_FUTURE = 10 * 365 * DAY
# Warm start: sessions that began up to WARM_SPAN before the stream and are still under way
# have their earlier orders backdated, never earlier than the world's last order minus
# WARM_MARGIN (the span covers all but a sliver of the longest sessions, stolen payments').
WARM_SPAN = 30 * 60
WARM_MARGIN = 5 * 60
ORDER_FIELDS = ("due", "kind", "buyer", "event", "method", "city", "lat", "lon", "session")


@dataclass
class StreamTotals:
    orders: int = 0
    completed: int = 0
    scored: int = 0
    decisions: dict = field(default_factory=dict)
    arms: dict = field(default_factory=dict)
    kinds: dict = field(default_factory=dict)
    new_wallets: int = 0
    labels: int = 0
    seconds: float = 0.0
    requested_rate: float = 0.0
    warm_start: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "orders": self.orders,
            "completed": self.completed,
            "scored": self.scored,
            "decisions": self.decisions,
            "arms": self.arms,
            "kinds": self.kinds,
            "new_wallets": self.new_wallets,
            "labels": self.labels,
            "seconds": round(self.seconds, 1),
            "requested_rate": self.requested_rate,
            "rate": round(self.orders / self.seconds, 2) if self.seconds else None,
            "warm_start": self.warm_start,
        }


def _plain(values) -> list:
    """numpy values as plain Python ones (tolist converts every element)."""
    return np.asarray(values).tolist()


class DemoStream:
    def __init__(self, engine: Engine, config, redis=None, *, seed: int | None = None):
        from ..pricing.state import BanditStore

        self.engine, self.config = engine, config
        self.rng = np.random.default_rng(seed)
        self.store = BanditStore(engine, redis)
        self.policy = config.get("pricing.policy")
        self.origin = utcnow()
        self.clock = _Clock(np.datetime64(self.origin, "s"), FAR_FUTURE)
        self._load_events()
        with engine.connect() as conn:
            state = read_state(conn)
            self.last_order = conn.execute(
                sa.select(sa.func.max(schema.orders.c.created_at))
            ).scalar()
        self.wallets = _Wallets.from_state(state.wallets, self.clock)
        for name, values in vars(self.wallets).items():  # frames hand out read-only views
            setattr(self.wallets, name, np.array(values))
        self.normal_pool = np.flatnonzero(self.wallets.kind == NORMAL)
        if not len(self.event_ids) or not len(self.normal_pool):
            raise MlkitError(
                "the database holds no events or wallets to stream orders for",
                hint="seed a demo world first: mlkit demo seed",
            )
        self.veteran_bots = np.flatnonzero(self.wallets.kind == BOT)
        self.conversion = self._conversion_table()
        self.predictor = self._predictor(redis)
        self.reward_scale = self._reward_scale()
        self.pending = self._no_orders()
        self.pending_octets = np.zeros((0, 4), dtype=np.int64)
        self.sessions_left: dict[int, list[int]] = {BOT: [], STOLEN: []}  # [wallet, left]
        self.created_wallets: list[int] = []  # stream wallets not yet inserted
        self.next_session = 0
        self.recent_buyer = np.zeros(0, dtype=np.int64)
        self.recent_t = np.zeros(0, dtype=np.int64)

    # ------------------------------------------------------------ the world as it stands

    def _load_events(self) -> None:
        """Events with their completed primary sales; demand goes to those on sale now
        (any event when none is), by sales so far and, for normal buyers, closeness."""
        e, o = schema.events, schema.orders
        sold = (
            sa.select(o.c.event_id, sa.func.count().label("sold"))
            .where(o.c.status == "COMPLETED", o.c.is_resale == sa.false())
            .group_by(o.c.event_id)
            .subquery()
        )
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    e.c.event_id,
                    e.c.event_type,
                    e.c.base_price,
                    e.c.capacity,
                    e.c.venue_lat,
                    e.c.venue_lon,
                    e.c.sale_start,
                    e.c.event_date,
                    sa.func.coalesce(sold.c.sold, 0).label("sold"),
                )
                .select_from(e.outerjoin(sold, sold.c.event_id == e.c.event_id))
                .order_by(e.c.event_id)
            ).all()
        self.event_ids = np.array([int(r.event_id) for r in rows], dtype=np.int64)
        self.event_types = np.array([r.event_type for r in rows], dtype=object)
        self.base_prices = np.array([float(r.base_price) for r in rows])
        self.capacities = np.array([max(int(r.capacity), 1) for r in rows])
        self.sold = np.array([int(r.sold) for r in rows], dtype=np.int64)
        on_sale = np.array([r.sale_start <= self.origin < r.event_date for r in rows], dtype=bool)
        weight = (self.sold + 1.0) * (on_sale if on_sale.any() else 1.0)
        self.event_weight = weight
        lat = np.array([np.nan if r.venue_lat is None else float(r.venue_lat) for r in rows])
        lon = np.array([np.nan if r.venue_lon is None else float(r.venue_lon) for r in rows])
        distance = np.nan_to_num(
            haversine_km(CITY_LAT[:, None], CITY_LON[:, None], lat[None, :], lon[None, :]),
            nan=20_000.0,
        )
        self.near_weight = weight[None, :] * (np.exp(-distance / 800.0) + 0.03)

    def _conversion_table(self) -> dict:
        t = schema.demo_truth_pricing
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.event_type, t.c.arm, t.c.conversion)).all()
        return {(r.event_type, r.arm): float(r.conversion) for r in rows}

    def _predictor(self, redis):
        from ..fraud.scoring import FraudPredictor, Thresholds
        from ..registry import resolve

        try:
            mv = resolve(self.engine, "fraud@prod")
        except MlkitError:
            return None  # no prod fraud model: orders stream unscored
        return FraudPredictor(
            self.engine,
            mv,
            Thresholds.from_config(self.config),
            redis,
            artifacts_dir=self.config.artifacts_dir,
        )

    def _reward_scale(self) -> float:
        from ..registry import resolve

        try:
            return float(resolve(self.engine, "pricing@prod").params.get("reward_scale", 3.0))
        except MlkitError:
            return 3.0

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
        lat, lon = _jitter(rng, city, km=4.0)
        lat = np.where(travel, lat, wallets.home_lat[buyer] + rng.normal(0, 0.02, n))
        lon = np.where(travel, lon, wallets.home_lon[buyer] + rng.normal(0, 0.03, n))
        method = _habitual_methods(rng, wallets, buyer)
        octets = _home_octets(rng, wallets, buyer)
        octets[travel] = _random_octets(rng, int(travel.sum()), _RESIDENTIAL_OCTETS)
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

    # ------------------------------------------------------------ warm start

    def warm_start(self, rate: float, now: datetime | None = None) -> StreamTotals:
        """Start in steady state: the bot bursts, stolen-payment sessions and second
        tickets that would be under way at `rate` are created with their earlier orders
        backdated to when they fell, in one batch; their later orders wait in the queue.

        Sessions are those starting in the WARM_SPAN before now, at the rate a running
        stream starts them, never before the world's last order minus WARM_MARGIN; only
        sessions still under way now are kept (the finished ones would be history)."""
        totals = StreamTotals(requested_rate=rate)
        now = now or utcnow()
        t_now = int((now - self.origin).total_seconds())
        floor = t_now - WARM_SPAN
        if self.last_order is not None:
            floor = max(floor, int((self.last_order - self.origin).total_seconds()) - WARM_MARGIN)
        if floor >= t_now:
            return totals
        rng, span = self.rng, t_now - floor
        for kind, share, size in (
            (BOT, _BOT_ORDER_SHARE, BOT_SIZE),
            (STOLEN, _STOLEN_ORDER_SHARE, STOLEN_SIZE),
        ):
            starts = np.sort(
                rng.integers(floor, t_now, rng.poisson(rate * share / sum(size) * span))
            )
            self._start_sessions(kind, starts, under_way_at=t_now)
        # Second tickets arrive at the steady rate of follow-ups; the first tickets of
        # those still to come are the earlier orders of their sessions.
        follow_ups = rate * (1 - _BOT_ORDER_SHARE - _STOLEN_ORDER_SHARE) * _FOLLOW_UP_SHARE
        n = rng.poisson(follow_ups * span)
        anchors, gaps = rng.integers(floor, t_now, n), _follow_up_gaps(rng, n)
        under_way = anchors + gaps >= t_now
        first, octets = self._normal_orders(
            int(under_way.sum()), anchors[under_way], follow_up_gaps=gaps[under_way]
        )
        self._queue(first, octets)
        orders, octets = self._take_due(t_now - 1)
        if len(orders["due"]):
            self._place(orders, octets, orders["due"], totals)
        return totals

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

    # ------------------------------------------------------------ one tick

    def tick(self, count: int, totals: StreamTotals, now: datetime | None = None) -> None:
        """Place, record, score and reward `count` orders stamped `now` (the clock's)."""
        if count <= 0:
            return
        now = now or utcnow()
        t = int((now - self.origin).total_seconds())
        orders, octets = self._draw(count, t)
        self._place(orders, octets, np.full(count, t, dtype=np.int64), totals)

    def _place(self, orders: dict, octets: np.ndarray, at: np.ndarray, totals: StreamTotals):
        """Price, record, score and reward orders placed at seconds `at` since the origin,
        in one transaction (one insert per table, one scoring batch)."""
        from ..pricing.history import ARMS, combined_reward, normalised_reward
        from ..pricing.policies import choose
        from ..pricing.service import strategy_price

        rng, count = self.rng, len(at)
        stamps = self.clock.stamp(at).astype("datetime64[s]").tolist()
        event = orders["event"]
        states, _ = self.store.read()
        pulls = np.array([float(s.pulls) for s in states.values()])
        sums = np.array([s.reward_sum for s in states.values()])
        arm_index = np.atleast_1d(
            choose(
                self.policy,
                pulls,
                sums,
                rng,
                size=count,
                epsilon=float(self.config.get("pricing.epsilon")),
            )
        )
        arms = [ARMS[int(a)] for a in arm_index]
        base = self.base_prices[event]
        through = self.sold[event] / self.capacities[event]
        prices = np.array(
            [
                round(float(strategy_price(arm, b, s, self.config)), 2)
                for arm, b, s in zip(arms, base, through, strict=True)
            ]
        )
        conversion = np.array(
            [
                self.conversion.get((self.event_types[e], arm), DEFAULT_CONVERSION)
                for e, arm in zip(event, arms, strict=True)
            ]
        )
        completed = rng.random(count) < conversion
        status = np.where(completed, COMPLETED, FAILED)
        truth, labels = self._truth(orders, status, at)
        np.add.at(self.sold, event[completed], 1)

        with self.engine.begin() as conn:
            totals.new_wallets += self._insert_new_wallets(conn)
            buyer_ids = self.wallets.old_id[orders["buyer"]]
            rows = [
                dict(
                    zip(
                        (
                            "buyer_wallet_id",
                            "event_id",
                            "price",
                            "payment_method",
                            "status",
                            "ip_address",
                            "geo_lat",
                            "geo_lon",
                            "country",
                            "created_at",
                        ),
                        values,
                        strict=True,
                    ),
                    is_resale=False,
                    completed_at=values[-1] if values[4] == "COMPLETED" else None,
                )
                for values in zip(
                    _plain(buyer_ids),
                    _plain(self.event_ids[event]),
                    _plain(prices),
                    _plain(np.asarray(PAYMENT_METHODS, dtype=object)[orders["method"]]),
                    _plain(np.where(completed, "COMPLETED", "FAILED").astype(object)),
                    [".".join(map(str, o)) for o in _plain(octets)],
                    _plain(np.round(orders["lat"], 4)),
                    _plain(np.round(orders["lon"], 4)),
                    _plain(CITY_COUNTRIES[orders["city"]]),
                    stamps,
                    strict=True,
                )
            ]
            order_ids = _insert_returning_ids(conn, schema.orders, rows, "order_id", stamps)
            record_demo_rows(conn, "orders", order_ids)
            self._insert_truth(conn, order_ids, orders, arms, conversion, truth, labels)
            if self.predictor is not None:
                decisions = self._score(conn, order_ids, rows)
                for decision in decisions:
                    totals.decisions[decision] = totals.decisions.get(decision, 0) + 1
                totals.scored += len(decisions)

        rewards = normalised_reward(
            combined_reward(prices, base, completed.astype(float), through), self.reward_scale
        )
        for arm, reward in zip(arms, _plain(rewards), strict=True):
            self.store.record(arm, float(reward))
            totals.arms[arm] = totals.arms.get(arm, 0) + 1
        for kind, n in zip(KINDS, np.bincount(orders["kind"], minlength=len(KINDS)), strict=True):
            totals.kinds[kind] = totals.kinds.get(kind, 0) + int(n)
        totals.labels += len(labels["detection_order"]) + len(labels["alert_order"])
        totals.completed += int(completed.sum())
        totals.orders += count

    def _insert_new_wallets(self, conn: sa.Connection) -> int:
        """The fraud wallets this tick's sessions created, with their truth rows."""
        new = np.array(self.created_wallets, dtype=np.int64)
        if not len(new):
            return 0
        w = self.wallets
        stamps = self.clock.stamp(w.created[new]).astype("datetime64[s]").tolist()
        rows = [
            {"address": a, "country": c, "created_at": s}
            for a, c, s in zip(_plain(w.address[new]), _plain(w.country[new]), stamps, strict=True)
        ]
        ids = _insert_returning_ids(conn, schema.wallets, rows, "wallet_id", [], key="address")
        record_demo_rows(conn, "wallets", ids)
        w.old_id[new] = ids
        conn.execute(
            schema.demo_truth_wallets.insert(),
            [
                {
                    "wallet_id": i,
                    "kind": KINDS[k],
                    "home_lat": round(la, 5),
                    "home_lon": round(lo, 5),
                    "activity": a,
                }
                for i, k, la, lo, a in zip(
                    ids,
                    _plain(w.kind[new]),
                    _plain(w.home_lat[new]),
                    _plain(w.home_lon[new]),
                    _plain(w.activity[new]),
                    strict=True,
                )
            ],
        )
        self.created_wallets = []
        return len(new)

    def _insert_truth(self, conn, order_ids, orders, arms, conversion, truth, labels) -> None:
        """demo_truth_orders for every order; bot detections and security alerts stamped
        with when they will become available, days from now, as the generator writes them."""
        ids = np.asarray(order_ids, dtype=np.int64)
        conn.execute(
            schema.demo_truth_orders.insert(),
            [
                {
                    "order_id": i,
                    "fraud_probability": p,
                    "is_fraud": f,
                    "pricing_arm": a,
                    "conversion_probability": c,
                }
                for i, p, f, a, c in zip(
                    _plain(ids),
                    _plain(truth["probability"]),
                    _plain(truth["is_fraud"]),
                    arms,
                    _plain(conversion),
                    strict=True,
                )
            ],
        )
        actor = orders["buyer"]
        w = self.wallets

        def stamps(at: np.ndarray) -> list:
            return self.clock.stamp(at).astype("datetime64[s]").tolist()

        detected = labels["detection_order"]
        if len(detected):
            conn.execute(
                schema.bot_detection.insert(),
                [
                    {
                        "order_id": o,
                        "wallet_id": wid,
                        "wallet_address": a,
                        "bot_score": s,
                        "is_bot": b,
                        "detector": d,
                        "label_available_at": at,
                    }
                    for o, wid, a, s, b, d, at in zip(
                        _plain(ids[detected]),
                        _plain(w.old_id[actor[detected]]),
                        _plain(w.address[actor[detected]]),
                        _plain(np.round(labels["detection_score"], 4)),
                        _plain(labels["detection_is_bot"]),
                        _plain(labels["detection_detector"]),
                        stamps(labels["detection_at"]),
                        strict=True,
                    )
                ],
            )
        alerted = labels["alert_order"]
        if len(alerted):
            conn.execute(
                schema.security_alerts.insert(),
                [
                    {
                        "order_id": o,
                        "wallet_id": wid,
                        "wallet_address": a,
                        "alert_type": k,
                        "severity": s,
                        "confirmed_fraud": c,
                        "details": d,
                        "label_available_at": at,
                    }
                    for o, wid, a, k, s, c, d, at in zip(
                        _plain(ids[alerted]),
                        _plain(w.old_id[actor[alerted]]),
                        _plain(w.address[actor[alerted]]),
                        _plain(labels["alert_type"]),
                        _plain(labels["alert_severity"]),
                        _plain(labels["alert_confirmed"]),
                        _plain(labels["alert_details"]),
                        stamps(labels["alert_at"]),
                        strict=True,
                    )
                ],
            )

    def _score(self, conn: sa.Connection, order_ids: list, rows: list) -> list:
        """Online features of the orders, each as of its own stamp, from set-based reads
        (every buyer's history and every event's facts at once), one batch prediction, one
        insert stamped like the orders."""
        import pandas as pd

        from ..fraud.columns import FEATURES
        from ..fraud.online import features_of_one_order
        from ..fraud.scoring import model_version_label

        orders = [
            {**row, "order_id": i, "seller_wallet_id": None, "ticket_id": None}
            for row, i in zip(rows, order_ids, strict=True)
        ]
        histories = _wallet_rows(conn, {o["buyer_wallet_id"] for o in orders})
        # Event facts as of the earliest stamp: a warm start's minutes change sales by a few.
        facts = self._event_facts(
            conn, {o["event_id"] for o in orders}, min(o["created_at"] for o in orders)
        )
        features = [
            features_of_one_order(
                o, o["created_at"], histories[o["buyer_wallet_id"]], facts[o["event_id"]]
            )
            for o in orders
        ]
        predictor = self.predictor
        scores = np.round(predictor.model.predict_proba(pd.DataFrame(features)), 6)
        decisions = _plain(predictor.thresholds.decide(scores))
        label = model_version_label(predictor.mv)
        conn.execute(
            schema.fraud_predictions.insert(),
            [
                {
                    "order_id": o["order_id"],
                    "fraud_score": float(s),
                    "decision": d,
                    "features": {k: _json_value(f[k]) for k in FEATURES},
                    "model_version": label,
                    "created_at": o["created_at"],
                }
                for o, s, d, f in zip(orders, _plain(scores), decisions, features, strict=True)
            ],
        )
        return decisions

    def _event_facts(self, conn: sa.Connection, event_ids: set, moment: datetime) -> dict:
        """What the event features need, for several events in two grouped queries."""
        from ..fraud.columns import LABEL_HISTORY_WINDOWS_DAYS
        from ..fraud.labels import label_query

        o = schema.orders
        ids = sorted(int(e) for e in event_ids)
        sales = dict(
            conn.execute(
                sa.select(o.c.event_id, sa.func.count())
                .where(
                    o.c.event_id.in_(ids),
                    o.c.status == "COMPLETED",
                    o.c.is_resale.is_(False),
                    o.c.created_at < moment,
                )
                .group_by(o.c.event_id)
            ).all()
        )
        labels = label_query(
            available_before=moment, order_ids=sa.select(o.c.order_id).where(o.c.event_id.in_(ids))
        ).subquery()
        since = moment - timedelta(days=max(LABEL_HISTORY_WINDOWS_DAYS))
        times: dict[int, list] = {e: [] for e in ids}
        for event_id, at in conn.execute(
            sa.select(o.c.event_id, labels.c.label_available_at)
            .join_from(labels, o, o.c.order_id == labels.c.order_id)
            .where(labels.c.label_available_at >= since)
        ):
            times[int(event_id)].append(at)
        index = {int(e): i for i, e in enumerate(self.event_ids)}
        return {
            e: {
                "base_price": float(self.base_prices[index[e]]),
                "capacity": float(self.capacities[index[e]]),
                "sales_before": int(sales.get(e, 0)),
                "label_times": times[e],
            }
            for e in ids
        }

    # ------------------------------------------------------------ the loop

    def run(
        self,
        rate: float,
        duration: float | None,
        on_tick: Callable[[StreamTotals], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        *,
        warm: bool = True,
    ) -> StreamTotals:
        """Stream until `duration` seconds have passed (None: forever) or `should_stop()`,
        after a warm start (`warm_start`) unless `warm` is false.

        Ticks are due once a second on a monotonic clock; each places what is owed by then
        (floor(rate x due seconds)), so a slow tick is caught up by the next, never drifts.
        A stop request ends the loop between ticks, never inside one."""
        totals = StreamTotals(requested_rate=rate)
        origin = utcnow()
        if warm:
            backdated = self.warm_start(rate, origin)
            totals.warm_start = {
                "orders": backdated.orders,
                "kinds": backdated.kinds,
                "decisions": backdated.decisions,
            }
            origin = max(utcnow(), origin + timedelta(seconds=1))
        started = time.monotonic()
        owed_total = None if duration is None else int(rate * duration)
        placed, due_ticks = 0, 0
        while not should_stop():
            elapsed = time.monotonic() - started
            if duration is not None and elapsed >= duration:
                break
            due_ticks = int(elapsed) + 1
            owed = int(rate * due_ticks)
            if owed_total is not None:
                owed = min(owed, owed_total)
            # A clock held by MLKIT_NOW still moves on with the stream.
            now = max(utcnow(), origin + timedelta(seconds=due_ticks - 1))
            self.tick(owed - placed, totals, now)
            placed = owed
            totals.seconds = time.monotonic() - started
            if on_tick:
                on_tick(totals)
            pause_until = started + due_ticks
            if duration is not None:
                pause_until = min(pause_until, started + duration)
            while time.monotonic() < pause_until and not should_stop():
                time.sleep(min(0.1, max(0.0, pause_until - time.monotonic())))
        totals.seconds = time.monotonic() - started
        return totals


def _follow_up_gaps(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds from a first ticket to its second."""
    min_gap, mean_gap = FOLLOW_UP_GAP
    return min_gap + np.floor(rng.exponential(mean_gap, n)).astype(np.int64)


def _json_value(value):
    """A feature value as JSON takes it: NaN as null, numpy scalars as plain values."""
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and value != value else value


def _wallet_rows(conn: sa.Connection, wallet_ids: set) -> dict[int, dict]:
    """Each wallet's history as the plain rows `features_of_one_order` takes, read for all
    the wallets at once (one query per table)."""
    from ..fraud.online import wallet_histories

    history = wallet_histories(conn, wallet_ids)
    records = {
        name: frame.astype(object).where(frame.notna(), None).to_dict("records")
        for name, frame in history.items()
    }
    out = {int(w): {"orders": [], "wallets": [], "transfers": [], "labels": []} for w in wallet_ids}
    for row in records["orders"]:
        for end in ("buyer_wallet_id", "seller_wallet_id"):
            if row[end] is not None and int(row[end]) in out:
                out[int(row[end])]["orders"].append(row)
    for row in records["wallets"]:
        out[int(row["wallet_id"])]["wallets"].append(row)
    for row in records["transfers"]:
        for end in {row["from_wallet_id"], row["to_wallet_id"]}:
            if end is not None and int(end) in out:
                out[int(end)]["transfers"].append(row)
    for row in records["labels"]:
        if row["wallet_id"] is not None and int(row["wallet_id"]) in out:
            out[int(row["wallet_id"])]["labels"].append(row)
    return out


def _insert_returning_ids(
    conn: sa.Connection, table: sa.Table, rows: list[dict], id_column: str, stamps, key=None
) -> list[int]:
    """Insert rows in one statement and return their ids in row order: RETURNING where the
    dialect keeps parameter order (SQLite, PostgreSQL, MariaDB), else read back by a unique
    `key` column or by the batch's stamps (one multi-row insert numbers its rows in order)."""
    if conn.dialect.insert_executemany_returning_sort_by_parameter_order:
        result = conn.execute(
            table.insert().returning(table.c[id_column], sort_by_parameter_order=True), rows
        )
        return [int(i) for i in result.scalars().all()]
    conn.execute(table.insert().values(rows))
    if key is not None:
        found = dict(
            conn.execute(
                sa.select(table.c[key], table.c[id_column]).where(
                    table.c[key].in_([r[key] for r in rows])
                )
            ).all()
        )
        return [int(found[r[key]]) for r in rows]
    ids = (
        conn.execute(
            sa.select(table.c[id_column])
            .where(table.c.created_at.between(min(stamps), max(stamps)))
            .order_by(table.c[id_column].desc())
            .limit(len(rows))
        )
        .scalars()
        .all()
    )
    if len(ids) != len(rows):
        raise MlkitError(f"could not read back the {len(rows)} {table.name} just inserted")
    return sorted(int(i) for i in ids)
