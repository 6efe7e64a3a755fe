"""What the dashboard shows, read live with bounded queries: fraud decisions and rates, the
bandit's arms, training status, firing alerts; and one order in detail.

Every read runs on the dashboard's own engine, whose connections carry a connect timeout and a
statement timeout (PostgreSQL statement_timeout, MySQL max_execution_time / MariaDB
max_statement_time, SQLite's busy timeout); a read that still gets no answer (a server or a
network that hangs rather than refuses) is aborted by a watchdog that shuts its socket down, so
a poll always ends within the timeout and says why. The fraud windows (1 h / 24 h / 7 d) and the
hourly series come from one snapshot: on PostgreSQL the whole hours `kpi refresh` keeps in
`kpi_hours` that nothing has changed since (no newer order or prediction there), every other
hour live from the orders and each order's latest prediction, so the figures are those of a live
read; elsewhere all live. No pandas on the poll path.
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from . import schema
from .clock import utcnow
from .db import dialect_name, masked, search_path_option, sqlite_functions, state_schema_of
from .fraud.columns import BLOCKED, DECISIONS, FLAGGED
from .kpi import COUNTS

WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
LATEST_BLOCKED = 20
TIMEOUT_SECONDS = 2.0  # connect and statement timeout of every dashboard query
DISCONNECTED = "disconnected, retrying"
BANDIT = "pricing"  # bandit_arms.bandit of the global pricing bandit (toolkit.pricing.state)
REDIS_PREFIX = "mab:"  # its Redis keys, mab:<arm> (toolkit.pricing.state)


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
    database_state: str  # ok, slow (answered after the timeout), down
    database_error: str | None
    taken_at: datetime
    seconds: float
    timings: dict = field(default_factory=dict)


class NotAnswering(Exception):
    """The database did not answer within the timeout; the read was aborted."""


# ---------------------------------------------------------------- engine


def where(url: URL) -> str:
    """host:port of a server, the file of SQLite."""
    if dialect_name(url) == "sqlite":
        return url.database or "memory"
    return f"{url.host or 'localhost'}:{url.port or ''}".rstrip(":")


def dashboard_engine(
    url: URL | str, timeout: float = TIMEOUT_SECONDS, state_schema: str | None = None
) -> Engine:
    """An engine for reads that never wait long: connect and statement timeouts per dialect;
    on PostgreSQL mlkit's state schema first on the search path, as make_engine has it."""
    parsed = sa.engine.make_url(url)
    dialect = dialect_name(parsed)
    seconds = max(1, math.ceil(timeout))
    millis = int(timeout * 1000)
    if dialect == "postgresql":
        args = {
            "connect_timeout": seconds,
            "application_name": "mlkit dashboard",
            # No JIT nor parallel workers: without fresh statistics their start-up costs
            # more than the few milliseconds of a dashboard query.
            "options": f"-c statement_timeout={millis} -c lock_timeout={millis} -c jit=off "
            "-c max_parallel_workers_per_gather=0",
        }
        if state_schema:
            args["options"] += f" {search_path_option(state_schema)}"
    elif dialect == "mysql":
        # read_timeout is the client's own: it ends a read the server never answers.
        args = {
            "connect_timeout": seconds,
            "read_timeout": seconds + 1,
            "write_timeout": seconds + 1,
            "charset": "utf8mb4",
        }
    else:
        args = {"timeout": timeout}
    engine = sa.create_engine(parsed, pool_pre_ping=True, pool_size=2, connect_args=args)
    if dialect == "mysql":
        sa.event.listen(engine, "connect", _mysql_statement_timeout(timeout))
    if dialect == "sqlite":
        sa.event.listen(engine, "connect", sqlite_functions)
    return engine


def _mysql_statement_timeout(timeout: float):
    def set_timeout(dbapi_connection, _record) -> None:
        mariadb = "mariadb" in dbapi_connection.get_server_info().lower()
        cursor = dbapi_connection.cursor()
        if mariadb:
            cursor.execute(f"SET SESSION max_statement_time = {timeout:.3f}")
        else:
            cursor.execute(f"SET SESSION max_execution_time = {int(timeout * 1000)}")
        cursor.close()

    return set_timeout


