"""How `demo stream` writes a tick, in one transaction: prices, orders, truth and labels, fraud
scores (methods of `DemoStream`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import sqlalchemy as sa

from .. import schema
from ..errors import MlkitError
from ..inputs import PAYMENT_METHODS
from .fence import record_demo_rows
from .ticketing.facts import CITY_COUNTRIES, COMPLETED, FAILED, KINDS
from .ticketing.labels import LABEL_TABLES, label_columns

if TYPE_CHECKING:
    from .stream import StreamTotals

DEFAULT_CONVERSION = 0.45
# The orders columns a tick fills from its draws, in the order `_order_rows` zips them.
ORDER_COLUMNS = (
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
)


def _plain(values) -> list:
    """numpy values as plain Python ones (tolist converts every element)."""
    return np.asarray(values).tolist()


class _Writes:
    """`DemoStream`'s writing of a tick, on its engine, clock, wallets and bandit store."""

    def _place(self, orders: dict, octets: np.ndarray, at: np.ndarray, totals: StreamTotals):
        """Price, record, score and reward orders placed at seconds `at` since the origin,
        in one transaction (one insert per table, one scoring batch)."""
        from ..pricing.history import combined_reward, normalised_reward

        count = len(at)
        stamps = self.clock.stamp(at).astype("datetime64[s]").tolist()
        event = orders["event"]
        arms, prices, conversion, base, through = self._offer(event)
        completed = self.rng.random(count) < conversion
        status = np.where(completed, COMPLETED, FAILED)
        truth, labels = self._truth(orders, status, at)
        np.add.at(self.sold, event[completed], 1)

        with self.engine.begin() as conn:
            totals.new_wallets += self._insert_new_wallets(conn)
            rows = self._order_rows(orders, octets, prices, completed, stamps)
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

    def _offer(self, event: np.ndarray):
        """The bandit's arm for each order, its price, the true conversion of that offer,
        and the base price and sell-through it was priced from."""
        from ..pricing.history import ARMS
        from ..pricing.policies import choose
        from ..pricing.service import strategy_price

        states, _ = self.store.read()
        pulls = np.array([float(s.pulls) for s in states.values()])
        sums = np.array([s.reward_sum for s in states.values()])
        arm_index = np.atleast_1d(
            choose(
                self.policy,
                pulls,
                sums,
                self.rng,
                size=len(event),
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
        return arms, prices, conversion, base, through

    def _order_rows(self, orders, octets, prices, completed, stamps) -> list[dict]:
        """The orders table's rows, in plain Python values."""
        buyer_ids = self.wallets.old_id[orders["buyer"]]
        return [
            dict(
                zip(ORDER_COLUMNS, values, strict=True),
                is_resale=False,
                completed_at=values[-1] if values[4] == "COMPLETED" else None,
            )
            for values in zip(
                _plain(buyer_ids),
                _plain(self.event_ids[orders["event"]]),
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
        actor, w = orders["buyer"], self.wallets
        for table in LABEL_TABLES:
            rows, available, columns = label_columns(labels, table)
            if not len(rows):
                continue
            names = ("order_id", "wallet_id", "wallet_address", *columns, "label_available_at")
            values = (
                _plain(ids[rows]),
                _plain(w.old_id[actor[rows]]),
                _plain(w.address[actor[rows]]),
                *(_plain(v) for v in columns.values()),
                self.clock.stamp(available).astype("datetime64[s]").tolist(),
            )
            conn.execute(
                schema.metadata.tables[table].insert(),
                [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)],
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
