"""A scratch PostgreSQL database for a benchmark, dropped afterwards whatever happens."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

POSTGRES_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"


@contextmanager
def scratch_postgres(server: str = POSTGRES_SERVER, prefix: str = "mlkit_bench") -> Iterator[str]:
    """Yields the URL of a new, empty database on `server` (a URL without a database)."""
    admin = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{time.time_ns()}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{server}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
