"""Tickets minted for primary orders, and what happens to them next: resales and gifts."""

from __future__ import annotations

import numpy as np

from .facts import (
    _GIFT_SHARE,
    _RESALE_INDEX,
    BOT,
    COMPLETED,
    DAY,
    FAILED,
    HOUR,
    N_CITIES,
    NORMAL,
    REFUNDED,
    RESALE_COMPLETION,
)
from .orders import _completion_times, _habitual_methods, _home_octets, _settle_status
from .world import _Clock, _Events, _sample_without_replacement, _Wallets, _weighted_choice

# ---------------------------------------------------------------- tickets, resales, gifts


def _mint_tickets(rng: np.random.Generator, primary: dict, clock: _Clock, first: int) -> dict:
    """One ticket per completed (or later refunded) primary order, minted on completion;
    tickets are numbered from `first` in minting order."""
    primary["completed"] = _completion_times(rng, primary["t"], primary["status"], clock)
    rows = np.flatnonzero(~np.isnan(primary["completed"]))
    minted = primary["completed"][rows].astype(np.int64)
    rows = rows[np.lexsort((rows, minted))]
    primary["ticket"][rows] = first + np.arange(len(rows))
    return {
        "order": rows,
        "event": primary["event"][rows],
        "buyer": primary["buyer"][rows],
        "owner": primary["buyer"][rows].copy(),
        "face": primary["price"][rows],
        "minted": primary["completed"][rows].astype(np.int64),
        "refunded": primary["status"][rows] == REFUNDED,
    }


def _resales(
    rng: np.random.Generator,
    events: _Events,
    wallets: _Wallets,
    tickets: dict,
    n: int,
    clock: _Clock,
) -> tuple[dict, np.ndarray]:
    """Bots flip most of their tickets within hours at 1.5-3x; people sometimes resell
    days later near face value. Buyers are normal wallets."""
    room = events.limit[tickets["event"]] - 1 - tickets["minted"]
    candidates = np.flatnonzero(~tickets["refunded"] & (room >= 60))
    seller_kind = wallets.kind[tickets["buyer"][candidates]]
    weight = np.where(seller_kind == BOT, 40.0, 1.0)
    chosen = candidates[_sample_without_replacement(rng, weight, min(n, len(candidates)))]
    k = len(chosen)
    seller = tickets["buyer"][chosen]
    bot = wallets.kind[seller] == BOT
    wish = np.where(bot, 600 + rng.exponential(8 * HOUR, k), HOUR + rng.exponential(5 * DAY, k))
    hold = np.floor(np.minimum(wish, room[chosen] * rng.uniform(0.2, 0.95, k))).astype(np.int64)
    t = tickets["minted"][chosen] + hold
    markup = np.where(bot, rng.uniform(1.5, 3.0, k), rng.uniform(0.8, 1.3, k))
    pool = np.flatnonzero(wallets.kind == NORMAL)
    pick = _weighted_choice(rng, wallets.activity[pool], k)
    buyer = pool[pick]
    buyer = np.where(buyer == seller, pool[(pick + 1) % len(pool)], buyer)
    status = np.where(rng.random(k) < RESALE_COMPLETION, COMPLETED, FAILED)
    _settle_status(rng, t, status, clock)
    status[status == REFUNDED] = COMPLETED  # resales are final
    city = wallets.home[buyer]
    event = tickets["event"][chosen]
    resales = {
        "buyer": buyer,
        "event": event,
        "t": t,
        "method": _habitual_methods(rng, wallets, buyer),
        "city": city,
        "lat": wallets.home_lat[buyer] + rng.normal(0, 0.02, k),
        "lon": wallets.home_lon[buyer] + rng.normal(0, 0.03, k),
        "octets": _home_octets(rng, wallets, buyer),
        "session": np.full(k, -1, dtype=np.int64),
        "arm": np.full(k, _RESALE_INDEX, dtype=np.int64),
        "price": np.round(tickets["face"][chosen] * markup, 2),
        "face": tickets["face"][chosen],
        "conversion": np.full(k, RESALE_COMPLETION),
        "status": status.astype(np.int64),
        "seller": seller,
        "ticket": np.where(status == COMPLETED, chosen, -1),
        "resale": np.ones(k, dtype=bool),
    }
    resales["completed"] = _completion_times(rng, t, status, clock)
    transferred = resales["ticket"] >= 0
    tickets["owner"][chosen[transferred]] = buyer[transferred]
    return resales, chosen


def _gifts(
    rng: np.random.Generator, events: _Events, wallets: _Wallets, tickets: dict, resold: np.ndarray
) -> dict:
    """People pass some tickets on to someone from their own city: the transfer graph."""
    room = events.limit[tickets["event"]] - 1 - tickets["minted"]
    eligible = ~tickets["refunded"] & (room >= 60) & (wallets.kind[tickets["owner"]] == NORMAL)
    eligible[resold] = False
    candidates = np.flatnonzero(eligible)
    k = min(len(candidates), round(_GIFT_SHARE * len(tickets["minted"])))
    chosen = np.sort(rng.choice(candidates, k, replace=False)) if k else candidates[:0]
    giver = tickets["owner"][chosen]
    pool = np.flatnonzero(wallets.kind == NORMAL)
    pool = pool[np.argsort(wallets.home[pool], kind="stable")]
    bounds = np.searchsorted(wallets.home[pool], np.arange(N_CITIES + 1))
    city = wallets.home[giver]
    count = bounds[city + 1] - bounds[city]
    pick = np.floor(rng.random(k) * count).astype(np.int64)
    to = pool[bounds[city] + pick]
    clash = to == giver
    to[clash] = pool[bounds[city[clash]] + (pick[clash] + 1) % count[clash]]
    keep = to != giver  # someone alone in a city keeps the ticket
    chosen, giver, to = chosen[keep], giver[keep], to[keep]
    t = tickets["minted"][chosen] + np.floor(
        room[chosen] * rng.uniform(0.05, 0.9, len(chosen))
    ).astype(np.int64)
    tickets["owner"][chosen] = to
    return {"ticket": chosen, "from": giver, "to": to, "t": t}


def _transfers(
    primary: dict, resales: dict, gifts: dict, tickets: dict, order_ids: np.ndarray, n_primary: int
) -> dict:
    """Completed resales and gifts, in the order they happened."""
    sold = np.flatnonzero(resales["ticket"] >= 0)
    order = np.concatenate([order_ids[n_primary + sold], np.full(len(gifts["t"]), -1)])
    transfers = {
        "ticket": np.concatenate([resales["ticket"][sold], gifts["ticket"]]),
        "order": order,
        "from": np.concatenate([resales["seller"][sold], gifts["from"]]),
        "to": np.concatenate([resales["buyer"][sold], gifts["to"]]),
        "resale": np.concatenate([np.ones(len(sold), bool), np.zeros(len(gifts["t"]), bool)]),
        "price": np.concatenate([resales["price"][sold], np.full(len(gifts["t"]), np.nan)]),
        "t": np.concatenate([resales["completed"][sold], gifts["t"].astype(float)]),
        "minted": np.concatenate(
            [tickets["minted"][resales["ticket"][sold]], tickets["minted"][gifts["ticket"]]]
        ),
    }
    rank = np.lexsort((np.arange(len(transfers["t"])), transfers["t"]))
    return {k: v[rank] for k, v in transfers.items()}
