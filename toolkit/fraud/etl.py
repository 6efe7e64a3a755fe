"""ETL of the fraud feature table: extract orders and their history, compute features, replace the
target rows in one transaction, record the watermark.

An incremental run features the orders without a feature row (ids above the newest featured one,
or stamped since the watermark less `etl.lookback`), recomputes the last `etl.lookback` before the
watermark when something new arrived, since a late row can change their history, and labels the
stored rows whose labels arrived since. It reads only the history of the targets' wallets, events
and resold tickets, so a night costs what its orders cost, whatever the history's length. The
watermark is the newest `feature_ts` stored: data progress, never the wall clock.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import schema
from ..clock import parse_moment, utcnow
from ..db import bulk_insert, explain_db_error, prepare_bulk_transaction, read_frame, relation_names
from ..errors import MlkitError
from ..imports.upsert import upsert_frame
from ..locks import job_lock
from .columns import LABEL_HISTORY_WINDOWS_DAYS
from .labels import label_query, own_labels
from .online import ORDER_COLUMNS

JOB = "fraud_features"
ProgressCallback = Callable[[str, int, int | None], None]

# Source columns that must never be NULL for a feature to be defined.
REQUIRED = {
    "orders": (
        "order_id",
        "buyer_wallet_id",
        "event_id",
        "price",
        "payment_method",
        "status",
        "created_at",
    ),
    "wallets": ("wallet_id", "created_at"),
    "events": ("event_id", "base_price", "capacity"),
}


@dataclass
class EtlResult:
    since: datetime | None
    until: datetime
    rows: int
    labelled: int
    history_rows: int
    seconds: float
    mode: str = "range"  # "range" (explicit --since/--until) or "incremental"
    new_orders: int = 0  # incremental: orders that had no feature row
    watermark: datetime | None = field(default=None)
    written: dict | None = None  # rows inserted, updated (changed only), skipped, deleted

    def as_dict(self) -> dict:
        return {
            "job": JOB,
            "mode": self.mode,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat(),
            "rows": self.rows,
            "new_orders": self.new_orders,
            "labelled_rows": self.labelled,
            "history_rows_read": self.history_rows,
            "watermark": self.watermark.isoformat() if self.watermark else None,
            "seconds": round(self.seconds, 2),
            "rows_per_second": round(self.rows / self.seconds) if self.seconds else None,
            "written": self.written,
        }


def read_watermark(engine: Engine) -> datetime | None:
    """The newest order timestamp whose features are stored (None before the first run)."""
    table = schema.etl_watermarks
    with engine.connect() as conn:
        return conn.execute(sa.select(table.c.watermark).where(table.c.job == JOB)).scalar()


def parse_lookback(text: str | int | float) -> timedelta:
    """`2d`, `12h`, `30m` or `0`: how far before the watermark an incremental run recomputes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhm]?)\s*", str(text))
    if not match or (not match.group(2) and float(match.group(1)) != 0):
        raise MlkitError(
            f"cannot read etl.lookback {text!r}",
            hint="use a duration like 2d, 12h or 30m (0 for none)",
        )
    unit = {"d": "days", "h": "hours", "m": "minutes", "": "days"}[match.group(2)]
    return timedelta(**{unit: float(match.group(1))})


def lookback_from_config(config) -> timedelta:
    return parse_lookback(config.get("etl.lookback"))


def run_job(
    engine: Engine,
    since: str | None,
    until: str | None,
    lookback: timedelta,
    progress: ProgressCallback | None = None,
) -> EtlResult:
    """What `mlkit etl run` does with its options: `last` is the incremental catch-up,
    anything else an explicit range; a window without orders is a quiet no-op."""
    if since is not None and since.strip() == "last":
        end = parse_moment(until, now=utcnow(), option="--until") if until else None
        return catch_up(engine, lookback=lookback, until=end, progress=progress)
    start, end = resolve_range(engine, since, until)
    return run_etl(engine, start, end, progress=progress, allow_empty=since is not None)


def resolve_range(
    engine: Engine, since: str | None, until: str | None, now: datetime | None = None
) -> tuple[datetime | None, datetime]:
    """An explicit [since, until) range; durations count back from the clock."""
    now = now or utcnow()
    end = parse_moment(until, now=now, option="--until") if until else now
    if since is None:
        start = None
    elif since.strip() == "last":
        raise MlkitError("--since last is the incremental run, not a range", hint="use etl.run_job")
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


