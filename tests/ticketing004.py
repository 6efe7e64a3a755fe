"""The ticketing deployment's database (seed 004) as it ships: its schema DDL, verbatim in
examples/sources/, run on a fresh PostgreSQL database."""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_SQL = ROOT / "examples" / "sources" / "ticketing-004-schema.sql"
SEEDS = ROOT.parent / "shared" / "seeds"
PLATFORM_TABLES = (
    "transactions",
    "fraud_predictions",
    "security_events",
    "blacklisted_wallets",
    "admin_audit_log",
    "transactions_archive",
    "fraud_predictions_archive",
)


def seed_schema_block() -> str | None:
    """The `schema.sql` block of the seed's deployment guide, or None without ../shared/seeds."""
    guides = sorted(SEEDS.glob("004_*.txt")) if SEEDS.is_dir() else []
    if not guides:
        return None
    text = guides[0].read_text(encoding="utf-8")
    found = re.search(r"\*\*schema\.sql\*\*:\n```sql\n(.*?)```", text, re.S)
    assert found, f"{guides[0]} has no schema.sql block"
    return found.group(1)


def ensure_admin_role(engine: sa.Engine) -> None:
    """The role the DDL grants to; roles are per server, so tests running at once may race."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(
            "DO $$ BEGIN CREATE ROLE admin; "
            "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        )


def create_platform_schema(engine: sa.Engine) -> None:
    """Run the shipped DDL as one script, the way `psql -f schema.sql` does."""
    ensure_admin_role(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(SCHEMA_SQL.read_text(encoding="utf-8"))


def public_objects(engine: sa.Engine) -> set[tuple[str, str]]:
    """Every relation, sequence, view, function and type in the platform's public schema."""
    query = """
        SELECT c.relkind::text, c.relname::text FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'
        UNION ALL
        SELECT 'function', p.proname::text FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
        UNION ALL
        SELECT 'type', t.typname::text FROM pg_type t
        JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname = 'public' AND t.typtype NOT IN ('c', 'b')
    """
    with engine.connect() as conn:
        return {(kind, name) for kind, name in conn.exec_driver_sql(query)}


def train(cli, env: dict, engine: sa.Engine) -> None:
    """`train fraud`: the candidate serves, or (kept by the gate) the logreg baseline does."""
    from mlkit.toolkit.registry import resolve

    result = cli("train", "fraud", env=env)
    assert result.exit_code in (0, 3), result.output
    assert resolve(engine, "fraud@prod") is not None
