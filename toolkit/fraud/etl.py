"""ETL of the fraud feature table: extract orders and their history, compute features,
replace the range's rows in one transaction, move the watermark."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import schema
from ..clock import parse_moment, utcnow
from ..db import bulk_insert, explain_db_error, prepare_bulk_transaction, read_frame
from ..errors import MlkitError
from ..locks import job_lock

JOB = "fraud_features"
ProgressCallback = Callable[[str, int, int | None], None]

# Source columns that must never be NULL for a feature to be defined.
REQUIRED = {
    "orders": ("order_id", "buyer_wallet_id", "event_id", "price", "payment_method", "status",
               "created_at"),
    "wallets": ("wallet_id", "created_at"),
    "events": ("event_id", "base_price", "capacity"),
}  # fmt: skip


@dataclass
class EtlResult:
    since: datetime | None
    until: datetime
    rows: int
    labelled: int
    history_rows: int
    seconds: float

    def as_dict(self) -> dict:
        return {
            "job": JOB,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat(),
            "rows": self.rows,
            "labelled_rows": self.labelled,
            "history_rows_read": self.history_rows,
            "seconds": round(self.seconds, 2),
            "rows_per_second": round(self.rows / self.seconds) if self.seconds else None,
        }


def read_watermark(engine: Engine) -> datetime | None:
    table = schema.etl_watermarks
    with engine.connect() as conn:
        return conn.execute(sa.select(table.c.watermark).where(table.c.job == JOB)).scalar()


def resolve_range(
    engine: Engine, since: str | None, until: str | None, now: datetime | None = None
) -> tuple[datetime | None, datetime]:
    now = now or utcnow()
    end = parse_moment(until, now=now, option="--until") if until else now
    if since is None:
        start = None
    elif since.strip() == "last":
        start = read_watermark(engine)
    else:
        start = parse_moment(
            since, now=now, option="--since", hint=" (--since last continues from the watermark)"
        )
        if start > now:
            raise MlkitError(
                f"--since {since!r} is in the future ({start:%Y-%m-%d %H:%M})",
                hint="pick a moment in the past",
            )
    if start is not None and start >= end:
        raise MlkitError(f"--since ({start}) is not before --until ({end})")
    return start, end


def extract(conn: sa.Connection, until: datetime):
    """The sources of every order before `until`: features need each wallet's full history."""
    from .features import FraudSources

    o, w, e = schema.orders, schema.wallets, schema.events
    orders = read_frame(
        conn,
        sa.select(o.c.order_id, o.c.buyer_wallet_id, o.c.seller_wallet_id, o.c.event_id,
                  o.c.ticket_id, o.c.price, o.c.payment_method, o.c.is_resale, o.c.status,
                  o.c.geo_lat, o.c.geo_lon, o.c.created_at)
        .where(o.c.created_at < until),
    )  # fmt: skip
    wallets = read_frame(conn, sa.select(w.c.wallet_id, w.c.created_at))
    events = read_frame(conn, sa.select(e.c.event_id, e.c.base_price, e.c.capacity))
    t = schema.ticket_transfers
    transfers = read_frame(
        conn,
        sa.select(t.c.from_wallet_id, t.c.to_wallet_id, t.c.transferred_at).where(
            t.c.transferred_at < until
        ),
    )
    labels = read_frame(conn, label_query(until))
    sources = FraudSources(orders, wallets, events, transfers, labels)
    _check_nulls(sources)
    return sources


def label_query(
    available_before: datetime | None = None,
    wallet_ids: list[int] | None = None,
    order_ids: sa.Select | None = None,
) -> sa.Select:
    """Confirmed fraud labels (alerts and bot detections) with the time each became usable.
    Filters go into both branches of the union, where the indexes are."""
    a, b = schema.security_alerts, schema.bot_detection
    alerts = sa.select(a.c.order_id, a.c.wallet_id, a.c.label_available_at).where(
        a.c.confirmed_fraud.is_(True), a.c.order_id.is_not(None)
    )
    bots = sa.select(b.c.order_id, b.c.wallet_id, b.c.label_available_at).where(
        b.c.is_bot.is_(True), b.c.order_id.is_not(None)
    )
    if available_before is not None:
        alerts = alerts.where(a.c.label_available_at < available_before)
        bots = bots.where(b.c.label_available_at < available_before)
    if wallet_ids is not None:
        alerts = alerts.where(a.c.wallet_id.in_(wallet_ids))
        bots = bots.where(b.c.wallet_id.in_(wallet_ids))
    if order_ids is not None:
        alerts = alerts.where(a.c.order_id.in_(order_ids))
        bots = bots.where(b.c.order_id.in_(order_ids))
    union = sa.union_all(alerts, bots).subquery("labels")
    return sa.select(union.c.order_id, union.c.wallet_id, union.c.label_available_at)