def extract(conn: sa.Connection, until: datetime, target_ids: list[int] | None = None):
    """The sources of the orders before `until` that features need: every order's, or,
    with `target_ids`, only what those orders' features read (`history_scope`), so a
    night's read grows with the night, not with the history."""
    from .features import FraudSources

    if target_ids is None:
        queries = source_queries(until)
        sources = FraudSources(
            *(read_frame(conn, queries[name]) for name in SOURCES),
        )
    else:
        scoped = scoped_queries(history_scope(conn, until, target_ids), until)
        sources = FraudSources(*(_dedupe(name, _read_all(conn, scoped[name])) for name in SOURCES))
    _check_nulls(sources)
    return sources


# The sources in FraudSources' order, and the ids of those whose scoped reads overlap.
SOURCES = ("orders", "wallets", "events", "transfers", "labels")
ROW_IDS = {"orders": "order_id", "transfers": "transfer_id"}
# Ids per IN list: each chunk is one indexed read, and SQLite's bound-parameter limit
# (32766) stays far away.
ID_CHUNK = 5_000


def source_queries(until: datetime) -> dict[str, sa.Select]:
    """Per source, the select of every row before `until` that features read."""
    o, w, e = schema.orders, schema.wallets, schema.events
    t = schema.ticket_transfers
    return {
        "orders": sa.select(*[o.c[name] for name in ORDER_COLUMNS]).where(o.c.created_at < until),
        "wallets": sa.select(w.c.wallet_id, w.c.created_at),
        "events": sa.select(e.c.event_id, e.c.base_price, e.c.capacity),
        "transfers": sa.select(
            t.c.transfer_id, t.c.from_wallet_id, t.c.to_wallet_id, t.c.transferred_at
        ).where(t.c.transferred_at < until),
        "labels": label_query(until),
    }


@dataclass
class HistoryScope:
    """What the features of the target orders read: the whole history of their buyer
    wallets (as buyer, as seller, their transfers) and of their events, every sale of the
    tickets those wallets resold (a resale's hold time needs the ticket's previous sale,
    whoever bought it), and the labels available from `labels_since` (the earliest target's
    widest label window) on, besides the targets' own older ones."""

    targets: list[int]
    wallets: list[int]
    events: list[int]
    resold: list[int]
    labels_since: datetime


def history_scope(conn: sa.Connection, until: datetime, target_ids: list[int]) -> HistoryScope:
    """The scope of the target orders' features, from two indexed reads: the targets' own
    rows and the tickets their wallets resold."""
    o = schema.orders
    found = _read_in(
        conn,
        lambda ids: sa.select(o.c.buyer_wallet_id, o.c.event_id, o.c.created_at).where(
            o.c.order_id.in_(ids)
        ),
        target_ids,
    )
    wallets = _ids(found["buyer_wallet_id"])
    resold = _read_in(
        conn,
        lambda ids: (
            sa.select(o.c.ticket_id)
            .distinct()
            .where(o.c.seller_wallet_id.in_(ids), o.c.is_resale.is_(True), o.c.created_at < until)
        ),
        wallets,
    )
    window = timedelta(days=max(LABEL_HISTORY_WINDOWS_DAYS))
    earliest = found["created_at"].min().to_pydatetime() - window if len(found) else until
    return HistoryScope(
        list(target_ids), wallets, _ids(found["event_id"]), _ids(resold["ticket_id"]), earliest
    )


def scoped_queries(scope: HistoryScope, until: datetime) -> dict[str, list[sa.Select]]:
    """Per source, the selects of the scope's rows before `until`: each one indexed read of
    a chunk of ids, never one per id. Reads of orders and of transfers overlap (an order
    bought by one scoped wallet and sold by another): `ROW_IDS` tells their rows apart."""
    o, w, e = schema.orders, schema.wallets, schema.events
    t = schema.ticket_transfers
    every = source_queries(until)

    orders, transfers = every["orders"], every["transfers"]
    recent = every["labels"]
    recent = recent.where(recent.selected_columns.label_available_at >= scope.labels_since)
    return {
        "orders": [
            *_chunked(lambda ids: orders.where(o.c.buyer_wallet_id.in_(ids)), scope.wallets),
            *_chunked(lambda ids: orders.where(o.c.seller_wallet_id.in_(ids)), scope.wallets),
            *_chunked(lambda ids: orders.where(o.c.event_id.in_(ids)), scope.events),
            *_chunked(lambda ids: orders.where(o.c.ticket_id.in_(ids)), scope.resold),
        ],
        "wallets": _chunked(
            lambda ids: every["wallets"].where(w.c.wallet_id.in_(ids)), scope.wallets
        ),
        "events": _chunked(lambda ids: every["events"].where(e.c.event_id.in_(ids)), scope.events),
        "transfers": [
            *_chunked(lambda ids: transfers.where(t.c.from_wallet_id.in_(ids)), scope.wallets),
            *_chunked(lambda ids: transfers.where(t.c.to_wallet_id.in_(ids)), scope.wallets),
        ],
        # Label windows reach back from each target's own time; the two reads are disjoint.
        "labels": [
            recent,
            *_chunked(lambda ids: label_query(scope.labels_since, order_ids=ids), scope.targets),
        ],
    }


