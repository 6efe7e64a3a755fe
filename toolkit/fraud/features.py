"""Fraud features, each known at the order's timestamp, computed set-based with numpy.

"Before t" means strictly earlier than the order's timestamp t: rows of the same second, the order's
own label and anything later never contribute, while the order's own attributes are known at t. Each
feature's definition sits beside its name in `columns.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..geo import JET_SPEED_KMH, haversine_km
from .columns import LABEL_HISTORY_WINDOWS_DAYS

HOUR = 3600
DAY = 86_400
_SHIFT = np.int64(32)  # group id in the high bits, seconds since the base in the low 32


@dataclass
class FraudSources:
    """Everything the features of a set of orders are computed from; `orders` holds every
    order before the end of the range, since history counts."""

    # order_id, buyer_wallet_id, seller_wallet_id, event_id, ticket_id, price,
    # payment_method, is_resale, status, geo_lat, geo_lon, created_at
    orders: pd.DataFrame
    wallets: pd.DataFrame  # wallet_id, created_at
    events: pd.DataFrame  # event_id, base_price, capacity
    transfers: pd.DataFrame  # transfer_id, from_wallet_id, to_wallet_id, transferred_at
    # order_id, wallet_id, label_available_at (confirmed fraud labels only)
    labels: pd.DataFrame


def _seconds(values) -> np.ndarray:
    return pd.to_datetime(pd.Series(values)).to_numpy(dtype="datetime64[s]").astype(np.int64)


class _Queries:
    """Moments to ask about, per group, with the order that visits them sorted by (group,
    time): binary searches that walk the timeline in one direction stay in cache."""

    def __init__(self, groups: np.ndarray, times: np.ndarray):
        self.groups = groups.astype(np.int64)
        self.times = times
        self.order = np.lexsort((times, self.groups))


class _Timeline:
    """Timestamps of events per group, sorted, to count and look up "before t" quickly."""

    def __init__(self, groups: np.ndarray, times: np.ndarray, base: int, values=None):
        keys = (groups.astype(np.int64) << _SHIFT) | (times - base)
        order = np.argsort(keys, kind="stable")
        self.order = order  # row of each sorted position
        self.keys = keys[order]
        self.base = base
        self.values = None if values is None else np.asarray(values, dtype=float)[order]
        # Running sums restart per group, so a group's sums never depend on other groups'
        # rows: adding later data elsewhere cannot change a float's last bit here.
        self.group_cumsum = (
            None
            if values is None
            else pd.Series(self.values).groupby(self.keys >> _SHIFT).cumsum().to_numpy()
        )

    def _search(self, q: _Queries, offset: int | None = 0) -> np.ndarray:
        """Position of (group, t - offset) in the timeline; offset None: the group's start."""
        if offset is None:
            needles = q.groups << _SHIFT
        else:
            needles = (q.groups << _SHIFT) | np.maximum(q.times - offset - self.base, 0)
        found = np.empty(len(needles), dtype=np.int64)
        found[q.order] = np.searchsorted(self.keys, needles[q.order], side="left")
        return found

    def count_before(self, q: _Queries, window: int | None = None) -> np.ndarray:
        """Events of the group in [t - window, t) (all before t without a window)."""
        return self._search(q) - self._search(q, window)

    def sum_before(self, q: _Queries) -> tuple[np.ndarray, np.ndarray]:
        end = self._search(q)
        count = end - self._search(q, None)
        if len(self.keys) == 0:
            return count, np.zeros(len(count))
        total = np.where(count > 0, self.group_cumsum[np.maximum(end - 1, 0)], 0.0)
        return count, total

    def value_at(self, index: np.ndarray) -> np.ndarray:
        """The value at sorted positions; NaN where the index is -1."""
        if len(self.keys) == 0:
            return np.full(len(index), np.nan)
        return np.where(index >= 0, self.values[np.maximum(index, 0)], np.nan)

    def last_before(self, q: _Queries) -> np.ndarray:
        """Index (into the sorted timeline) of the group's latest event before t, or -1."""
        idx = self._search(q) - 1
        same = idx >= 0
        same[same] = (self.keys[idx[same]] >> _SHIFT) == q.groups[same]
        return np.where(same, idx, -1)

    def first_index(self, q: _Queries) -> np.ndarray:
        start = self._search(q, None)
        ok = start < len(self.keys)
        ok[ok] = (self.keys[start[ok]] >> _SHIFT) == q.groups[ok]
        return np.where(ok, start, -1)


@dataclass
class _Moments:
    """The orders' times in seconds, the timelines' base, and the per-wallet and per-event
    queries at those times."""

    t: np.ndarray
    base: int
    by_wallet: _Queries
    by_event: _Queries


def _first_times(groups: np.ndarray, items: np.ndarray, times: np.ndarray):
    """The first time each (group, item) pair occurs: distinct counts become event counts."""
    frame = pd.DataFrame({"g": groups, "i": items, "t": times})
    first = frame.groupby(["g", "i"], sort=False)["t"].min().reset_index()
    return first["g"].to_numpy(), first["i"].to_numpy(), first["t"].to_numpy()


