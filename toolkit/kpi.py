"""The hourly KPI view: recomputed where it is materialized, checked everywhere."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .db import KPI_VIEW, dialect_name, refresh_kpi
from .errors import MlkitError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


def refresh_kpi_view(engine: Engine) -> dict[str, Any]:
    """Refresh kpi_hourly (PostgreSQL: concurrently, readers never blocked); elsewhere it is
    a plain, always-current view and nothing is done. An error when the view is missing."""
    dialect = dialect_name(engine)
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        views = set(inspector.get_view_names())
        if dialect == "postgresql":
            views |= set(inspector.get_materialized_view_names())
    if KPI_VIEW not in views:
        raise MlkitError(f"the {KPI_VIEW} view is missing", hint="create it with `mlkit db init`")
    started = time.perf_counter()
    refresh_kpi(engine)
    refreshed = dialect == "postgresql"
    return {
        "view": KPI_VIEW,
        "dialect": dialect,
        "refreshed": refreshed,
        "seconds": round(time.perf_counter() - started, 3),
        "note": (
            f"refreshed {KPI_VIEW} concurrently"
            if refreshed
            else f"{KPI_VIEW} is a plain view on {dialect}: always current, nothing to refresh"
        ),
    }