def _dedupe(name: str, frame):
    """One row per source row where the scope's reads overlap."""
    if name not in ROW_IDS:
        return frame
    return frame.drop_duplicates(ROW_IDS[name], ignore_index=True)


def _ids(values) -> list[int]:
    return sorted(int(v) for v in values.dropna().unique())


def _chunked(query_for: Callable[[list[int]], sa.Select], ids: list[int]) -> list[sa.Select]:
    """`query_for` of each chunk of `ids` (of an empty list when there are none, so a read
    still returns the query's columns)."""
    chunks = [ids[start : start + ID_CHUNK] for start in range(0, len(ids), ID_CHUNK)]
    return [query_for(chunk) for chunk in chunks or [[]]]


def _read_in(conn: sa.Connection, query_for: Callable[[list[int]], sa.Select], ids: list[int]):
    """The rows of `query_for(chunk)` over chunks of `ids`: one indexed read per chunk."""
    return _read_all(conn, _chunked(query_for, ids))


def _read_all(conn: sa.Connection, queries: list[sa.Select]):
    """The rows of every select, in one frame."""
    return _concat([read_frame(conn, query) for query in queries])


def _concat(frames):
    import pandas as pd

    frames = [f for f in frames if len(f)] or frames[:1]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


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


def run_etl(
    engine: Engine,
    since: datetime | None,
    until: datetime,
    progress: ProgressCallback | None = None,
    *,
    allow_empty: bool = False,
) -> EtlResult:
    """Compute and store the features of orders in [since, until); idempotent. With
    `allow_empty` a range without orders is a quiet no-op instead of an error."""
    report = progress or (lambda label, done, total: None)
    started = time.perf_counter()
    require_tables(engine)
    try:
        with job_lock(engine, "etl", JOB), engine.begin() as conn:
            report("extract", 0, 3)
            in_range = _ids_in_range(conn, since, until) if since else None
            sources = extract(conn, until, in_range)
            target = sources.orders["order_id"].to_numpy()
            if since is not None:
                target = target[(sources.orders["created_at"] >= since).to_numpy()]
            if len(target) == 0 and not allow_empty:
                raise MlkitError(
                    f"no orders between {since or 'the beginning'} and {until}",
                    hint="widen --since/--until, or load orders first (`mlkit demo seed`)",
                )
            if len(target) == 0:
                return EtlResult(
                    since,
                    until,
                    0,
                    0,
                    len(sources.orders),
                    time.perf_counter() - started,
                    watermark=_read_watermark(conn),
                )
            frame, written = _store(conn, sources, target, since, until, report)
            watermark = move_watermark(conn)
    except sa.exc.DBAPIError as exc:
        raise explain_db_error(exc, engine.url) from None
    return _stored(since, until, frame, sources, started, watermark=watermark, written=written)


@dataclass
class NightPlan:
    """What an incremental run does: since when it recomputes (None: a whole-table build,
    the first run) and which orders (None: every one), with the watermark it starts from
    and the moment labels are synced from."""

    watermark: datetime | None
    labels_since: datetime | None
    new_orders: int
    since: datetime | None = None
    targets: list[int] | None = None


def plan_catch_up(conn: sa.Connection, until: datetime, lookback: timedelta) -> NightPlan:
    """The incremental run's choice, the same on every engine: every order before `until`
    without a feature row and, when there are any, the featured ones from the oldest new
    order on, no further back than `lookback` before the watermark."""
    watermark = _read_watermark(conn)
    labels_since = watermark - lookback if watermark else None
    pending = read_frame(conn, unprocessed_query(conn, until, labels_since))
    plan = NightPlan(watermark, labels_since, len(pending))
    if pending.empty:
        return plan
    f = schema.fraud_features
    if conn.execute(sa.select(f.c.order_id).limit(1)).first() is None:
        return plan  # the first run: a whole-table build
    oldest_new = pending["created_at"].min().to_pydatetime()
    plan.since = oldest_new if watermark is None else max(oldest_new, labels_since)
    recomputed = _ids_in_range(conn, plan.since, until)
    plan.targets = sorted({*recomputed, *pending["order_id"].astype(int).tolist()})
    return plan


