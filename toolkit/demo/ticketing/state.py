"""What an `--append` needs to continue a ticketing world, read back from the database."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import sqlalchemy as sa

from ... import schema
from ...inputs import PAYMENT_METHODS
from ..queries import latest_rows
from .facts import _QUICK_RESALE_SECONDS, EVENT_STATE_COLUMNS, ID_COLUMNS, STATE_WALLET_COLUMNS


@dataclass
class TicketingState:
    """What an append needs to continue an existing world."""

    # One row per existing wallet (STATE_WALLET_COLUMNS): identity, latent truth (kind, home,
    # activity) and what the fraud truth looks back on: the last order (time and place), the
    # payment methods ever used (bit i = PAYMENT_METHODS[i]), tickets resold within 48 h.
    wallets: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=list(STATE_WALLET_COLUMNS))
    )
    max_ids: dict[str, int] = field(default_factory=dict)  # per ID_COLUMNS table, 0 if empty
    blacklisted_addresses: frozenset[str] = frozenset()  # never inserted twice
    pricing_truth: pd.DataFrame | None = None  # demo_truth_pricing: the conversions continue
    # Events dated after the newest order (EVENT_STATE_COLUMNS): their sales go on in the
    # appended period, so an event's history does not end with a period.
    events: pd.DataFrame | None = None


def read_state(conn: sa.Connection) -> TicketingState:
    """Read what an append needs from the database, with a few set-based queries."""
    w, tw, o = schema.wallets, schema.demo_truth_wallets, schema.orders
    wallets = pd.read_sql(
        sa.select(
            w.c.wallet_id,
            w.c.address,
            w.c.country,
            w.c.created_at,
            tw.c.kind,
            tw.c.home_lat,
            tw.c.home_lon,
            tw.c.activity,
        )
        .select_from(w.outerjoin(tw, tw.c.wallet_id == w.c.wallet_id))
        .order_by(w.c.wallet_id),
        conn,
    )
    last_orders = pd.read_sql(
        latest_rows(
            o,
            "buyer_wallet_id",
            "created_at",
            o.c.buyer_wallet_id.label("wallet_id"),
            o.c.order_id,
            o.c.created_at.label("last_order_at"),
            o.c.geo_lat.label("last_geo_lat"),
            o.c.geo_lon.label("last_geo_lon"),
        ),
        conn,
    )
    methods = pd.read_sql(
        sa.select(o.c.buyer_wallet_id.label("wallet_id"), o.c.payment_method).distinct(), conn
    )
    t, tk = schema.ticket_transfers, schema.tickets
    resold = pd.read_sql(
        sa.select(t.c.from_wallet_id.label("wallet_id"), t.c.transferred_at, tk.c.minted_at)
        .join_from(t, tk, tk.c.ticket_id == t.c.ticket_id)
        .where(t.c.transfer_type == "resale"),
        conn,
    )
    max_ids = conn.execute(
        sa.select(
            *[
                sa.select(sa.func.max(schema.metadata.tables[name].c[column]))
                .scalar_subquery()
                .label(name)
                for name, column in ID_COLUMNS.items()
            ]
        )
    ).one()
    blacklisted = conn.execute(sa.select(schema.blacklisted_wallets.c.wallet_address)).scalars()
    pricing = pd.read_sql(sa.select(schema.demo_truth_pricing), conn)
    e = schema.events
    sold = (
        sa.select(tk.c.event_id, sa.func.count().label("sold")).group_by(tk.c.event_id).subquery()
    )
    events = pd.read_sql(
        sa.select(
            *[e.c[name] for name in EVENT_STATE_COLUMNS if name != "sold"],
            sa.func.coalesce(sold.c.sold, 0).label("sold"),
        )
        .select_from(e.outerjoin(sold, sold.c.event_id == e.c.event_id))
        .where(e.c.event_date > sa.select(sa.func.max(o.c.created_at)).scalar_subquery())
        .order_by(e.c.event_id),
        conn,
    )

    last_orders = last_orders.sort_values("order_id").drop_duplicates("wallet_id", keep="last")
    wallets = wallets.merge(last_orders.drop(columns="order_id"), on="wallet_id", how="left")
    bits = methods["payment_method"].map({m: 1 << i for i, m in enumerate(PAYMENT_METHODS)})
    masks = bits.fillna(0).astype(np.int64).groupby(methods["wallet_id"]).sum()
    wallets["payment_methods_mask"] = wallets["wallet_id"].map(masks).fillna(0).astype(np.int64)
    held = pd.to_datetime(resold["transferred_at"]) - pd.to_datetime(resold["minted_at"])
    quick = resold.loc[held < pd.Timedelta(seconds=_QUICK_RESALE_SECONDS), "wallet_id"]
    wallets["quick_resales"] = (
        wallets["wallet_id"].map(quick.value_counts()).fillna(0).astype(np.int64)
    )
    return TicketingState(
        wallets=wallets[list(STATE_WALLET_COLUMNS)],
        max_ids={name: int(value or 0) for name, value in max_ids._mapping.items()},
        blacklisted_addresses=frozenset(blacklisted),
        pricing_truth=pricing if len(pricing) else None,
        events=events,
    )
