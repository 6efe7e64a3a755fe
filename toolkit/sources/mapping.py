"""The `sources:` section: which platform table (or SELECT) stands for each input mlkit reads,
column by column, and `database.state_schema`, where mlkit keeps its own tables and views.

Parsed once when the config loads, so a bad mapping is one `error:` line naming its key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import MlkitError

if TYPE_CHECKING:
    import sqlalchemy as sa

# mlkit's schema (and SQLAlchemy) are imported where a mapping is read: a config without
# `sources:` loads without them (the dashboard paints before SQLAlchemy is imported).

# The inputs mlkit reads, by its own table names; anything unmapped stays mlkit's table.
INPUTS = (
    "orders",
    "wallets",
    "events",
    "tickets",
    "ticket_transfers",
    "security_alerts",
    "bot_detection",
    "security_events",
    "products",
    "product_interactions",
    "product_reviews",
    "order_items",
    "market_data",
)
ALIASES = {
    "transactions": "orders",
    "fraud_labels": "security_alerts",
    "labels": "security_alerts",
    "transfers": "ticket_transfers",
    "bot_labels": "bot_detection",
    "interactions": "product_interactions",
    "reviews": "product_reviews",
    "market_bars": "market_data",
}
# Each input's time: what `sources check` reports a range of, and what orders surrogate ids.
TIME_COLUMN = {
    "orders": "created_at",
    "wallets": "created_at",
    "events": "created_at",
    "tickets": "minted_at",
    "ticket_transfers": "transferred_at",
    "security_alerts": "label_available_at",
    "bot_detection": "label_available_at",
    "security_events": "created_at",
    "products": "created_at",
    "product_interactions": "created_at",
    "product_reviews": "created_at",
    "order_items": "created_at",
    "market_data": "ts",
}


class RowNumber:
    """Default of a surrogate id nobody maps: the row's rank by the input's time."""


class SourceText:
    """Default of a name column: the platform's own text of an id column."""

    def __init__(self, column: str) -> None:
        self.column = column


ROW_NUMBER = RowNumber()
# Values of required columns a mapping may leave out; nullable columns left out are NULL.
DEFAULTS: dict[str, dict[str, Any]] = {
    "orders": {"payment_method": "unknown", "is_resale": False, "status": "COMPLETED"},
    "wallets": {"address": SourceText("wallet_id")},
    "events": {"name": SourceText("event_id"), "event_type": "other", "capacity": 1000},
    "tickets": {"status": "active"},
    "ticket_transfers": {"transfer_id": ROW_NUMBER, "transfer_type": "resale"},
    "security_alerts": {
        "alert_id": ROW_NUMBER,
        "alert_type": "fraud",
        "severity": "high",
        "confirmed_fraud": True,
        "wallet_address": SourceText("wallet_id"),
    },
    "bot_detection": {
        "detection_id": ROW_NUMBER,
        "bot_score": 1.0,
        "is_bot": True,
        "wallet_address": SourceText("wallet_id"),
    },
    "security_events": {"id": ROW_NUMBER, "event_type": "other"},
    "products": {"name": SourceText("product_id"), "category": "other", "gender": "U"},
    "product_interactions": {
        "id": ROW_NUMBER,
        "interaction_type": "view",
        "time_spent_seconds": 0,
    },
    "product_reviews": {"review_id": ROW_NUMBER},
    "order_items": {"item_id": ROW_NUMBER, "quantity": 1},
    "market_data": {"volume": 0.0},
}
# Derived from a mapped `orders` when not mapped themselves: one row per buyer wallet / event.
DERIVED = ("wallets", "events")
# The capacity a derived event gets (the platform told none): popularity is then sales/1000.
DERIVED_CAPACITY = DEFAULTS["events"]["capacity"]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?")
_SCHEMA = re.compile(r"[a-z_][a-z0-9_]*")
SOURCE_KEYS = ("table", "sql", "columns")
HINT = "see the `sources:` section of the README (keys: mlkit input names)"


def is_identifier(text: str) -> bool:
    """A platform column name, as opposed to an SQL expression."""
    return bool(_IDENT.fullmatch(text))


def is_id_column(column: sa.Column) -> bool:
    """An id mlkit joins on: integer, named id or *_id; text ids are hashed into one."""
    import sqlalchemy as sa

    return isinstance(column.type, sa.Integer) and (
        column.name == "id" or column.name.endswith("_id")
    )


def required_columns(name: str) -> list[str]:
    from .. import schema

    return [c.name for c in schema.metadata.tables[name].columns if not c.nullable]


@dataclass(frozen=True)
class InputSource:
    """One mapped input: a platform `table` with `columns` (mlkit column: platform column
    or SQL expression over it), or a `sql` SELECT returning mlkit's column names."""

    input: str
    table: str | None
    sql: str | None
    columns: dict[str, str]

    @property
    def key(self) -> str:
        return f"sources.{self.input}"

    @property
    def described(self) -> str:
        return f"table {self.table}" if self.table else "sql"


