"""A demo world in the ticketing deployment's own schema (seed 004): what a platform that never
heard of mlkit holds, for trying a `sources:` mapping on it.

The platform keys everything by text: transactions 'tx-<order id>', events 'ev-<event id>',
tickets 'tk-<ticket id>', buyers by wallet address. Its only fraud labels are blacklisted wallets:
a buyer is listed when its first confirmed fraud label (alert or bot detection) became available,
and from then on every transaction of that wallet counts as fraud.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import schema
from ..db import analyze, bulk_insert, read_frame
from ..errors import MlkitError
from ..fraud.labels import label_query

# The platform's tables a translation writes, and the columns each needs.
PLATFORM_COLUMNS = {
    "transactions": (
        "transaction_id",
        "wallet_address",
        "event_id",
        "ticket_id",
        "price_paid",
        "payment_method",
        "is_resale",
        "status",
        "timestamp",
    ),
    "blacklisted_wallets": ("wallet_address", "reason", "timestamp"),
    "security_events": ("event_type", "severity", "source_ip", "user_id", "metadata", "timestamp"),
}


def _text_id(prefix: str, column: sa.ColumnElement) -> sa.ColumnElement:
    """'<prefix>-<integer id>', NULL for NULL, on every dialect."""
    return sa.literal(f"{prefix}-") + sa.cast(column, sa.String(24))


def transactions_query() -> sa.Select:
    o, w = schema.orders, schema.wallets
    return (
        sa.select(
            _text_id("tx", o.c.order_id).label("transaction_id"),
            w.c.address.label("wallet_address"),
            _text_id("ev", o.c.event_id).label("event_id"),
            _text_id("tk", o.c.ticket_id).label("ticket_id"),
            o.c.price.label("price_paid"),
            o.c.payment_method,
            o.c.is_resale,
            o.c.status,
            o.c.created_at.label("timestamp"),
        )
        .select_from(o.join(w, w.c.wallet_id == o.c.buyer_wallet_id))
        .order_by(o.c.order_id)
    )


def blacklist_query() -> sa.Select:
    """One row per buyer wallet with a confirmed fraud label on any of its orders, listed when
    the first of them became available."""
    labels = label_query().subquery()
    o, w = schema.orders, schema.wallets
    return (
        sa.select(
            w.c.address.label("wallet_address"),
            sa.literal("confirmed fraud on an order of this wallet").label("reason"),
            sa.func.min(labels.c.label_available_at).label("timestamp"),
        )
        .select_from(
            labels.join(o, o.c.order_id == labels.c.order_id).join(
                w, w.c.wallet_id == o.c.buyer_wallet_id
            )
        )
        .group_by(w.c.address)
        .order_by(w.c.address)
    )


def security_events_query() -> sa.Select:
    """The world's security events (failed logins, resets, rate limits) as they are."""
    e = schema.security_events
    return sa.select(
        e.c.event_type,
        e.c.severity,
        e.c.source_ip,
        e.c.user_id,
        e.c.metadata,
        e.c.created_at.label("timestamp"),
    ).order_by(e.c.id)


def _platform_table(conn: sa.Connection, name: str) -> sa.Table:
    """The platform's table as it is in the target database, refusing one without the columns
    a translation writes."""
    try:
        table = sa.Table(name, sa.MetaData(), autoload_with=conn)
    except sa.exc.NoSuchTableError:
        raise MlkitError(
            f"the target database has no table {name!r}",
            hint="create the platform's schema first (examples/sources/ticketing-004-schema.sql)",
        ) from None
    missing = [c for c in PLATFORM_COLUMNS[name] if c not in table.c]
    if missing:
        raise MlkitError(
            f"the target's {name} has no column(s) {', '.join(missing)}",
            hint="the target must have the ticketing-004 schema",
        )
    return table


def translate_to_004(world: Engine, platform: Engine) -> dict[str, int]:
    """Copy the demo world of `world` (mlkit's own schema) into the 004 tables of `platform`,
    in one transaction on the platform, table by table in bulk; returns the rows written."""
    queries = {
        "transactions": transactions_query(),
        "blacklisted_wallets": blacklist_query(),
        "security_events": security_events_query(),
    }
    with world.connect() as conn:
        frames = {name: read_frame(conn, query) for name, query in queries.items()}
    rows: dict[str, int] = {}
    with platform.begin() as conn:
        for name, frame in frames.items():
            table = _platform_table(conn, name)
            rows[name] = bulk_insert(conn, table, frame)
    # Statistics as a platform's own tables have: without them PostgreSQL plans the joins
    # through mlkit's views as if the tables were nearly empty.
    analyze(platform, list(frames))
    return rows