def quiet_night(conn: sa.Connection, plan: NightPlan, until: datetime, started: float) -> EtlResult:
    """A night without new orders, on any engine: only the labels that arrived on earlier
    rows are stored."""
    relabelled = sync_labels(conn, plan.labels_since, until) if plan.labels_since else 0
    return EtlResult(
        None,
        until,
        0,
        0,
        0,
        time.perf_counter() - started,
        mode="incremental",
        watermark=plan.watermark,
        written={"relabelled": relabelled} if relabelled else None,
    )


def catch_up(
    engine: Engine,
    *,
    lookback: timedelta,
    until: datetime | None = None,
    progress: ProgressCallback | None = None,
) -> EtlResult:
    """The incremental run (`plan_catch_up`), labels that arrived since stored either way."""
    report = progress or (lambda label, done, total: None)
    started = time.perf_counter()
    until = until or utcnow()
    require_tables(engine)
    try:
        with job_lock(engine, "etl", JOB), engine.begin() as conn:
            plan = plan_catch_up(conn, until, lookback)
            if not plan.new_orders:
                return quiet_night(conn, plan, until, started)
            report("extract", 0, 3)
            sources = extract(conn, until, plan.targets)
            target = sources.orders["order_id"].to_numpy() if plan.targets is None else plan.targets
            frame, written = _store(conn, sources, target, plan.since, until, report)
            if plan.labels_since is not None:
                written["relabelled"] = sync_labels(conn, plan.labels_since, until)
            watermark = move_watermark(conn)
    except sa.exc.DBAPIError as exc:
        raise explain_db_error(exc, engine.url) from None
    return _stored(
        plan.since,
        until,
        frame,
        sources,
        started,
        mode="incremental",
        new_orders=plan.new_orders,
        watermark=watermark,
        written=written,
    )


def _stored(since, until, frame, sources, started: float, **extra) -> EtlResult:
    """The result of a run that wrote `frame`, computed from `sources`."""
    return EtlResult(
        since=since,
        until=until,
        rows=len(frame),
        labelled=int(frame["label"].sum()),
        history_rows=len(sources.orders),
        seconds=time.perf_counter() - started,
        **extra,
    )


def catch_up_from_config(engine: Engine, config, progress: ProgressCallback | None = None):
    """`catch_up` with the configured lookback: what `etl run --since last` runs."""
    return catch_up(engine, lookback=lookback_from_config(config), progress=progress)


def unprocessed_query(conn: sa.Connection, until: datetime, recent: datetime | None) -> sa.Select:
    """Orders before `until` without a feature row (an anti-join on the primary key), among
    those newer than the newest featured order id or placed since `recent` (the watermark
    less the lookback), so a night reads its new orders, not the whole history; without
    `recent` (no watermark yet), among all orders. An order inserted later with both an id
    and a time older than those is a backfill: `etl run --since <its time>` features it."""
    o, f = schema.orders, schema.fraud_features
    query = (
        sa.select(o.c.order_id, o.c.created_at)
        .select_from(o.outerjoin(f, f.c.order_id == o.c.order_id))
        .where(f.c.order_id.is_(None), o.c.created_at < until)
    )
    newest_id = conn.execute(sa.select(sa.func.max(f.c.order_id))).scalar()
    if recent is None or newest_id is None:
        return query
    return query.where(sa.or_(o.c.order_id > newest_id, o.c.created_at >= recent))


def _ids_in_range(conn: sa.Connection, since: datetime, until: datetime) -> list[int]:
    """Ids of the orders in [since, until)."""
    o = schema.orders
    query = sa.select(o.c.order_id).where(o.c.created_at >= since, o.c.created_at < until)
    return _ids(read_frame(conn, query)["order_id"])


def sync_labels(conn: sa.Connection, available_since: datetime, until: datetime) -> int:
    """Label the stored rows whose first label became available in [available_since, until),
    after their features were computed, as a full rebuild would: one UPDATE from the labels
    of the orders with a fresh one. Labels come after their orders, so those available
    before the previous run's watermark (less the lookback) were seen by it. Returns the
    rows changed."""
    fresh = label_query(until)
    fresh = fresh.where(fresh.selected_columns.label_available_at >= available_since)
    labels = label_query(until, order_ids=sa.select(fresh.subquery().c.order_id)).subquery()
    first = (
        sa.select(labels.c.order_id, sa.func.min(labels.c.label_available_at).label("first_at"))
        .group_by(labels.c.order_id)
        .subquery("first_labels")
    )
    f = schema.fraud_features
    return conn.execute(
        sa.update(f)
        .values(label=True, label_available_at=first.c.first_at)
        .where(
            f.c.order_id == first.c.order_id,
            sa.or_(f.c.label_available_at.is_(None), f.c.label_available_at > first.c.first_at),
        )
    ).rowcount