class Watchdog:
    """Aborts the reads on an engine: every connection it holds has its socket shut down (a
    SQLite read is interrupted), so a query or a pre-ping blocked on a server that stopped
    answering fails at once. Idle pooled connections go too; the pool reconnects."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._lock = threading.Lock()
        self._open: set = set()
        sa.event.listen(engine, "connect", self._opened)
        sa.event.listen(engine, "close", self._closed)
        sa.event.listen(engine, "close_detached", self._closed_detached)

    def _opened(self, dbapi_connection, _record) -> None:
        with self._lock:
            self._open.add(dbapi_connection)

    def _closed(self, dbapi_connection, _record) -> None:
        with self._lock:
            self._open.discard(dbapi_connection)

    def _closed_detached(self, dbapi_connection) -> None:
        self._closed(dbapi_connection, None)

    def abort(self) -> int:
        """Abort every connection; how many."""
        with self._lock:
            connections = list(self._open)
        for connection in connections:
            _abort(connection)
        return len(connections)


def _abort(connection) -> None:
    if hasattr(connection, "interrupt"):  # sqlite3
        connection.interrupt()
        return
    sock = getattr(connection, "_sock", None)  # pymysql
    fd = sock.fileno() if sock is not None else None
    if fd is None and hasattr(connection, "fileno"):  # psycopg2
        try:
            fd = connection.fileno()
        except Exception:  # already closed
            fd = None
    if fd is None or fd < 0:
        return
    try:
        with socket.socket(fileno=_dup(fd)) as s:
            s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _dup(fd: int) -> int:
    import os

    return os.dup(fd)


# ---------------------------------------------------------------- fraud


def latest(p, order_id, column):
    """`column` of the order's latest prediction, as a correlated scalar subquery: the
    (order_id, id) index walked backwards, one entry read. Ordered by both columns, so no
    planner, with statistics or without, prefers the primary key filtered on the order (what
    a PostgreSQL never analysed did for max(id))."""
    p2 = p.alias("latest")
    return (
        sa.select(p2.c[column])
        .where(p2.c.order_id == order_id)
        .order_by(p2.c.order_id.desc(), p2.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def _hour(dialect: str, column):
    if dialect == "postgresql":
        return sa.func.date_trunc("hour", column)
    if dialect == "mysql":
        return sa.func.date_format(column, "%Y-%m-%d %H:00:00")
    return sa.func.strftime("%Y-%m-%d %H:00:00", column)


def _as_hour(value) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def window_counts(
    conn: sa.Connection, anchor: datetime, hours: list[tuple[datetime, datetime]] | None = None
) -> list[tuple]:
    """(hour, decision or None when unscored, in the last 24 h, in the last hour, orders) for
    the orders placed in the 7 days up to `anchor` (only those in the [start, end) ranges of
    `hours` when given), each with its latest prediction: one statement, so every window
    and every hour comes from the same snapshot."""
    o, p = schema.orders, schema.fraud_predictions
    low, high = anchor - WINDOWS["7d"], anchor
    placed = sa.and_(o.c.created_at > low, o.c.created_at <= high)
    if hours is not None:
        # Each range cut to the window by its own bounds, so no planner factors a shared
        # bound out of the OR and scans the whole window with it: one index scan a range.
        placed = sa.or_(
            sa.false(),
            *[
                sa.and_(
                    o.c.created_at > low if start <= low else o.c.created_at >= start,
                    o.c.created_at <= high if end > high else o.c.created_at < end,
                )
                for start, end in hours
                if start <= high and end > low
            ],
        )
    orders = (
        sa.select(
            _hour(conn.dialect.name, o.c.created_at).label("hour"),
            latest(p, o.c.order_id, "decision").label("decision"),
            sa.case((o.c.created_at > anchor - WINDOWS["24h"], 1), else_=0).label("in_24h"),
            sa.case((o.c.created_at > anchor - WINDOWS["1h"], 1), else_=0).label("in_1h"),
        )
        .where(placed)
        .subquery("placed")
    )
    query = sa.select(
        orders.c.hour, orders.c.decision, orders.c.in_24h, orders.c.in_1h, sa.func.count()
    ).group_by(orders.c.hour, orders.c.decision, orders.c.in_24h, orders.c.in_1h)
    return [tuple(row) for row in conn.execute(query)]


def kept_and_live_counts(conn: sa.Connection, anchor: datetime) -> tuple[list[tuple], dict]:
    """`window_counts`' rows for the 7 days up to `anchor`, the whole hours that kpi_hours
    keeps (PostgreSQL, refreshed by `kpi refresh`) read from it, the others live: the hours
    at the windows' edges, and those of orders and predictions added since its refresh
    (ids past its watermarks) or placed since its newest order. The same snapshot holds
    the kept hours and their watermarks, so the figures are those of a live read. Also
    what came from where (`source`)."""
    from .kpi import hour_of, hour_ranges, kpi_hours, kpi_hours_state

    state = None
    if conn.dialect.name == "postgresql":
        exists = conn.execute(sa.text("SELECT to_regclass('kpi_hours_state') IS NOT NULL"))
        if exists.scalar():
            s = kpi_hours_state
            state = conn.execute(sa.select(s).where(s.c.id == 1)).first()
    if state is None or state.newest_order_at is None:
        return window_counts(conn, anchor), {"kept_hours": 0, "kept_refreshed_at": None}
    first = hour_of(anchor - WINDOWS["7d"])
    live = {hour_of(anchor - span) for span in WINDOWS.values()} | {hour_of(anchor)}
    live |= _hours_added_since(conn, state, first)
    # Live too: the hours before the kept window's first whole one, and since its newest.
    for start, end in ((first, state.window_start), (hour_of(state.newest_order_at), anchor)):
        hour = hour_of(start)
        while hour <= end:
            live.add(hour)
            hour += timedelta(hours=1)
    h = kpi_hours
    kept = conn.execute(
        sa.select(h.c.hour, h.c.total_orders, h.c.scored_orders, *[h.c[c] for c in COUNTS])
        .where(h.c.hour > first, h.c.hour > state.window_start, h.c.hour <= anchor)
        .where(h.c.hour.not_in(sorted(live)))
    ).all()
    rows = []
    for hour, total, scored, *counts in kept:
        in_24h = int(hour > anchor - WINDOWS["24h"])
        in_1h = int(hour > anchor - WINDOWS["1h"])
        for decision, count in [*zip(DECISIONS, counts, strict=True), (None, total - scored)]:
            if count:
                rows.append((hour, decision, in_24h, in_1h, count))
    kept_hours = {row[0] for row in kept}
    # The window's hours neither kept nor live had no orders when kept: none since.
    live = {hour for hour in live if hour >= first}
    rows += window_counts(conn, anchor, hour_ranges(live))
    return rows, {"kept_hours": len(kept_hours), "kept_refreshed_at": state.refreshed_at}


def _hours_added_since(conn: sa.Connection, state, first: datetime) -> set[datetime]:
    """The hours (from `first`) of the orders and of the predictions' orders whose ids are
    past kpi_hours' watermarks; closed id ranges, read through the primary keys."""
    o, p = schema.orders, schema.fraud_predictions
    order_max, prediction_max = conn.execute(
        sa.select(sa.select(sa.func.max(o.c.order_id)).scalar_subquery(), sa.func.max(p.c.id))
    ).one()
    hour = _hour("postgresql", o.c.created_at)
    placed = (
        sa.select(o.c.created_at).where(o.c.order_id == p.c.order_id).scalar_subquery()
    ).label("placed")
    scored = (
        sa.select(placed)
        .where(p.c.id > state.prediction_watermark, p.c.id <= (prediction_max or 0))
        .subquery()
    )
    hours = conn.execute(
        sa.union(
            sa.select(hour).where(
                o.c.order_id > state.order_watermark,
                o.c.order_id <= (order_max or 0),
                o.c.created_at >= first,
            ),
            sa.select(sa.func.date_trunc("hour", scored.c.placed)).where(scored.c.placed >= first),
        )
    ).scalars()
    return {_as_hour(h) for h in hours}


