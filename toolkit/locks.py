"""Job locks: one job of a kind at a time across processes and hosts, on every dialect.

A lock is held by its own connection for the whole job (a PostgreSQL advisory lock, a MySQL named
lock, an `flock` beside a SQLite file), so the server or the kernel releases it when the process
dies. A job that finds its kind busy waits as long as `POLICIES` says, then raises `JobBusy`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from .errors import MlkitError

log = logging.getLogger(__name__)

# How often a waiting SQLite job tries its flock again (flock itself has no timeout).
_SQLITE_POLL_SECONDS = 0.05
_PG_LOCK_NOT_AVAILABLE = "55P03"


@dataclass(frozen=True)
class LockPolicy:
    """How long a job of this kind waits for a running one; 0 refuses at once."""

    wait_seconds: float
    label: str


# The long jobs wait: after the first, a second is cheap and correct (nothing is left to do).
# A second training of the same model is wasted work, so it is refused; cron runs it next slot.
POLICIES: dict[str, LockPolicy] = {
    "etl": LockPolicy(3600, "ETL"),
    "scoring": LockPolicy(3600, "scoring"),
    "retention": LockPolicy(3600, "retention"),
    "alerts": LockPolicy(600, "alerts check"),
    "kpi": LockPolicy(600, "kpi refresh"),
    "register": LockPolicy(60, "model registration"),
    "alias": LockPolicy(60, "alias move"),
    "train": LockPolicy(0, "training"),
}


class JobBusy(MlkitError):
    """Another job of the same kind (and name) holds the lock."""


def _busy(kind: str, name: str | None, waited: float) -> JobBusy:
    policy = POLICIES[kind]
    what = f"{policy.label} run" + (f" of {name}" if name else "")
    if waited > 0:
        return JobBusy(
            f"another {what} is in progress (waited {waited:g} s for it)",
            hint="it is taking unusually long; `mlkit status` or the logs show what it does",
        )
    return JobBusy(f"another {what} is in progress", hint="wait for it to finish, then run again")


def lock_key(database: str | None, kind: str, name: str | None = None) -> str:
    """The lock's name on the server, `mlkit:<database>:<kind>[:<name>]`, hashed past
    MySQL's 64 characters. The database is in it because MySQL's named locks are
    server-wide: two databases on one server must not block each other."""
    key = f"mlkit:{database or ''}:{kind}" + (f":{name}" if name else "")
    return key if len(key) <= 64 else f"mlkit:{kind}:{hashlib.sha1(key.encode()).hexdigest()}"


def _pg_key(key: str) -> int:
    """A stable signed 64-bit advisory lock key for a lock name."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


def sqlite_lock_path(engine: Engine, kind: str, name: str | None = None) -> Path:
    """`<db>.lock-<kind>[-<name>]` beside the SQLite file (a temp folder for :memory:)."""
    suffix = re.sub(r"[^A-Za-z0-9_.-]", "_", kind + (f"-{name}" if name else ""))
    database = engine.url.database
    if not database or database == ":memory:":
        return Path(tempfile.gettempdir()) / f"mlkit-memory.lock-{suffix}"
    db = Path(database).expanduser().resolve()
    return db.with_name(f"{db.name}.lock-{suffix}")


@contextmanager
def job_lock(
    engine: Engine,
    kind: str,
    name: str | None = None,
    *,
    wait_seconds: float | None = None,
    on_wait: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Hold the lock of job `kind` (per `name`, e.g. a model) for the body; `wait_seconds` overrides
    the kind's wait, and `on_wait` is called once if the lock is busy."""
    if kind not in POLICIES:
        raise ValueError(f"unknown job kind {kind!r}; known: {', '.join(POLICIES)}")
    wait = POLICIES[kind].wait_seconds if wait_seconds is None else max(float(wait_seconds), 0.0)

    def waiting() -> None:
        log.info("another %s is running: waiting up to %g s for its lock", kind, wait)
        if on_wait is not None:
            on_wait()

    if engine.dialect.name == "sqlite":
        handle = _flock(sqlite_lock_path(engine, kind, name), wait, waiting)
        if handle is None:
            raise _busy(kind, name, wait)
        try:
            yield
        finally:
            _funlock(handle)
        return
    key = lock_key(engine.url.database, kind, name)
    conn = engine.connect()
    try:
        if not _server_lock(conn, key, wait, waiting):
            raise _busy(kind, name, wait)
        try:
            yield
        finally:
            _server_unlock(conn, key)
    finally:
        conn.close()


def _flock(path: Path, wait: float, waiting: Callable[[], None]) -> Any:
    """The open, locked file, or None when the wait ran out."""
    import fcntl

    handle = open(path, "a+")  # noqa: SIM115 - held until _funlock
    try:
        deadline = None
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                return handle
            except BlockingIOError:
                pass
            if deadline is None:
                if wait <= 0:
                    handle.close()
                    return None
                waiting()
                deadline = time.monotonic() + wait
            left = deadline - time.monotonic()
            if left <= 0:
                handle.close()
                return None
            time.sleep(min(_SQLITE_POLL_SECONDS, left))
    except BaseException:
        handle.close()
        raise


def _funlock(handle: Any) -> None:
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()


def _server_lock(conn: sa.Connection, key: str, wait: float, waiting: Callable[[], None]) -> bool:
    """Take the session lock on `conn`: at once if free, else wait up to `wait` seconds."""
    postgres = conn.dialect.name == "postgresql"
    if postgres:
        got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": _pg_key(key)})
    else:
        got = conn.execute(sa.text("SELECT GET_LOCK(:k, 0)"), {"k": key})
    got = got.scalar()
    conn.commit()  # the lock belongs to the session, not to this transaction
    if got in (True, 1):
        return True
    if wait <= 0:
        return False
    waiting()
    if not postgres:
        got = conn.execute(
            sa.text("SELECT GET_LOCK(:k, :t)"), {"k": key, "t": max(1, math.ceil(wait))}
        ).scalar()
        conn.commit()
        return got == 1
    try:
        # lock_timeout bounds the wait; SET LOCAL ends with this transaction, the lock not.
        conn.execute(
            sa.text("SELECT set_config('lock_timeout', :t, true)"),
            {"t": f"{max(1, math.ceil(wait * 1000))}ms"},
        )
        conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _pg_key(key)})
        conn.commit()
    except DBAPIError as exc:
        conn.rollback()
        code = getattr(exc.orig, "pgcode", None) or getattr(exc.orig, "sqlstate", None)
        if code == _PG_LOCK_NOT_AVAILABLE:
            return False
        raise
    return True


def _server_unlock(conn: sa.Connection, key: str) -> None:
    try:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _pg_key(key)})
        else:
            conn.execute(sa.text("SELECT RELEASE_LOCK(:k)"), {"k": key})
        conn.commit()
    except Exception:  # the server drops the lock with the session: end the session
        log.warning("could not release the job lock %s; dropping its session", key)
        conn.invalidate()
