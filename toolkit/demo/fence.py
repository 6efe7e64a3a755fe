"""Which rows demo worlds wrote, so seeding and replacing never touch any other row.

Each demo period records the id ranges it loaded per table in `demo_world_rows`; a row outside every
recorded range is the platform's own.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import numpy as np
import sqlalchemy as sa

from .. import schema
from ..errors import MlkitError

# Tables the demo writes, with the tests that make a row a demo row: (column, the table whose
# recorded ranges it is checked against). Labels count by their order too, since
# `demo stream` inserts them without reading their ids back.
OWNED: dict[str, tuple[tuple[str, str], ...]] = {
    "wallets": (("wallet_id", "wallets"),),
    "events": (("event_id", "events"),),
    "tickets": (("ticket_id", "tickets"),),
    "orders": (("order_id", "orders"),),
    "orders_archive": (("order_id", "orders"),),  # retention moves demo orders here
    "ticket_transfers": (("transfer_id", "ticket_transfers"),),
    "security_alerts": (("alert_id", "security_alerts"), ("order_id", "orders")),
    "bot_detection": (("detection_id", "bot_detection"), ("order_id", "orders")),
    "security_events": (("id", "security_events"),),
    "admin_audit_log": (("id", "admin_audit_log"),),
    "products": (("product_id", "products"),),
    "product_interactions": (("id", "product_interactions"),),
    "product_reviews": (("review_id", "product_reviews"),),
    "order_items": (("item_id", "order_items"),),
    "cart_items": (("item_id", "cart_items"),),
}

# Tables whose loaded ids a period records, and their id column.
RECORDED = {name: tests[0][0] for name, tests in OWNED.items() if tests[0][1] == name}

# What mlkit derived from demo orders: removed with them, never counted as foreign.
DERIVED = {
    "fraud_features": (("order_id", "orders"),),
    "fraud_predictions": (("order_id", "orders"),),
    "fraud_predictions_archive": (("order_id", "orders"),),
}

# Market tables: demo rows are the bars of the recorded symbols and spans.
BAR_TABLES = ("market_data", "signals", "demo_truth_regimes")

# The demo's own truth: every row belongs to a demo world.
TRUTH_TABLES = (
    "demo_truth_orders",
    "demo_truth_wallets",
    "demo_truth_pricing",
    "demo_truth_users",
    "demo_truth_regimes",
)


def id_runs(ids: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive runs of the ids as (first, last) pairs, in order."""
    listed = ids if isinstance(ids, np.ndarray) else list(ids)
    values = np.unique(np.asarray(listed, dtype=np.int64))
    if not len(values):
        return []
    breaks = np.flatnonzero(np.diff(values) != 1)
    firsts = np.concatenate([values[:1], values[breaks + 1]])
    lasts = np.concatenate([values[breaks], values[-1:]])
    return [(int(a), int(b)) for a, b in zip(firsts, lasts, strict=True)]


def record_period(conn: sa.Connection, run_id: int, frames: dict) -> dict:
    """Record the id ranges of the frames a period loaded; return its bars per symbol."""
    rows = [
        {"run_id": run_id, "table_name": name, "first_id": first, "last_id": last}
        for name, column in RECORDED.items()
        if name in frames and not frames[name].empty
        for first, last in id_runs(frames[name][column].to_numpy())
    ]
    if rows:
        conn.execute(schema.demo_world_rows.insert(), rows)
    bars = frames.get("market_data")
    if bars is None or bars.empty:
        return {}
    spans = bars.groupby("symbol")["ts"].agg(["min", "max"])
    return {
        str(symbol): [span["min"].isoformat(), span["max"].isoformat()]
        for symbol, span in spans.iterrows()
    }


def record_demo_rows(conn: sa.Connection, table: str, ids: Iterable[int]) -> None:
    """Count ids a demo process inserted into `table` as rows of the latest demo period; call it in
    the transaction that inserted them.
    """
    if table not in RECORDED:
        raise ValueError(f"{table} is not a table whose demo rows are recorded")
    runs = id_runs(ids)
    if not runs:
        return
    r = schema.demo_world_rows
    run_id = conn.execute(sa.select(sa.func.max(schema.demo_worlds.c.run_id))).scalar()
    if run_id is None:
        raise MlkitError("there is no demo world to add rows to", hint="run `mlkit demo seed`")
    last = conn.execute(
        sa.select(r.c.first_id, r.c.last_id)
        .where(r.c.run_id == run_id, r.c.table_name == table)
        .order_by(r.c.last_id.desc())
        .limit(1)
    ).first()
    if last is not None and runs[0][0] == last.last_id + 1:
        conn.execute(
            r.update()
            .where(r.c.run_id == run_id, r.c.table_name == table, r.c.first_id == last.first_id)
            .values(last_id=runs[0][1])
        )
        runs = runs[1:]
    if runs:
        conn.execute(
            r.insert(),
            [{"run_id": run_id, "table_name": table, "first_id": a, "last_id": b} for a, b in runs],
        )


