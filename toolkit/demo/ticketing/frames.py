"""The ticketing world as frames of schema columns, ids assigned."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...inputs import ORDER_STATUSES as STATUSES
from ...inputs import PAYMENT_METHODS
from .facts import _ARM_MULTIPLIER, ARMS, CITY_COUNTRIES, CITY_NAMES, EVENT_TYPES, KINDS, RESALE_ARM
from .labels import LABEL_TABLES, label_columns
from .world import _Clock, _Events, _ips, _join_text, _text, _Wallets, _within_group_offsets


def _ids_or_null(ids: np.ndarray, index: np.ndarray) -> np.ndarray:
    """ids[index], None where index < 0; object dtype, so every loader path writes NULL."""
    out = np.full(len(index), None, dtype=object)
    known = index >= 0
    out[known] = ids[index[known]]  # int64 -> Python int
    return out


@dataclass
class _Ids:
    """The database id of every wallet, event, ticket and order of the period."""

    wallet: np.ndarray
    new_wallets: np.ndarray  # positions of this period's wallets, in order of creation
    event: np.ndarray
    ticket: np.ndarray
    order: np.ndarray

    @classmethod
    def assign(
        cls, next_id: dict[str, int], events: _Events, wallets: _Wallets, n_tickets, n_orders
    ) -> _Ids:
        """Existing wallets and events keep their ids; new ones are numbered in order of
        creation, after the largest id already stored."""
        new = np.flatnonzero(wallets.is_new)
        new = new[np.lexsort((new, wallets.created[new]))]
        wallet_id = wallets.old_id.copy()
        wallet_id[new] = next_id["wallets"] + np.arange(len(new))
        event_id = events.old_id.copy()
        event_id[events.is_new] = next_id["events"] + np.arange(int(events.is_new.sum()))
        return cls(
            wallet=wallet_id,
            new_wallets=new,
            event=event_id,
            ticket=next_id["tickets"] + np.arange(n_tickets),
            order=next_id["orders"] + np.arange(n_orders),
        )


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
    ids = _Ids.assign(next_id, events, wallets, len(tickets["minted"]), len(orders["t"]))
    frames = {
        **_wallet_frames(clock, wallets, ids),
        "events": _events_frame(clock, events, tickets, ids),
        "tickets": _tickets_frame(clock, events, tickets, ids.ticket, ids.event, ids.wallet),
        **_order_frames(clock, orders, truth, ids),
        "ticket_transfers": _transfers_frame(clock, transfers, next_id, ids),
    }
    for table, id_column in LABEL_TABLES.items():
        rows, available, columns = label_columns(labels, table)
        frames[table] = _label_frame(
            id_column,
            next_id[table],
            available,
            clock,
            order_id=ids.order[rows],
            wallet_id=ids.wallet[actor[rows]],
            wallet_address=_text(wallets.address[actor[rows]]),
            **{k: _text(v) if v.dtype == object else v for k, v in columns.items()},
        )
    return frames


def _wallet_frames(clock: _Clock, wallets: _Wallets, ids: _Ids) -> dict[str, pd.DataFrame]:
    new = ids.new_wallets
    return {
        "wallets": pd.DataFrame(
            {
                "wallet_id": ids.wallet[new],
                "address": _text(wallets.address[new]),
                "country": _text(wallets.country[new]),
                "created_at": clock.stamp(wallets.created[new]),
            }
        ),
        "demo_truth_wallets": pd.DataFrame(
            {
                "wallet_id": ids.wallet[new],
                "kind": _text(KINDS, wallets.kind[new]),
                "home_lat": np.round(wallets.home_lat[new], 5),
                "home_lon": np.round(wallets.home_lon[new], 5),
                "activity": wallets.activity[new],
            }
        ),
    }


def _events_frame(clock: _Clock, events: _Events, tickets: dict, ids: _Ids) -> pd.DataFrame:
    """This period's new events (carried-over ones are already stored)."""
    return pd.DataFrame(
        {
            "event_id": ids.event,
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
                np.ceil(1.1 * np.bincount(tickets["event"], minlength=len(ids.event))),
            ).astype(np.int64),
            "sale_start": clock.stamp(events.sale_start),
            "event_date": clock.stamp(events.event_date),
            "created_at": clock.stamp(events.created),
        }
    )[events.is_new].reset_index(drop=True)


def _order_frames(clock: _Clock, orders: dict, truth: dict, ids: _Ids) -> dict[str, pd.DataFrame]:
    return {
        "orders": pd.DataFrame(
            {
                "order_id": ids.order,
                "buyer_wallet_id": ids.wallet[orders["buyer"]],
                "seller_wallet_id": _ids_or_null(ids.wallet, orders["seller"]),
                "event_id": ids.event[orders["event"]],
                "ticket_id": _ids_or_null(ids.ticket, orders["ticket"]),
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
                "order_id": ids.order,
                "fraud_probability": truth["probability"],
                "is_fraud": truth["is_fraud"],
                "pricing_arm": _text((*ARMS, RESALE_ARM), orders["arm"]),
                "conversion_probability": orders["conversion"],
            }
        ),
    }


def _transfers_frame(
    clock: _Clock, transfers: dict, next_id: dict[str, int], ids: _Ids
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "transfer_id": next_id["ticket_transfers"] + np.arange(len(transfers["t"])),
            "ticket_id": ids.ticket[transfers["ticket"]],
            "order_id": _ids_or_null(ids.order, transfers["order"]),
            "from_wallet_id": ids.wallet[transfers["from"]],
            "to_wallet_id": ids.wallet[transfers["to"]],
            "transfer_type": _text(("gift", "resale"), transfers["resale"].astype(np.int64)),
            "price": transfers["price"],
            "transferred_at": clock.stamp(transfers["t"]),
        }
    )


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