def _tally(counts: dict) -> dict:
    scored = sum(counts.get(d, 0) for d in DECISIONS)
    flagged = sum(counts.get(d, 0) for d in FLAGGED)
    return {
        "counts": {d: counts.get(d, 0) for d in DECISIONS},
        "orders": scored + counts.get(None, 0),
        "scored": scored,
        "unscored": counts.get(None, 0),
        "flagged": flagged,
        "fraud_rate": flagged / scored if scored else None,
    }


def summarize(rows: list[tuple], anchor: datetime) -> tuple[dict, list[dict]]:
    """The windows (each with its start and end) and the hourly series (every hour the 7 d
    window touches, oldest first, zeros where nothing happened) from `window_counts`' rows."""
    per_window: dict[str, dict] = {name: {} for name in WINDOWS}
    per_hour: dict[datetime, dict] = {}
    for hour, decision, in_24h, in_1h, count in rows:
        count = int(count)
        for name, inside in (("7d", True), ("24h", in_24h), ("1h", in_1h)):
            if inside:
                per_window[name][decision] = per_window[name].get(decision, 0) + count
        bucket = per_hour.setdefault(_as_hour(hour), {})
        bucket[decision] = bucket.get(decision, 0) + count
    windows = {
        name: _tally(per_window[name]) | {"start": anchor - span, "end": anchor}
        for name, span in WINDOWS.items()
    }
    hour = (anchor - WINDOWS["7d"]).replace(minute=0, second=0, microsecond=0)
    hourly = []
    while hour <= anchor:  # the partial hours at both ends included
        hourly.append({"hour": hour} | _tally(per_hour.get(hour, {})))
        hour += timedelta(hours=1)
    return windows, hourly


