"""The ticketing world as frames of schema columns, ids assigned."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...inputs import ORDER_STATUSES as STATUSES
from ...inputs import PAYMENT_METHODS
from .facts import _ARM_MULTIPLIER, ARMS, CITY_COUNTRIES, CITY_NAMES, EVENT_TYPES, KINDS, RESALE_ARM
from .world import _Clock, _Events, _ips, _join_text, _text, _Wallets, _within_group_offsets

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
