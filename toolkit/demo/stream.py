"""`mlkit demo stream`: live demo traffic, so a dashboard has something to watch.

Each second it places `rate` primary orders stamped now: a wallet and an event drawn from
the demo world, a pricing strategy picked by the bandit's policy and priced by it, a
conversion drawn from the demo truth's curve for that event type and strategy. Each order
is scored with the prod fraud model when there is one (online features, the same path as
`mlkit predict`), written to `fraud_predictions`, and its reward goes to the bandit
through `BanditStore.record`, exactly as a platform would report it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import schema
from ..clock import utcnow
from ..errors import MlkitError

DEFAULT_CONVERSION = 0.45
PAYMENT_METHODS = ("credit_card", "debit_card", "paypal", "apple_pay", "crypto_wallet")
PAYMENT_SHARE = (0.4, 0.25, 0.18, 0.12, 0.05)
WALLET_POOL = 5000


@dataclass
class StreamTotals:
    orders: int = 0
    completed: int = 0
    scored: int = 0
    decisions: dict = field(default_factory=dict)
    arms: dict = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "orders": self.orders,
            "completed": self.completed,
            "scored": self.scored,
            "decisions": self.decisions,
            "arms": self.arms,
            "seconds": round(self.seconds, 1),
        }


class DemoStream:
    def __init__(self, engine: Engine, config, redis=None, *, seed: int | None = None):
        from ..pricing.state import BanditStore

        self.engine, self.config = engine, config
        self.rng = np.random.default_rng(seed)
        self.store = BanditStore(engine, redis)
        self.policy = config.get("pricing.policy")
        e, w = schema.events, schema.wallets
        with engine.connect() as conn:
            events = conn.execute(
                sa.select(e.c.event_id, e.c.event_type, e.c.base_price, e.c.capacity)
            ).all()
            self.wallets = np.array(
                conn.execute(
                    sa.select(w.c.wallet_id).order_by(w.c.wallet_id.desc()).limit(WALLET_POOL)
                )
                .scalars()
                .all()
            )
        if not events or not len(self.wallets):
            raise MlkitError(
                "the database holds no events or wallets to stream orders for",
                hint="seed a demo world first: mlkit demo seed",
            )
        self.event_ids = np.array([r.event_id for r in events])
        self.event_types = np.array([r.event_type for r in events])
        self.base_prices = np.array([float(r.base_price) for r in events])
        self.capacities = np.array([max(int(r.capacity), 1) for r in events])
        self.conversion = self._conversion_table()
        self.predictor = self._predictor(redis)
        self.reward_scale = self._reward_scale()

    def _conversion_table(self) -> dict:
        t = schema.demo_truth_pricing
        with self.engine.connect() as conn:
            if "demo_truth_pricing" not in sa.inspect(conn).get_table_names():
                return {}
            rows = conn.execute(sa.select(t.c.event_type, t.c.arm, t.c.conversion)).all()
        return {(r.event_type, r.arm): float(r.conversion) for r in rows}

    def _predictor(self, redis):
        from ..fraud.scoring import FraudPredictor, Thresholds
        from ..registry import resolve

        try:
            mv = resolve(self.engine, "fraud@prod")
        except MlkitError:
            return None  # no prod fraud model: orders stream unscored
        return FraudPredictor(self.engine, mv, Thresholds.from_config(self.config), redis)

    def _reward_scale(self) -> float:
        from ..registry import resolve

        try:
            return float(resolve(self.engine, "pricing@prod").params.get("reward_scale", 3.0))
        except MlkitError:
            return 3.0

    def tick(self, count: int, totals: StreamTotals) -> None:
        """Place, score and reward `count` orders now."""
        from ..pricing.history import ARMS, combined_reward, normalised_reward
        from ..pricing.policies import choose
        from ..pricing.service import strategy_price

        if count <= 0:
            return
        rng = self.rng
        pick = rng.integers(0, len(self.event_ids), count)
        states, _ = self.store.read()
        pulls = np.array([float(s.pulls) for s in states.values()])
        sums = np.array([s.reward_sum for s in states.values()])
        arms = np.atleast_1d(
            choose(
                self.policy,
                pulls,
                sums,
                rng,
                size=count,
                epsilon=float(self.config.get("pricing.epsilon")),
            )
        )
        sold = self._sold(self.event_ids[pick])
        now = utcnow()
        o, p = schema.orders, schema.fraud_predictions
        orders = []
        for i, a in zip(pick, arms, strict=True):
            arm = ARMS[int(a)]
            base = self.base_prices[i]
            through = sold.get(int(self.event_ids[i]), 0) / self.capacities[i]
            conversion = self.conversion.get((self.event_types[i], arm), DEFAULT_CONVERSION)
            orders.append(
                {
                    "buyer_wallet_id": int(rng.choice(self.wallets)),
                    "event_id": int(self.event_ids[i]),
                    "price": strategy_price(arm, base, through, self.config),
                    "payment_method": str(rng.choice(PAYMENT_METHODS, p=PAYMENT_SHARE)),
                    "is_resale": False,
                    "status": "COMPLETED" if rng.random() < conversion else "FAILED",
                    "created_at": now,
                    "_arm": arm,
                    "_base": base,
                    "_through": through,
                }
            )
        with self.engine.begin() as conn:
            for order in orders:
                row = {k: v for k, v in order.items() if not k.startswith("_")}
                order["order_id"] = conn.execute(o.insert().values(**row)).inserted_primary_key[0]
        if self.predictor is not None:
            predictions = []
            for order in orders:
                result = self.predictor.predict(order)
                predictions.append(
                    {
                        "order_id": order["order_id"],
                        "fraud_score": result["fraud_score"],
                        "decision": result["decision"],
                        "features": result["features"],
                        "model_version": result["model_version"],
                        "created_at": now,
                    }
                )
                totals.decisions[result["decision"]] = (
                    totals.decisions.get(result["decision"], 0) + 1
                )
            with self.engine.begin() as conn:
                conn.execute(p.insert(), predictions)
            totals.scored += len(predictions)
        for order in orders:
            converted = float(order["status"] == "COMPLETED")
            combined = combined_reward(
                np.array([order["price"]]),
                np.array([order["_base"]]),
                np.array([converted]),
                np.array([order["_through"]]),
            )
            self.store.record(
                order["_arm"], float(normalised_reward(combined, self.reward_scale)[0])
            )
            totals.arms[order["_arm"]] = totals.arms.get(order["_arm"], 0) + 1
            totals.completed += int(converted)
        totals.orders += len(orders)

    def _sold(self, event_ids: np.ndarray) -> dict:
        """Completed primary sales so far of the given events (one grouped query)."""
        o = schema.orders
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(o.c.event_id, sa.func.count())
                .where(
                    o.c.event_id.in_(sorted(set(event_ids.tolist()))),
                    o.c.status == "COMPLETED",
                    o.c.is_resale == sa.false(),
                )
                .group_by(o.c.event_id)
            ).all()
        return {int(e): int(c) for e, c in rows}

    def run(
        self,
        rate: float,
        duration: float | None,
        on_tick: Callable[[StreamTotals], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> StreamTotals:
        """Stream until `duration` seconds have passed (None: forever) or `should_stop()`;
        a stop request ends the loop between ticks, never inside one."""
        totals = StreamTotals()
        started = time.monotonic()
        owed = 0.0
        while (duration is None or time.monotonic() - started < duration) and not should_stop():
            tick_start = time.monotonic()
            owed += rate
            count = int(owed)
            owed -= count
            self.tick(count, totals)
            totals.seconds = time.monotonic() - started
            if on_tick:
                on_tick(totals)
            pause_until = tick_start + 1.0
            while time.monotonic() < pause_until and not should_stop():
                time.sleep(min(0.1, max(0.0, pause_until - time.monotonic())))
        return totals
