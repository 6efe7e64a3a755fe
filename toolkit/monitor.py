"""What the dashboard shows, read with bounded queries: fraud decisions and rates, the bandit's
arms, training status.

Each panel is read on its own, so a failing source becomes a message on that panel rather than an
exception. The fraud windows (1 h / 24 h / 7 d) end now, or at the newest order when none came in
the last 7 days; on PostgreSQL their whole hours come from `kpi_hourly`, so they trail until the
next `mlkit kpi refresh`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from . import schema
from .clock import utcnow
from .db import KPI_VIEW, dialect_name
from .fraud.columns import BLOCKED, DECISIONS, FLAGGED, flagged_count

WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
SPARK_HOURS = 48
LATEST_BLOCKED = 8
DISCONNECTED = "disconnected, retrying"


@dataclass
class Panel:
    data: dict | None = None
    error: str | None = None
    seconds: float = 0.0


@dataclass
class Snapshot:
    fraud: Panel
    bandit: Panel
    training: Panel
    redis_state: str
    taken_at: datetime
    seconds: float
    timings: dict = field(default_factory=dict)


def _latest_prediction(o, p):
    """The id of an order's latest prediction (re-scoring never double-counts)."""
    p2 = p.alias("p2")
    return sa.select(sa.func.max(p2.c.id)).where(p2.c.order_id == o.c.order_id).scalar_subquery()


def _decision_counts(conn: sa.Connection, start: datetime, end: datetime) -> dict:
    o, p = schema.orders, schema.fraud_predictions
    rows = conn.execute(
        sa.select(p.c.decision, sa.func.count())
        .select_from(o.join(p, p.c.order_id == o.c.order_id))
        .where(o.c.created_at > start, o.c.created_at <= end, p.c.id == _latest_prediction(o, p))
        .group_by(p.c.decision)
    ).all()
    return {decision: int(count) for decision, count in rows}


def _kpi_counts(conn: sa.Connection, start: datetime) -> tuple[dict, datetime | None]:
    """Decision counts of kpi_hourly's whole hours from `start` up to (not including) the
    newest hour it holds, which may have been partial when it was refreshed; and that hour."""
    kpi = sa.table(
        KPI_VIEW, sa.column("hour"), *[sa.column(f"{d.lower()}_count") for d in DECISIONS]
    )
    newest = conn.execute(sa.select(sa.func.max(kpi.c.hour))).scalar()
    if newest is None or newest <= start:
        return {}, None
    row = conn.execute(
        sa.select(
            *[sa.func.coalesce(sa.func.sum(kpi.c[f"{d.lower()}_count"]), 0) for d in DECISIONS]
        ).where(kpi.c.hour >= start, kpi.c.hour < newest)
    ).one()
    return dict(zip(DECISIONS, map(int, row), strict=True)), newest


def _rates(counts: dict) -> dict:
    total = sum(counts.values())
    flagged = flagged_count(counts)
    return {
        "counts": {d: counts.get(d, 0) for d in DECISIONS},
        "scored": total,
        "fraud_rate": flagged / total if total else None,
    }


def fraud_overview(engine: Engine, now: datetime | None = None) -> dict:
    o, p = schema.orders, schema.fraud_predictions
    now = now or utcnow()
    postgres = dialect_name(engine) == "postgresql"
    with engine.connect() as conn:
        newest = conn.execute(sa.select(sa.func.max(o.c.created_at))).scalar()
        if newest is None:
            return {"orders": False}
        anchor = now if newest >= now - WINDOWS["7d"] else newest
        windows = {}
        for name, span in WINDOWS.items():
            start = anchor - span
            if postgres and name != "1h":
                # Whole hours from the materialized view, the rest (newer hours) live.
                first_hour = start.replace(minute=0, second=0) + timedelta(hours=1)
                counts, live_from = _kpi_counts(conn, first_hour)
                live_from = live_from or first_hour
                head = _decision_counts(conn, start, min(first_hour, anchor))
                tail = _decision_counts(conn, max(live_from, first_hour), anchor)
                for source in (head, tail):
                    for d, c in source.items():
                        counts[d] = counts.get(d, 0) + c
            else:
                counts = _decision_counts(conn, start, anchor)
            windows[name] = _rates(counts)
        blocked = conn.execute(
            sa.select(
                p.c.order_id,
                p.c.fraud_score,
                p.c.model_version,
                p.c.created_at,
                o.c.price,
                o.c.buyer_wallet_id,
            )
            .join(o, o.c.order_id == p.c.order_id)
            .where(p.c.decision == BLOCKED)
            .order_by(p.c.created_at.desc(), p.c.id.desc())
            .limit(LATEST_BLOCKED)
        ).all()
        hourly = _hourly(conn, anchor, postgres)
    return {
        "orders": True,
        "as_of": anchor if anchor != now else None,
        "windows": windows,
        "hourly": hourly,
        "latest_blocked": [row._asdict() for row in blocked],
        "alerts": _firing_alerts(engine),
    }