def _check_nulls(sources) -> None:
    for table, columns in REQUIRED.items():
        frame = getattr(sources, table)
        for column in columns:
            missing = int(frame[column].isna().sum())
            if missing:
                raise MlkitError(
                    f"{missing} row(s) of {table}.{column} are NULL; features need it",
                    hint=f"fill or remove them: SELECT * FROM {table} WHERE {column} IS NULL",
                )


def order_labels(conn: sa.Connection, order_ids) -> dict:
    """Each order's fraud label and when it first became available (all labels known now)."""
    labels = read_frame(conn, label_query())
    first = labels.groupby("order_id")["label_available_at"].min()
    return first[first.index.isin(order_ids)]


def run_etl(
    engine: Engine,
    since: datetime | None,
    until: datetime,
    progress: ProgressCallback | None = None,
    *,
    allow_empty: bool = False,
) -> EtlResult:
    """Compute and store the features of orders in [since, until); idempotent. With
    `allow_empty` (an incremental run from the watermark) a range without orders is a
    quiet no-op instead of an error: cron's nightly run on a night without sales."""
    from .features import compute_features

    report = progress or (lambda label, done, total: None)
    started = time.perf_counter()
    _require_tables(engine)
    try:
        with job_lock(engine, "etl", JOB), engine.begin() as conn:
            report("extract", 0, 3)
            sources = extract(conn, until)
            created = sources.orders["created_at"]
            target = sources.orders["order_id"].to_numpy()
            if since is not None:
                target = target[(created >= since).to_numpy()]
            if len(target) == 0 and allow_empty:
                return EtlResult(since, until, 0, 0, len(sources.orders),
                                 time.perf_counter() - started)  # fmt: skip
            if len(target) == 0:
                raise MlkitError(
                    f"no orders between {since or 'the beginning'} and {until}",
                    hint="widen --since/--until, or load orders first (`mlkit demo seed`)",
                )
            report("extract", 1, 3)
            frame = compute_features(sources, target_ids=target)
            report("extract", 2, 3)
            all_labels = order_labels(conn, target)
            frame["label_available_at"] = frame["order_id"].map(all_labels)
            frame["label"] = frame["label_available_at"].notna()
            frame["computed_at"] = utcnow()
            table = schema.fraud_features
            prepare_bulk_transaction(conn)
            written = 0

            def advance(n: int) -> None:
                nonlocal written
                written += n
                report("load features", written, len(frame))

            # Upsert by order id: the range's rows are replaced as a whole, in this transaction.
            with _replacing(conn, table, since, until):
                bulk_insert(conn, table, frame, on_rows=advance)
            _move_watermark(conn, until)
            report("extract", 3, 3)
    except sa.exc.DBAPIError as exc:
        raise explain_db_error(exc, engine.url) from None
    return EtlResult(
        since=since,
        until=until,
        rows=len(frame),
        labelled=int(frame["label"].sum()),
        history_rows=len(sources.orders),
        seconds=time.perf_counter() - started,
    )


@contextmanager
def _replacing(conn: sa.Connection, table: sa.Table, since: datetime | None, until: datetime):
    """Remove the range's rows before the load. A whole-table rebuild on PostgreSQL
    truncates and rebuilds the secondary indexes once after the load instead of row by
    row; PostgreSQL's DDL is transactional, so a failure still restores everything."""
    everything = (
        since is None
        and not conn.execute(
            sa.select(table.c.order_id).where(table.c.feature_ts >= until).limit(1)
        ).first()
    )
    if not (everything and conn.dialect.name == "postgresql"):
        delete = table.delete().where(table.c.feature_ts < until)
        if since is not None:
            delete = delete.where(table.c.feature_ts >= since)
        conn.execute(delete)
        yield
        return
    conn.exec_driver_sql(f'TRUNCATE "{table.name}"')
    for index in table.indexes:
        conn.exec_driver_sql(f'DROP INDEX IF EXISTS "{index.name}"')
    yield
    for index in table.indexes:
        index.create(conn)


def _move_watermark(conn: sa.Connection, until: datetime) -> None:
    table = schema.etl_watermarks
    now = utcnow()
    updated = conn.execute(
        table.update().where(table.c.job == JOB).values(watermark=until, updated_at=now)
    ).rowcount
    if not updated:
        conn.execute(table.insert().values(job=JOB, watermark=until, updated_at=now))


def _require_tables(engine: Engine) -> None:
    needed = {"orders", "wallets", "events", "ticket_transfers", "security_alerts",
              "bot_detection", "fraud_features", "etl_watermarks"}  # fmt: skip
    try:
        with engine.connect() as conn:
            missing = sorted(needed - set(sa.inspect(conn).get_table_names()))
    except sa.exc.DBAPIError as exc:
        raise explain_db_error(exc, engine.url) from None
    if missing:
        raise MlkitError(
            f"missing table(s): {', '.join(missing)}", hint="create them with `mlkit db init`"
        )


def feature_row(engine: Engine, order_id: int) -> dict | None:
    table = schema.fraud_features
    with engine.connect() as conn:
        row = conn.execute(sa.select(table).where(table.c.order_id == order_id)).mappings().first()
    return dict(row) if row else None
