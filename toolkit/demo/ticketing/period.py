"""One period of the ticketing world, from the events and wallets to the frames."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..params import DemoParams
from .facts import _BOT_ORDER_SHARE, _STOLEN_ORDER_SHARE, ID_COLUMNS, NORMAL, RESALE_SHARE
from .frames import _frames, _pricing_truth_frame
from .labels import (
    _admin_audit_log,
    _blacklist,
    _fraud_features,
    _fraud_truth,
    _labels,
    _security_events,
)
from .orders import (
    _bot_orders,
    _bot_sessions,
    _conversion_table,
    _normal_orders,
    _price_and_convert,
    _stolen_orders,
    _stolen_sessions,
)
from .secondary import _gifts, _mint_tickets, _resales, _transfers
from .state import TicketingState
from .world import _Clock, _concat, _Events, _make_events, _ongoing_events, _Wallets


def generate(params: DemoParams, state: TicketingState | None) -> dict[str, pd.DataFrame]:
    """One period of the ticketing world: table name -> frame of schema columns."""
    rng = params.rng("ticketing")
    clock = _Clock.of(params)
    state = state if state is not None else TicketingState()
    next_id = {t: int(state.max_ids.get(t) or 0) + 1 for t in ID_COLUMNS}
    conversion = _conversion_table(state.pricing_truth)

    n_orders = int(params.orders)
    n_resale = round(RESALE_SHARE * n_orders)
    n_primary = n_orders - n_resale
    fraud = params.factor("fraud")
    n_bot = round(min(_BOT_ORDER_SHARE * fraud, 0.3) * n_primary)
    n_stolen = round(min(_STOLEN_ORDER_SHARE * fraud, 0.15) * n_primary)
    n_normal = n_primary - n_bot - n_stolen

    ongoing = _ongoing_events(state.events, clock)
    if ongoing is not None:
        ongoing.price_factor[:] = params.factor("price")
    if ongoing is None:
        events = _make_events(rng, params, clock, max(20, round(n_orders / 400)))
    else:  # sales go on; new events open at the world's pace (one per 400 orders)
        fresh = _make_events(rng, params, clock, int(rng.poisson(n_orders / 400)), False)
        events = _Events.concat(ongoing, fresh, clock.horizon)
    wallets = _Wallets.from_state(state.wallets, clock)
    bots = _bot_sessions(rng, events, wallets, n_bot)
    stolen = _stolen_sessions(rng, events, wallets, n_stolen)
    n_new_normal = (
        max(10, n_orders // 6 - bots.n_new_wallets - stolen.n_new_wallets)
        if params.period == 0 or not (wallets.kind == NORMAL).any()
        else max(10, round(0.2 * n_orders / 6))
    )
    wallets.add_normal(rng, n_new_normal)
    primary = _concat(
        [
            _normal_orders(rng, events, wallets, n_normal),
            _bot_orders(rng, events, wallets, bots),
            _stolen_orders(rng, events, wallets, stolen),
        ]
    )
    _price_and_convert(rng, events, conversion, primary, clock)

    tickets = _mint_tickets(rng, primary, clock, 0)
    resales, sold = _resales(rng, events, wallets, tickets, n_resale, clock)
    if len(resales["t"]) < n_resale:  # too few tickets to resell: top up with primary sales
        extra = _normal_orders(rng, events, wallets, n_resale - len(resales["t"]))
        _price_and_convert(rng, events, conversion, extra, clock)
        tickets = _concat([tickets, _mint_tickets(rng, extra, clock, len(tickets["minted"]))])
        primary = _concat([primary, extra])
    gifts = _gifts(rng, events, wallets, tickets, sold)

    orders = _concat([primary, resales])
    order_rank = np.lexsort((np.arange(len(orders["t"])), orders["t"]))
    orders = {k: v[order_rank] for k, v in orders.items()}
    order_ids = np.empty_like(order_rank)
    order_ids[order_rank] = np.arange(len(order_rank))  # generation position -> sorted position
    wallets.settle_creation(rng, orders, gifts, clock)

    transfers = _transfers(primary, resales, gifts, tickets, order_ids, len(primary["t"]))
    features = _fraud_features(wallets, orders, transfers)
    truth = _fraud_truth(rng, features)
    labels = _labels(rng, wallets, orders, truth, features["actor"])

    frames = _frames(
        clock,
        next_id,
        events,
        wallets,
        orders,
        tickets,
        transfers,
        truth,
        labels,
        features["actor"],
    )
    frames["security_events"] = _security_events(
        rng, clock, wallets, orders, n_orders, next_id["security_events"]
    )
    frames["blacklisted_wallets"] = _blacklist(
        rng, clock, wallets, labels, features["actor"], state.blacklisted_addresses
    )
    frames["admin_audit_log"] = _admin_audit_log(rng, clock, next_id["admin_audit_log"])
    if params.period == 0:
        frames["demo_truth_pricing"] = _pricing_truth_frame(conversion)
    return frames