def latest_blocked(conn: sa.Connection, limit: int = LATEST_BLOCKED) -> list[dict]:
    """The orders most recently blocked (their latest prediction BLOCKED), newest first. The
    newest BLOCKED predictions are read in order from the index of the BLOCKED rows, a few
    times `limit` of them (more while too few are still their order's latest): bounded,
    whatever a planner without statistics guesses of how many rows are BLOCKED."""
    o, p = schema.orders, schema.fraud_predictions
    # Inline, so SQLite can use its partial index of the BLOCKED rows.
    blocked = p.c.decision == sa.literal(BLOCKED, literal_execute=True)
    newest = p.c.created_at.desc(), p.c.id.desc()
    window = limit * 4
    while True:
        candidates = (
            conn.execute(sa.select(p.c.id).where(blocked).order_by(*newest).limit(window))
            .scalars()
            .all()
        )
        rows = conn.execute(
            sa.select(
                p.c.order_id,
                p.c.fraud_score,
                p.c.model_version,
                p.c.created_at.label("scored_at"),
                o.c.created_at.label("placed_at"),
                o.c.price,
                o.c.buyer_wallet_id,
            )
            .join(o, o.c.order_id == p.c.order_id)
            .where(p.c.id.in_(candidates), p.c.id == latest(p, p.c.order_id, "id"))
            .order_by(*newest)
            .limit(limit)
        ).all()
        if len(rows) == limit or len(candidates) < window:
            return [row._asdict() for row in rows]
        window *= 4


def fraud_overview(engine: Engine, now: datetime | None = None) -> dict:
    """Decisions and the flagged share (BLOCKED + MANUAL_REVIEW of the scored) of orders placed
    in the last 1 h / 24 h / 7 d, the hourly series, the latest blocked orders and the firing
    alerts, in one read-only transaction (repeatable read where the server has it). Windows
    end now, or at the newest order when none came in the last 7 days (`as_of`)."""
    o = schema.orders
    now = now or utcnow()
    with snapshot_connection(engine) as conn:
        newest = conn.execute(sa.select(sa.func.max(o.c.created_at))).scalar()
        if newest is None:
            return {"orders": False, "read_at": now, "alerts": _firing_alerts(conn)}
        anchor = now if newest >= now - WINDOWS["7d"] else newest
        rows, source = kept_and_live_counts(conn, anchor)
        windows, hourly = summarize(rows, anchor)
        blocked = latest_blocked(conn)
        alerts = _firing_alerts(conn)
    return {
        "orders": True,
        "read_at": now,
        "anchor": anchor,
        "as_of": anchor if anchor != now else None,
        "newest_order": newest,
        "windows": windows,
        "hourly": hourly,
        "latest_blocked": blocked,
        "alerts": alerts,
        "source": source,
    }