def _store(conn, sources, target, since, until, report):
    """Compute the target orders' features and make the rows of [since, until) equal them
    (every stored row in that range is a target): into an empty table a bulk load, else an
    upsert writing only the rows that changed or are new (never a delete and re-insert of
    unchanged rows, which left a dead row per live one). Returns the frame and the counts."""
    from .features import compute_features

    report("extract", 1, 3)
    frame = compute_features(sources, target_ids=target)
    report("extract", 2, 3)
    frame["label_available_at"] = own_labels(sources.labels, frame["order_id"].to_numpy())
    frame["label"] = frame["label_available_at"].notna()
    frame["computed_at"] = utcnow()
    table = schema.fraud_features
    prepare_bulk_transaction(conn)
    written = 0

    def advance(n: int) -> None:
        nonlocal written
        written += n
        report("load features", written, len(frame))

    if conn.execute(sa.select(table.c.order_id).limit(1)).first() is None:
        with _without_indexes(conn, table):
            bulk_insert(conn, table, frame, on_rows=advance)
        counts = {"inserted": len(frame), "updated": 0, "skipped": 0, "deleted": 0}
    else:
        deleted = _delete_gone(conn, table, frame, since, until)
        counts = upsert_frame(conn, table, frame, ["order_id"], stamp=("computed_at",))
        counts["deleted"] = deleted
        advance(len(frame))
    report("extract", 3, 3)
    return frame, counts


def _delete_gone(conn: sa.Connection, table: sa.Table, frame, since, until) -> int:
    """Delete the stored rows of [since, until) the new frame no longer has (their orders
    are gone): the range's ids read once, the difference deleted in chunks of ids."""
    import numpy as np

    in_range = table.c.feature_ts < until
    if since is not None:
        in_range = sa.and_(in_range, table.c.feature_ts >= since)
    stored = read_frame(conn, sa.select(table.c.order_id).where(in_range))["order_id"]
    gone = np.setdiff1d(stored.to_numpy(), frame["order_id"].to_numpy()).tolist()
    for start in range(0, len(gone), 10_000):
        conn.execute(table.delete().where(table.c.order_id.in_(gone[start : start + 10_000])))
    return len(gone)


@contextmanager
def _without_indexes(conn: sa.Connection, table: sa.Table):
    """Load an empty table: on PostgreSQL the secondary indexes are dropped and built once
    after the load instead of row by row (DDL is transactional: a failure restores them)."""
    if conn.dialect.name != "postgresql":
        yield
        return
    for index in table.indexes:
        conn.exec_driver_sql(f'DROP INDEX IF EXISTS "{index.name}"')
    yield
    for index in table.indexes:
        index.create(conn)


def _read_watermark(conn: sa.Connection) -> datetime | None:
    table = schema.etl_watermarks
    return conn.execute(sa.select(table.c.watermark).where(table.c.job == JOB)).scalar()


def move_watermark(conn: sa.Connection) -> datetime | None:
    """Record the newest feature_ts stored (an index lookup) as the watermark."""
    newest = conn.execute(sa.select(sa.func.max(schema.fraud_features.c.feature_ts))).scalar()
    if newest is None:
        return None
    table = schema.etl_watermarks
    now = utcnow()
    updated = conn.execute(
        table.update().where(table.c.job == JOB).values(watermark=newest, updated_at=now)
    ).rowcount
    if not updated:
        conn.execute(table.insert().values(job=JOB, watermark=newest, updated_at=now))
    return newest


def require_tables(engine: Engine) -> None:
    needed = {
        "orders",
        "wallets",
        "events",
        "ticket_transfers",
        "security_alerts",
        "bot_detection",
        "fraud_features",
        "etl_watermarks",
    }
    try:
        with engine.connect() as conn:
            missing = sorted(needed - relation_names(conn))
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


def stored_features(engine: Engine, order_id: int) -> dict:
    """`mlkit features show`: the order's stored feature row, or an error saying how to
    compute it."""
    row = feature_row(engine, order_id)
    if row is None:
        raise MlkitError(
            f"order {order_id} has no stored features", hint="run `mlkit etl run` to compute them"
        )
    return row


def run_job_configured(
    engine: Engine,
    config,
    since: str | None,
    until: str | None,
    progress: ProgressCallback | None = None,
) -> EtlResult:
    """`mlkit etl run`: `run_job` with the configured etl.lookback."""
    return run_job(engine, since, until, lookback_from_config(config), progress=progress)
