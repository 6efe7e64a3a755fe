"""`mlkit demo stream`: live traffic of the demo world, so a dashboard has something to watch.

Each second's orders are drawn as `demo seed` draws them (`stream_traffic.py`) and written, scored
and rewarded in one transaction (`stream_writes.py`); the stream only inserts rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import schema
from ..clock import utcnow
from ..errors import MlkitError
from ..geo import haversine_km
from .stream_traffic import BOT_SIZE, STOLEN_SIZE, _follow_up_gaps, _Traffic
from .stream_writes import _Writes
from .ticketing import read_state

# The generator's own sampling, reused so streamed traffic has the seeded world's shape.
from .ticketing.facts import (
    _BOT_ORDER_SHARE,
    _FOLLOW_UP_SHARE,
    _STOLEN_ORDER_SHARE,
    BOT,
    CITY_LAT,
    CITY_LON,
    DAY,
    NORMAL,
    STOLEN,
)
from .ticketing.world import _Clock, _Wallets

FAR_FUTURE = 10 * 365 * DAY
# Warm start: sessions that began up to WARM_SPAN before the stream and are still under way
# have their earlier orders backdated, never earlier than the world's last order minus
# WARM_MARGIN (the span covers all but a sliver of the longest sessions, stolen payments').
WARM_SPAN = 30 * 60
WARM_MARGIN = 5 * 60


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

    @property
    def flagged(self) -> int:
        """Orders blocked or sent to review."""
        from ..fraud.columns import flagged_count

        return flagged_count(self.decisions)

    def as_dict(self) -> dict:
        """The totals as JSON takes them, with the achieved rate before the warm start."""
        totals = asdict(self)
        warm_start = totals.pop("warm_start")
        return {
            **totals,
            "seconds": round(self.seconds, 1),
            "rate": round(self.orders / self.seconds, 2) if self.seconds else None,
            "warm_start": warm_start,
        }


class DemoStream(_Traffic, _Writes):
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

    # ------------------------------------------------------------ warm start

    def warm_start(self, rate: float, now: datetime | None = None) -> StreamTotals:
        """Start in steady state: the fraud sessions and second tickets that would be under
        way at `rate` are created with their earlier orders backdated, in one batch, and
        their later orders queued; never earlier than the world's last order (WARM_MARGIN)."""
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

    # ------------------------------------------------------------ one tick

    def tick(self, count: int, totals: StreamTotals, now: datetime | None = None) -> None:
        """Place, record, score and reward `count` orders stamped `now` (the clock's)."""
        if count <= 0:
            return
        now = now or utcnow()
        t = int((now - self.origin).total_seconds())
        orders, octets = self._draw(count, t)
        self._place(orders, octets, np.full(count, t, dtype=np.int64), totals)

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
        """Stream until `duration` seconds have passed (None: forever) or `should_stop()`, after a
        warm start unless `warm` is false; a slow tick is caught up by the next.
        """
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


def open_stream(
    engine: Engine, config, *, seed: int | None, warn: Callable[[str], None]
) -> DemoStream:
    """`mlkit demo stream`: a stream over the database and the configured Redis when it
    answers; `warn` is told when no fraud@prod model scores the orders."""
    from ..cache import redis_client

    stream = DemoStream(engine, config, redis_client(config.redis_url, required=False), seed=seed)
    if stream.predictor is None:
        warn("no fraud@prod model: orders are not scored (run: mlkit quickstart)")
    return stream