def _codes(*columns: pd.Series) -> list[np.ndarray]:
    """Dense integer codes shared by several id columns (ids may be large or sparse)."""
    stacked = pd.concat([pd.Series(c, dtype="float64") for c in columns], ignore_index=True)
    codes, _ = pd.factorize(stacked, use_na_sentinel=True)
    out, offset = [], 0
    for c in columns:
        out.append(codes[offset : offset + len(c)].astype(np.int64))
        offset += len(c)
    return out


def compute_features(sources: FraudSources, target_ids: np.ndarray | None = None) -> pd.DataFrame:
    """Feature rows (order_id, wallet_id, event_id, feature_ts, features...) for the target
    orders (default: every order in `sources.orders`)."""
    orders = sources.orders.sort_values(["created_at", "order_id"], kind="stable")
    orders = orders.reset_index(drop=True)
    t = _seconds(orders["created_at"])
    transfers_t = _seconds(sources.transfers["transferred_at"])
    labels_t = _seconds(sources.labels["label_available_at"])
    window_max = max(LABEL_HISTORY_WINDOWS_DAYS) * DAY
    earliest = min(
        t.min(initial=0),
        transfers_t.min(initial=t.min(initial=0)),
        labels_t.min(initial=t.min(initial=0)),
    )
    base = int(earliest) - window_max - 1

    buyer, seller, tr_from, tr_to, label_wallet = _codes(
        orders["buyer_wallet_id"],
        orders["seller_wallet_id"],
        sources.transfers["from_wallet_id"],
        sources.transfers["to_wallet_id"],
        sources.labels["wallet_id"],
    )
    event = pd.factorize(orders["event_id"])[0].astype(np.int64)
    completed = (orders["status"] == "COMPLETED").to_numpy()
    resale = orders["is_resale"].astype(bool).to_numpy()
    features: dict[str, np.ndarray] = {}
    by_wallet, by_event = _Queries(buyer, t), _Queries(event, t)
    moments = _Moments(t, base, by_wallet, by_event)

    every_order = _Timeline(buyer, t, base)
    features["txn_velocity_1h"] = every_order.count_before(by_wallet, HOUR).astype(float)

    wallet_created = _seconds(sources.wallets["created_at"])
    created = pd.Series(wallet_created, index=sources.wallets["wallet_id"].to_numpy())
    wallet_birth = created.reindex(orders["buyer_wallet_id"].to_numpy()).to_numpy(dtype=float)
    features["wallet_age_days"] = (t - wallet_birth) / DAY

    events = sources.events.set_index("event_id")
    capacity = events["capacity"].reindex(orders["event_id"]).to_numpy(dtype=float)
    base_price = events["base_price"].reindex(orders["event_id"]).to_numpy(dtype=float)
    primary_sales = completed & ~resale
    sales = _Timeline(event[primary_sales], t[primary_sales], base)
    features["event_popularity_score"] = sales.count_before(by_event) / capacity
    features["price_deviation_ratio"] = orders["price"].to_numpy(dtype=float) / base_price - 1.0

    g, _, first = _first_times(buyer[completed], event[completed], t[completed])
    features["cross_event_attendance"] = (
        _Timeline(g, first, base).count_before(by_wallet).astype(float)
    )
    features["geo_velocity_flag"] = _geo_velocity_flag(orders, every_order, moments)

    method = pd.factorize(orders["payment_method"])[0].astype(np.int64)
    g, m, first = _first_times(buyer, method, t)
    seen_before = _Timeline(g, first, base).count_before(by_wallet)
    first_use = pd.Series(first, index=pd.MultiIndex.from_arrays([g, m]))
    own_first = first_use.reindex(pd.MultiIndex.from_arrays([buyer, method])).to_numpy()
    features["payment_method_diversity"] = (seen_before + (own_first >= t)).astype(float)

    # Transfer graph degree before t: both ends of every edge see the other.
    ends = np.concatenate([tr_from, tr_to])
    others = np.concatenate([tr_to, tr_from])
    when = np.concatenate([transfers_t, transfers_t])
    known = (ends >= 0) & (others >= 0)
    g, _, first = _first_times(ends[known], others[known], when[known])
    features["social_graph_centrality"] = (
        _Timeline(g, first, base).count_before(by_wallet).astype(float)
    )

    features.update(_hold_features(orders, (completed, resale, buyer, seller), moments))
    labels = sources.labels, labels_t, label_wallet
    features.update(_label_history(labels, orders["order_id"], event, moments))

    frame = pd.DataFrame(
        {
            **order_keys(orders, "feature_ts"),
            **features,
            "payment_method": orders["payment_method"].to_numpy(),
            "is_resale": resale,
        }
    )
    if target_ids is not None:
        frame = frame[frame["order_id"].isin(target_ids)]
    return frame.reset_index(drop=True)