class snapshot_connection:
    """A connection in one read-only transaction: repeatable read on PostgreSQL and MySQL (all
    its statements see one snapshot); on SQLite one statement is one snapshot."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def __enter__(self) -> sa.Connection:
        dialect = dialect_name(self.engine)
        self.conn = self.engine.connect()
        if dialect != "sqlite":
            self.conn = self.conn.execution_options(isolation_level="REPEATABLE READ")
        self.transaction = self.conn.begin()
        return self.conn

    def __exit__(self, *exc) -> None:
        try:
            self.transaction.rollback()  # read only: nothing to keep
        finally:
            self.conn.close()


def _firing_alerts(conn: sa.Connection, limit: int = 5) -> list[dict]:
    a = schema.alerts
    if not sa.inspect(conn).has_table(a.name):  # a database initialised before alerts
        return []
    rows = conn.execute(
        sa.select(a.c.rule, a.c.severity, a.c.value, a.c.threshold, a.c.message, a.c.fired_at)
        .where(a.c.status == "firing")
        .order_by(a.c.fired_at.desc(), a.c.alert_id.desc())
        .limit(limit)
    ).all()
    return [row._asdict() for row in rows]


def fraud_thresholds(rules: list[dict] | None) -> list[float]:
    """The thresholds of the enabled `fraud_rate > x` alert rules (config alerts.rules),
    ascending: what the dashboard colours fraud rates by."""
    from .alerts import parse_rules

    return sorted(
        r.threshold
        for r in parse_rules(rules or [])
        if r.metric == "fraud_rate" and r.op in (">", ">=")
    )


# ---------------------------------------------------------------- bandit


def bandit_overview(engine: Engine, redis) -> dict:
    """The pricing bandit's arms, read only: from Redis when every arm's value there carries
    this database's stamp (its generation and identity), else from the database, saying why
    (`redis_note`). Redis values of another database sharing the index are never shown."""
    from .pricing.posterior import posterior_interval

    arms_table, g = schema.bandit_arms, schema.bandit_generations
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(arms_table).where(arms_table.c.bandit == BANDIT).order_by(arms_table.c.arm)
        ).all()
        stamp = conn.execute(
            sa.select(g.c.generation, g.c.database_id).where(g.c.bandit == BANDIT)
        ).first()
    states = {
        row.arm: {
            "pulls": int(row.pulls),
            "reward_sum": float(row.reward_sum),
            "updated_at": row.updated_at,
        }
        for row in rows
    }
    source, note = "database", None
    if redis is not None and states and stamp is not None:
        cached, note = _redis_states(redis, list(states), stamp)
        if cached is not None:
            states, source = cached, "redis"
    import numpy as np

    pulls = np.array([s["pulls"] for s in states.values()], dtype=float)
    sums = np.array([s["reward_sum"] for s in states.values()], dtype=float)
    total = int(pulls.sum())
    interval = posterior_interval(pulls, sums) if states else []
    means = {
        arm: (s["reward_sum"] / s["pulls"] if s["pulls"] else 0.0) for arm, s in states.items()
    }
    best = max(means, key=means.get) if total else None
    arms = {
        arm: {
            "pulls": s["pulls"],
            "mean": means[arm],
            "share": s["pulls"] / total if total else 0.0,
            "interval_90": [float(interval[i][0]), float(interval[i][1])],
            "best": arm == best,
            "updated_at": s["updated_at"],
        }
        for i, (arm, s) in enumerate(states.items())
    }
    return {
        "trained": bool(states),
        "source": source,
        "redis_note": note,
        "total_pulls": total,
        "best_arm": best,
        "arms": arms,
    }


def _redis_states(redis, arms: list[str], stamp) -> tuple[dict | None, str | None]:
    """The arms' states in Redis when all carry `stamp`, else None and why not."""
    import redis as redis_lib

    try:
        raw = redis.mget([REDIS_PREFIX + arm for arm in arms])
    except redis_lib.RedisError as exc:
        return None, f"Redis did not answer ({type(exc).__name__})"
    states, foreign = {}, False
    for arm, value in zip(arms, raw, strict=True):
        try:
            item = json.loads(value) if value is not None else None
        except ValueError:
            item = None
        if not isinstance(item, dict):
            continue
        if item.get("database_id") != stamp.database_id:
            foreign = True
        elif item.get("generation") == stamp.generation:
            states[arm] = {
                "pulls": int(item.get("pulls", 0)),
                "reward_sum": float(item.get("reward_sum", 0.0)),
                "updated_at": datetime.fromisoformat(item["updated_at"])
                if item.get("updated_at")
                else None,
            }
    if len(states) == len(arms):
        return states, None
    if foreign:
        return None, "Redis holds another database's bandit: not shown"
    return None, "Redis is behind the database (rewritten by the next pricing read)"


# ---------------------------------------------------------------- training


def training_overview(engine: Engine) -> dict:
    """Per family the status `mlkit status` shows (toolkit.status.family_status), with its
    state ok / running / candidate-rejected / cooling-down / failed / untrained."""
    from .status import family_status

    return family_status(engine, bandit=False)  # the bandit has a panel of its own


def family_runs(engine: Engine, family: str, limit: int = 10) -> list[dict]:
    """A family's last training runs, newest first (signal: every symbol's)."""
    t = schema.training_runs
    name = t.c.model_name.like("signal-%") if family == "signal" else t.c.model_name == family
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                t.c.run_id,
                t.c.model_name,
                t.c.status,
                t.c.version,
                t.c.started_at,
                t.c.duration_seconds,
                t.c.n_samples,
                t.c.last_error,
            )
            .where(name)
            .order_by(t.c.run_id.desc())
            .limit(limit)
        ).all()
    return [row._asdict() for row in rows]