@dataclass(frozen=True)
class Sources:
    """Every mapped input, where mlkit's own tables and views live (`state_schema`), and
    where the platform's tables are (`platform`: PostgreSQL schema or MySQL database)."""

    inputs: dict[str, InputSource]
    state_schema: str | None
    platform: str | None
    dialect: str

    @property
    def derived(self) -> list[str]:
        if "orders" not in self.inputs:
            return []
        return [name for name in DERIVED if name not in self.inputs]

    @property
    def views(self) -> list[str]:
        """Every view mlkit keeps, mapped inputs first (derived views read `orders`)."""
        return [*self.inputs, *self.derived]

    @property
    def active(self) -> bool:
        return bool(self.inputs) or self.state_schema is not None


def parse_sources(raw: Any) -> dict[str, dict]:
    """The `sources:` section checked and normalised (alias keys resolved): each value
    `{"table"|"sql": ..., "columns": {...}}`. Raises MlkitError naming the bad key."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise MlkitError("'sources' must be a section of inputs", hint=HINT)
    out: dict[str, dict] = {}
    for key, value in raw.items():
        name = ALIASES.get(str(key), str(key))
        where = f"sources.{key}"
        if name not in INPUTS:
            raise MlkitError(
                f"{where}: unknown input",
                hint=f"map one of {', '.join(INPUTS)} (aliases: {', '.join(ALIASES)})",
            )
        if name in out:
            raise MlkitError(f"{where}: {name} is mapped twice", hint="keep one of the two keys")
        out[name] = _parse_input(name, value, where)
    return out


def _parse_input(name: str, value: Any, where: str) -> dict:
    if not isinstance(value, Mapping):
        raise MlkitError(f"{where}: expected `table:` or `sql:` with `columns:`", hint=HINT)
    unknown = sorted(set(value) - set(SOURCE_KEYS))
    if unknown:
        raise MlkitError(f"{where}.{unknown[0]}: unknown key", hint=f"use {', '.join(SOURCE_KEYS)}")
    table, sql = value.get("table"), value.get("sql")
    if (table is None) == (sql is None):
        raise MlkitError(
            f"{where}: give exactly one of `table:` and `sql:`",
            hint="table: the platform's table; sql: a SELECT returning mlkit's column names",
        )
    if table is not None and not (isinstance(table, str) and _TABLE.fullmatch(table)):
        raise MlkitError(
            f"{where}.table: {table!r} is not a table name", hint="write table or schema.table"
        )
    if sql is not None and not (
        isinstance(sql, str) and re.match(r"\s*(select|with)\b", sql, re.IGNORECASE)
    ):
        raise MlkitError(
            f"{where}.sql: expected a SELECT", hint="write one SELECT (or WITH ... SELECT)"
        )
    columns = value.get("columns") or {}
    if not isinstance(columns, Mapping):
        raise MlkitError(f"{where}.columns: expected mlkit column: platform column", hint=HINT)
    from .. import schema

    table_columns = schema.metadata.tables[name].columns
    for column, expr in columns.items():
        if column not in table_columns:
            raise MlkitError(
                f"{where}.columns.{column}: {name} has no column {column!r}",
                hint=f"mlkit's {name} columns: {', '.join(table_columns.keys())}",
            )
        if not isinstance(expr, str) or not expr.strip():
            raise MlkitError(
                f"{where}.columns.{column}: expected a platform column or SQL expression",
                hint="quote expressions that YAML would read otherwise",
            )
    if table is not None:
        missing = [
            c for c in required_columns(name) if c not in columns and c not in DEFAULTS[name]
        ]
        if missing:
            raise MlkitError(
                f"{where}.columns: no mapping for required column(s) {', '.join(missing)}",
                hint=f"add e.g. `{missing[0]}: <platform column>` under {where}.columns",
            )
    out: dict[str, Any] = {"table": table} if table is not None else {"sql": sql.strip()}
    out["columns"] = {str(k): v.strip() for k, v in columns.items()}
    return out


def check_state_schema(value: str, backend: str) -> None:
    if not value:
        return
    if backend == "sqlite":
        raise MlkitError(
            "database.state_schema: SQLite keeps one schema per file",
            hint="remove database.state_schema (views go in the same file) or use PostgreSQL",
        )
    if not _SCHEMA.fullmatch(value):
        raise MlkitError(
            f"database.state_schema: {value!r} is not a plain lowercase name",
            hint="use letters, digits and _ , e.g. state_schema: mlkit",
        )


def sources_from_config(config) -> Sources:
    """The config's mapped inputs and state schema, on the config's database."""
    from ..db import dialect_name, parse_url

    url = parse_url(config.database_url)
    dialect = dialect_name(url)
    state = config.data["database"].get("state_schema") or None
    raw = config.data.get("sources") or {}
    inputs = {
        name: InputSource(name, spec.get("table"), spec.get("sql"), dict(spec["columns"]))
        for name, spec in parse_sources(raw).items()
    }
    platform = {"postgresql": "public", "mysql": url.database}.get(dialect)
    return Sources(inputs, state, platform, dialect)