def _hourly(conn: sa.Connection, anchor: datetime, postgres: bool) -> list[dict]:
    """Flagged share per hour over the last SPARK_HOURS hours before `anchor`, oldest first."""
    start = anchor - timedelta(hours=SPARK_HOURS)
    if postgres:
        kpi = sa.table(
            KPI_VIEW,
            sa.column("hour"),
            sa.column("scored_orders"),
            sa.column("manual_review_count"),
            sa.column("blocked_count"),
        )
        rows = conn.execute(
            sa.select(
                kpi.c.hour, kpi.c.scored_orders, kpi.c.manual_review_count + kpi.c.blocked_count
            )
            .where(kpi.c.hour > start, kpi.c.hour <= anchor)
            .order_by(kpi.c.hour)
        ).all()
    else:
        o, p = schema.orders, schema.fraud_predictions
        hour = _hour_expression(conn.dialect.name, o.c.created_at)
        flagged = sa.func.sum(sa.case((p.c.decision.in_(FLAGGED), 1), else_=0))
        rows = conn.execute(
            sa.select(hour.label("hour"), sa.func.count(), flagged)
            .select_from(o.join(p, p.c.order_id == o.c.order_id))
            .where(
                o.c.created_at > start, o.c.created_at <= anchor, p.c.id == _latest_prediction(o, p)
            )
            .group_by(hour)
            .order_by(hour)
        ).all()
    return [
        {
            "hour": str(h),
            "scored": int(s or 0),
            "flagged": int(f or 0),
            "fraud_rate": (int(f or 0) / int(s)) if s else 0.0,
        }
        for h, s, f in rows
    ]


def _hour_expression(dialect: str, column):
    if dialect == "mysql":
        return sa.func.date_format(column, "%Y-%m-%d %H:00:00")
    return sa.func.strftime("%Y-%m-%d %H:00:00", column)


def _firing_alerts(engine: Engine) -> list[dict]:
    """Firing alerts once alert rules are recorded (`mlkit alerts check`); else none."""
    try:
        from .alerts import firing_alerts
    except ImportError:
        return []
    return firing_alerts(engine, limit=5)


def bandit_overview(engine: Engine, redis) -> dict:
    from .pricing.service import stats_report
    from .pricing.state import BanditStore

    return stats_report(*BanditStore(engine, redis).read())


def training_overview(engine: Engine) -> dict:
    from .status import family_status

    return family_status(engine, bandit=False)  # the bandit has a panel of its own


class DashboardSource:
    """Reads every panel once per `snapshot()`; owns the engine and the Redis client and
    lets both reconnect by themselves after an outage."""

    def __init__(self, database: Engine | str, redis_url: str | None):
        from .db import make_engine

        self.engine = (
            database if isinstance(database, Engine) else make_engine(database, check=False)
        )
        self.redis_url = redis_url
        self._redis = None

    def redis(self):
        """A client when Redis answers a ping now, else None (and the state why)."""
        if not self.redis_url:
            return None, "disabled"
        import redis as redis_lib

        if self._redis is None:
            self._redis = redis_lib.Redis.from_url(
                self.redis_url, socket_connect_timeout=1, socket_timeout=1
            )
        try:
            self._redis.ping()
        except (redis_lib.RedisError, OSError):
            return None, DISCONNECTED
        return self._redis, "ok"

    def _panel(self, read) -> Panel:
        started = time.perf_counter()
        try:
            data, error = read(), None
        except sa.exc.DBAPIError:
            self.engine.dispose()  # the next poll opens fresh connections
            data, error = None, f"database {DISCONNECTED}"
        except Exception as exc:  # a panel never takes the dashboard down
            data, error = None, f"{type(exc).__name__}: {exc}"
        return Panel(data, error, time.perf_counter() - started)

    def snapshot(self) -> Snapshot:
        started = time.perf_counter()
        fraud = self._panel(lambda: fraud_overview(self.engine))
        redis, redis_state = self.redis()
        bandit = self._panel(lambda: bandit_overview(self.engine, redis))
        training = self._panel(lambda: training_overview(self.engine))
        return Snapshot(
            fraud=fraud,
            bandit=bandit,
            training=training,
            redis_state=redis_state,
            taken_at=utcnow(),
            seconds=time.perf_counter() - started,
            timings={
                "fraud": fraud.seconds,
                "bandit": bandit.seconds,
                "training": training.seconds,
            },
        )

    def close(self) -> None:
        self.engine.dispose()
        if self._redis is not None:
            self._redis.close()
