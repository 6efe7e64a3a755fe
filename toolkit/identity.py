"""Each database's identity, and the folders its files live in on this machine.

A database gets a random id on first use, stored in it; its artifacts, datasets and the
recommender's LAST_GOOD live under that id, so databases sharing one MLKIT_HOME never touch each
other's files. Each read of the id is also recorded on this machine (`<artifacts>/databases/<sha256
of the URL>.json`), so the recommender's fallback finds its LAST_GOOD while the database is down.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import IntegrityError

from . import schema
from .clock import utcnow
from .db import explain_db_error
from .errors import MlkitError

# The identity is the database_id of this row (toolkit.pricing.state.BANDIT), which the
# bandit stamps its Redis values with: one id per database, created here.
IDENTITY_ROW = "pricing"
ID_PATTERN = re.compile(r"[0-9a-f]{32}")
MAP_FOLDER = "databases"


@dataclass(frozen=True)
class DatabaseHome:
    """Where one database's files live: its id and its artifacts and datasets folders."""

    database_id: str
    artifacts_dir: Path
    datasets_dir: Path


def database_id(engine: Engine) -> str:
    """The database's identity, created (a random 32-hex id) on first use."""
    g = schema.bandit_generations
    try:
        try:
            found = _read_id(engine)
        except (sa.exc.ProgrammingError, sa.exc.OperationalError):
            # A database initialised before the table existed: add it (idempotent).
            g.create(engine, checkfirst=True)
            found = None
        if found is not None:
            return found
        try:
            with engine.begin() as conn:
                conn.execute(
                    g.insert().values(
                        bandit=IDENTITY_ROW,
                        generation=1,
                        database_id=secrets.token_hex(16),
                        updated_at=utcnow(),
                    )
                )
        except IntegrityError:
            pass  # another process created it first
        return _read_id(engine)
    except sa.exc.DBAPIError as exc:
        raise explain_db_error(exc, engine.url) from None


def _read_id(engine: Engine) -> str | None:
    g = schema.bandit_generations
    with engine.connect() as conn:
        found = conn.execute(sa.select(g.c.database_id).where(g.c.bandit == IDENTITY_ROW)).scalar()
    if found is not None and not ID_PATTERN.fullmatch(found):
        # It names a folder: anything else could point outside the artifacts root.
        raise MlkitError(
            f"the database's identity {found!r} is not 32 hex digits",
            hint="restore the bandit_generations row of this database from a backup",
        )
    return found


def database_home(config, engine: Engine) -> DatabaseHome:
    """This database's folders under the configured roots (its id read from it, and
    recorded on this machine for the database-down fallback)."""
    identity = database_id(engine)
    remember_identity(config.artifacts_dir, engine.url, identity)
    return home_of(config, identity)


def home_of(config, identity: str) -> DatabaseHome:
    return DatabaseHome(
        identity,
        Path(config.artifacts_dir).expanduser() / identity,
        Path(config.datasets_dir).expanduser() / identity,
    )


def url_key(url: URL | str) -> str:
    """The URL as the local map records it: password masked, a SQLite file made absolute."""
    url = sa.make_url(url) if isinstance(url, str) else url
    if url.drivername.startswith("sqlite") and url.database and url.database != ":memory:":
        url = url.set(database=str(Path(url.database).expanduser().resolve()))
    return url.render_as_string(hide_password=True)


def _map_file(artifacts_root: Path, key: str) -> Path:
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return Path(artifacts_root).expanduser() / MAP_FOLDER / f"{digest}.json"


def remember_identity(artifacts_root: Path, url: URL | str, identity: str) -> None:
    """Record on this machine that `url` names the database `identity` (written when it
    changes; a folder that cannot be written only loses the fallback)."""
    from .datasets import _atomic_write_text

    key = url_key(url)
    if known_database_id(artifacts_root, url) == identity:
        return
    document = json.dumps({"url": key, "database_id": identity}) + "\n"
    # Read-only artifacts: serving works, only the offline fallback is missing.
    with contextlib.suppress(OSError):
        _atomic_write_text(_map_file(artifacts_root, key), document)


def known_database_id(artifacts_root: Path, url: URL | str) -> str | None:
    """The identity last read from the database at `url` on this machine, without asking it."""
    key = url_key(url)
    try:
        document = json.loads(_map_file(artifacts_root, key).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("url") != key:
        return None
    identity = document.get("database_id")
    return identity if isinstance(identity, str) and ID_PATTERN.fullmatch(identity) else None