class Fence:
    """The recorded demo rows of a database, as SQL conditions per table."""

    def __init__(self, conn: sa.Connection) -> None:
        r = schema.demo_world_rows
        found = conn.execute(sa.select(r.c.table_name, r.c.first_id, r.c.last_id)).all()
        self.ranges: dict[str, list[tuple[int, int]]] = {}
        for name in {row.table_name for row in found}:
            pairs = sorted((row.first_id, row.last_id) for row in found if row.table_name == name)
            merged: list[list[int]] = []
            for first, last in pairs:
                if merged and first <= merged[-1][1] + 1:
                    merged[-1][1] = max(merged[-1][1], last)
                else:
                    merged.append([first, last])
            self.ranges[name] = [(a, b) for a, b in merged]
        self.bars: list[tuple[str, datetime, datetime]] = []
        for params in conn.execute(sa.select(schema.demo_worlds.c.params)).scalars():
            for symbol, (first, last) in ((params or {}).get("bars") or {}).items():
                self.bars.append(
                    (symbol, datetime.fromisoformat(first), datetime.fromisoformat(last))
                )
        self.worlds = conn.execute(
            sa.select(sa.func.count()).select_from(schema.demo_worlds)
        ).scalar()

    def is_demo(self, name: str) -> sa.ColumnElement[bool]:
        """The condition that a row of table `name` is a demo row."""
        table = schema.metadata.tables[name]
        tests = OWNED.get(name) or DERIVED.get(name)
        if tests:
            return sa.or_(
                sa.false(),
                *(
                    sa.and_(table.c[column].is_not(None), table.c[column].between(a, b))
                    for column, owner in tests
                    for a, b in self.ranges.get(owner, ())
                ),
            )
        if name in BAR_TABLES:
            return sa.or_(
                sa.false(),
                *(
                    sa.and_(table.c.symbol == symbol, table.c.ts.between(first, last))
                    for symbol, first, last in self.bars
                ),
            )
        if name == "blacklisted_wallets":
            # EXISTS, not IN: negated (foreign_rows), IN becomes NOT IN, which PostgreSQL
            # re-scans per row once the demo wallets outgrow work_mem (`demo seed --append` on
            # a 10M-order world ran it for over 40 minutes); NOT EXISTS is an anti-join. The
            # address is a primary key, never NULL, so both select the same rows.
            wallets = schema.wallets
            return sa.exists().where(
                wallets.c.address == table.c.wallet_address, self.is_demo("wallets")
            )
        raise ValueError(f"{name} has no demo fence")

    def foreign_rows(self, conn: sa.Connection) -> dict[str, int]:
        """Rows per table that no recorded demo world wrote, in the tables the demo writes."""
        counts = {}
        for name in (*OWNED, "blacklisted_wallets", "market_data"):
            table = schema.metadata.tables[name]
            n = conn.execute(
                sa.select(sa.func.count()).select_from(table).where(sa.not_(self.is_demo(name)))
            ).scalar()
            if n:
                counts[name] = int(n)
        return counts

    def remove(self, conn: sa.Connection, *, everything: bool = False) -> int:
        """Delete the rows of every recorded demo world and what mlkit derived from them;
        `everything` also clears the ETL watermarks when no other rows remain.
        """
        removed = 0
        order = [t.name for t in reversed(schema.metadata.sorted_tables)]
        # Blacklisted addresses are found through the demo wallets: delete them first.
        names = ["blacklisted_wallets"] + [
            n for n in order if n in OWNED or n in DERIVED or n in BAR_TABLES
        ]
        for name in names:
            table = schema.metadata.tables[name]
            removed += conn.execute(table.delete().where(self.is_demo(name))).rowcount or 0
        for name in TRUTH_TABLES:
            if name not in BAR_TABLES:
                conn.execute(schema.metadata.tables[name].delete())
        if everything:
            conn.execute(schema.etl_watermarks.delete())
        conn.execute(schema.demo_world_rows.delete())
        conn.execute(schema.demo_worlds.delete())
        return removed


def describe(counts: dict[str, int]) -> str:
    """'300 orders, 300 wallets' for the first tables of a count per table."""
    shown = ", ".join(f"{n:,} {name}" for name, n in list(counts.items())[:4])
    return shown + (f" and {len(counts) - 4} more tables" if len(counts) > 4 else "")
