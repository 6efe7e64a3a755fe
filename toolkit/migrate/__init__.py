"""Move a database to another one (SQLite, PostgreSQL, MySQL in any direction): tables
translated by reflection, rows streamed in committed batches that a crash can resume,
and both sides compared by order-independent checksums afterwards."""

from __future__ import annotations

from .plan import build_plan, open_source, open_target
from .run import MigrationOptions, MigrationReport, migrate, migrate_configured

__all__ = [
    "MigrationOptions",
    "MigrationReport",
    "build_plan",
    "migrate",
    "migrate_configured",
    "open_source",
    "open_target",
]