def order_keys(orders: pd.DataFrame, moment: str) -> dict[str, np.ndarray]:
    """The keys of feature and dataset rows from an orders frame: order, buyer wallet and
    event ids, and the order's timestamp named `moment`."""
    return {
        "order_id": orders["order_id"].to_numpy(dtype=np.int64),
        "wallet_id": orders["buyer_wallet_id"].to_numpy(dtype=np.int64),
        "event_id": orders["event_id"].to_numpy(dtype=np.int64),
        moment: orders["created_at"].to_numpy(),
    }


def _geo_velocity_flag(
    orders: pd.DataFrame, every_order: _Timeline, moments: _Moments
) -> np.ndarray:
    """1 when the speed from the wallet's previous order to this one beats a jet, else 0;
    NaN without a previous order or a location."""
    t = moments.t
    previous = every_order.last_before(moments.by_wallet)
    has_prev = previous >= 0
    prev_row = np.where(has_prev, every_order.order[np.maximum(previous, 0)], 0)
    lat = orders["geo_lat"].to_numpy(dtype=float)
    lon = orders["geo_lon"].to_numpy(dtype=float)
    km = haversine_km(lat[prev_row], lon[prev_row], lat, lon)
    hours = (t - t[prev_row]) / HOUR
    with np.errstate(divide="ignore", invalid="ignore"):
        speed = km / hours
    flag = (speed > JET_SPEED_KMH).astype(float)
    flag[~has_prev | np.isnan(km)] = np.nan
    return flag


def _hold_features(orders: pd.DataFrame, flags: tuple, moments: _Moments) -> dict[str, np.ndarray]:
    """avg_ticket_hold_time and time_to_first_resale from `flags` (completed, resale, buyer
    code, seller code per order): how long a seller held each ticket it resold, since the
    ticket's previous completed sale, to that seller."""
    completed, resale, buyer, seller = flags
    t, base, by_wallet = moments.t, moments.base, moments.by_wallet
    ticket = orders["ticket_id"].to_numpy(dtype=float)
    sold = completed & ~np.isnan(ticket)
    sold_rows = np.flatnonzero(sold)
    ticket_code = pd.factorize(ticket[sold_rows])[0].astype(np.int64)
    ticket_line = _Timeline(ticket_code, t[sold_rows], base)
    resale_rows = np.flatnonzero(sold & resale)
    resale_ticket = pd.Series(ticket_code, index=sold_rows).reindex(resale_rows).to_numpy()
    acquired = ticket_line.last_before(_Queries(resale_ticket, t[resale_rows]))
    valid = acquired >= 0
    acquired_row = sold_rows[ticket_line.order[np.maximum(acquired, 0)]]
    valid &= buyer[acquired_row] == seller[resale_rows]
    hold_hours = (t[resale_rows] - t[acquired_row]) / HOUR
    resale_seller, resale_t, hold_hours = (
        seller[resale_rows][valid],
        t[resale_rows][valid],
        hold_hours[valid],
    )
    holds = _Timeline(resale_seller, resale_t, base, values=hold_hours)
    count, total = holds.sum_before(by_wallet)
    with np.errstate(divide="ignore", invalid="ignore"):
        average = np.where(count > 0, total / count, np.nan)
    first_idx = holds.first_index(by_wallet)
    first_time = np.full(len(t), -1, dtype=np.int64)
    found = first_idx >= 0
    first_time[found] = holds.keys[first_idx[found]] & 0xFFFFFFFF
    first_idx = np.where(found & (first_time + base < t), first_idx, -1)
    return {"avg_ticket_hold_time": average, "time_to_first_resale": holds.value_at(first_idx)}


def _label_history(
    labels: tuple, order_ids: pd.Series, event: np.ndarray, moments: _Moments
) -> dict[str, np.ndarray]:
    """Labels of the wallet's and the event's orders available in [t - w, t), minus the
    order's own label; `labels` is the label frame, its times in seconds and wallet codes."""
    labels, labels_t, label_wallet = labels
    t, base = moments.t, moments.base
    label_order = labels["order_id"].to_numpy()
    order_event = pd.Series(event, index=order_ids.to_numpy())
    label_event = order_event.reindex(label_order).to_numpy(dtype=float)
    own_label_t = (
        pd.Series(labels_t, index=label_order)
        .groupby(level=0)
        .min()
        .reindex(order_ids.to_numpy())
        .to_numpy(dtype=float)
    )
    wallet_labels = _Timeline(label_wallet[label_wallet >= 0], labels_t[label_wallet >= 0], base)
    has_event = ~np.isnan(label_event)
    event_labels = _Timeline(label_event[has_event].astype(np.int64), labels_t[has_event], base)
    features = {}
    for days in LABEL_HISTORY_WINDOWS_DAYS:
        window = days * DAY
        own = ((own_label_t >= t - window) & (own_label_t < t)).astype(int)
        wallet_count = wallet_labels.count_before(moments.by_wallet, window)
        features[f"wallet_labels_{days}d"] = (wallet_count - own).astype(float)
        features[f"event_labels_{days}d"] = (
            event_labels.count_before(moments.by_event, window) - own
        ).astype(float)
    return features