# ---------------------------------------------------------------- source


class DashboardSource:
    """Reads every panel once per `snapshot()` on its own timeout-bounded engine; owns that
    engine and the Redis client, both reconnecting by themselves after an outage. A read
    without an answer within the timeout is aborted by the watchdog and reported with the
    database's host and the cause."""

    def __init__(
        self, database: Engine | URL | str, redis_url: str | None, timeout: float = TIMEOUT_SECONDS
    ):
        url = database.url if isinstance(database, Engine) else database
        state = state_schema_of(database) if isinstance(database, Engine) else None
        self.engine = dashboard_engine(url, timeout, state)
        self.label = masked(self.engine)
        self.where = where(self.engine.url)
        self.timeout = timeout
        self.watchdog = Watchdog(self.engine)
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

    def read(self, what):
        """`what(engine)` with the watchdog armed: aborted after the timeout (plus a margin
        for the server's own statement timeout to answer first)."""
        fired = threading.Event()

        def fire() -> None:
            fired.set()
            self.watchdog.abort()

        timer = threading.Timer(self.timeout + 1.0, fire)
        timer.daemon = True
        timer.start()
        try:
            return what(self.engine)
        except sa.exc.DBAPIError:
            if fired.is_set():
                raise NotAnswering(
                    f"database not answering: no reply from {self.where} "
                    f"within {self.timeout + 1.0:g} s, read aborted"
                ) from None
            raise
        finally:
            timer.cancel()

    def _panel(self, read) -> Panel:
        started = time.perf_counter()
        try:
            data, error = self.read(read), None
        except NotAnswering as exc:
            self.engine.dispose()
            data, error = None, str(exc)
        except sa.exc.DBAPIError as exc:
            self.engine.dispose()  # the next poll opens fresh connections
            data, error = None, _database_error(exc, self.where)
        except Exception as exc:  # a panel never takes the dashboard down
            data, error = None, f"{type(exc).__name__}: {exc}"
        return Panel(data, error, time.perf_counter() - started)

    def snapshot(self) -> Snapshot:
        started = time.perf_counter()
        fraud = self._panel(fraud_overview)
        redis, redis_state = self.redis()
        down = fraud.error if fraud.error and fraud.error.startswith("database") else None
        if down:  # one wait per poll: the other panels say the same without asking again
            bandit, training = Panel(None, down), Panel(None, down)
        else:
            bandit = self._panel(lambda engine: bandit_overview(engine, redis))
            training = self._panel(training_overview)
        seconds = time.perf_counter() - started
        if down and not down.startswith("database slow"):
            state = "down"
        else:  # the fraud panel's time is the database's (the others import on first use)
            state = "slow" if down or fraud.seconds > self.timeout else "ok"
        return Snapshot(
            fraud=fraud,
            bandit=bandit,
            training=training,
            redis_state=redis_state,
            database_state=state,
            database_error=down,
            taken_at=utcnow(),
            seconds=seconds,
            timings={
                "fraud": fraud.seconds,
                "bandit": bandit.seconds,
                "training": training.seconds,
            },
        )

    def abort(self) -> None:
        """End the reads in flight now (the dashboard quitting)."""
        self.watchdog.abort()

    def close(self) -> None:
        self.watchdog.abort()
        self.engine.dispose()
        if self._redis is not None:
            self._redis.close()


SLOW = ("statement timeout", "max_execution_time", "max_statement_time", "interrupted", "locked")
NOT_ANSWERING = ("timeout expired", "timed out", "lost connection", "closed the connection")


def _database_error(exc: sa.exc.DBAPIError, host: str) -> str:
    """One line: the database is down, slow (its statement timeout) or failing, and why."""
    text = str(exc.orig) if exc.orig is not None else str(exc)
    first = (text.strip().splitlines() or [type(exc).__name__])[0][:160]
    lowered = text.lower()
    if any(s in lowered for s in SLOW):
        return f"database slow at {host}: {first}"
    if any(s in lowered for s in NOT_ANSWERING):
        return f"database not answering at {host}: {first}"
    if isinstance(exc, sa.exc.OperationalError):
        return f"database {DISCONNECTED} at {host}: {first}"
    return f"database error at {host}: {first}"
