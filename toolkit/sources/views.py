"""The views that stand for mapped inputs: per dialect, a SELECT over the platform's table
(or the user's SELECT) with mlkit's column names and types, text ids hashed to integers,
defaults for what the platform has not got, and `wallets`/`events` derived from `orders`.

The same SELECT bodies feed `sources check`, so what it measures is what mlkit will read.
"""

from __future__ import annotations

import hashlib
from contextlib import nullcontext
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, NoSuchTableError

from .. import schema
from ..db import first_line
from ..errors import MlkitError
from .mapping import (
    DEFAULTS,
    DERIVED_CAPACITY,
    TIME_COLUMN,
    InputSource,
    RowNumber,
    Sources,
    SourceText,
    is_id_column,
    is_identifier,
)

ID_MASK = (1 << 63) - 1
SQLITE_ID_FUNCTION = "mlkit_id"
# Driver type codes of integer columns: PostgreSQL OIDs (int2, int4, int8), MySQL field types.
_INTEGER_CODES = {"postgresql": {20, 21, 23}, "mysql": {1, 2, 3, 8, 9}}
_TIMESTAMPTZ_CODES = {"postgresql": {1184}}


def source_id(text: str) -> int:
    """The 63-bit id a text id becomes in every view (md5's first 16 hex digits)."""
    return int(hashlib.md5(str(text).encode()).hexdigest()[:16], 16) & ID_MASK


def sqlite_source_id(value):
    """SQLite's `mlkit_id(x)`: integers stay, anything else is hashed as its text."""
    if value is None or isinstance(value, int):
        return value
    return source_id(value)


def register_sqlite_functions(dbapi_connection) -> None:
    dbapi_connection.create_function(SQLITE_ID_FUNCTION, 1, sqlite_source_id, deterministic=True)


@dataclass
class Shape:
    """What a mapped input's source looks like: reachable or not (and why), its columns
    with their types, and the kind of each mapped expression (integer, timestamptz, other)."""

    reachable: bool = True
    error: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> set[str]:
        return {c.lower() for c in self.columns}


def quote(conn_or_dialect, name: str) -> str:
    dialect = getattr(conn_or_dialect, "dialect", conn_or_dialect)
    return dialect.identifier_preparer.quote(name)


def platform_table(dialect, sources: Sources, src: InputSource) -> tuple[str | None, str]:
    """The schema (None: the connection's default) and name of a mapped table."""
    assert src.table is not None
    if "." in src.table:
        owner, name = src.table.split(".", 1)
        return owner, name
    return (sources.platform if sources.state_schema else None), src.table


def _qualified(dialect, owner: str | None, name: str) -> str:
    return f"{quote(dialect, owner)}.{quote(dialect, name)}" if owner else quote(dialect, name)


def view_name(dialect, sources: Sources, name: str) -> str:
    return _qualified(dialect, sources.state_schema, name)


def _kind_of_type(type_: sa.types.TypeEngine) -> str:
    if isinstance(type_, sa.Integer):
        return "integer"
    if isinstance(type_, sa.DateTime) and getattr(type_, "timezone", False):
        return "timestamptz"
    return "other"


def _kind_of_code(dialect_name: str, code) -> str:
    if code in _INTEGER_CODES.get(dialect_name, ()):
        return "integer"
    if code in _TIMESTAMPTZ_CODES.get(dialect_name, ()):
        return "timestamptz"
    return "other"


def _probe(conn: Connection, sql: str) -> list[tuple[str, object]]:
    """(name, driver type code) of a SELECT's columns, reading no row."""
    result = conn.execute(sa.text(f"SELECT * FROM ({sql}) probe WHERE 1 = 0"))
    try:
        return [(d[0], d[1]) for d in result.cursor.description]
    finally:
        result.close()


def _type_names(conn: Connection, codes: set) -> dict:
    """Driver type codes as type names: PostgreSQL's catalogue (one query), MySQL's field
    type constants; SQLite has none."""
    if conn.dialect.name == "postgresql" and codes:
        rows = conn.execute(
            sa.text(
                "SELECT oid, format_type(oid, NULL) FROM pg_type WHERE oid IN :oids"
            ).bindparams(sa.bindparam("oids", expanding=True)),
            {"oids": sorted(codes)},
        )
        return {int(oid): name.upper() for oid, name in rows}
    if conn.dialect.name == "mysql":
        from pymysql.constants import FIELD_TYPE

        known = {v: k for k, v in vars(FIELD_TYPE).items() if isinstance(v, int)}
        return {code: known[code] for code in codes if code in known}
    return {}


def _type_text(type_: sa.types.TypeEngine, dialect) -> str:
    try:
        return str(type_.compile(dialect))
    except sa.exc.CompileError:  # a type SQLAlchemy cannot spell (a domain, an extension's)
        return type(type_).__name__


def guarded(conn: Connection):
    """A savepoint on PostgreSQL, where a failed statement would abort the transaction;
    MySQL and SQLite go on after one (and pysqlite's savepoints are unreliable)."""
    return conn.begin_nested() if conn.dialect.name == "postgresql" else nullcontext()


def reflect(conn: Connection, sources: Sources, src: InputSource) -> Shape:
    """The input's source shape: one reflection of its table (or one probe of its SELECT),
    and one probe of the expressions it maps, inside a savepoint so a failure leaves the
    caller's transaction usable."""
    shape = Shape()
    dialect = conn.dialect
    try:
        with guarded(conn):
            if src.table is not None:
                owner, name = platform_table(dialect, sources, src)
                found = sa.inspect(conn).get_columns(name, schema=owner)
                for column in found:
                    shape.columns[column["name"]] = _type_text(column["type"], dialect)
                types = {c["name"].lower(): c["type"] for c in found}
                for target, expr in src.columns.items():
                    if is_identifier(expr) and expr.lower() in types:
                        shape.kinds[target] = _kind_of_type(types[expr.lower()])
                exprs = {t: e for t, e in src.columns.items() if not is_identifier(e)}
                origin = _qualified(dialect, owner, name)
            else:
                probed = _probe(conn, src.sql)
                names = _type_names(conn, {code for _, code in probed})
                for column, code in probed:
                    shape.columns[column] = names.get(code, "unknown")
                    shape.kinds[column] = _kind_of_code(dialect.name, code)
                exprs = dict(src.columns)
                origin = f"({src.sql})"
            if exprs:
                listed = ", ".join(f"{e} AS {quote(dialect, t)}" for t, e in exprs.items())
                for target, code in _probe(conn, f"SELECT {listed} FROM {origin} src"):
                    shape.kinds[target] = _kind_of_code(dialect.name, code)
    except NoSuchTableError:
        return Shape(reachable=False, error=f"table {src.table} not found")
    except DBAPIError as exc:
        return Shape(reachable=False, error=first_line(exc))
    return shape


# ---------------------------------------------------------------- SQL per dialect


def cast_type(type_: sa.types.TypeEngine, dialect: str) -> str | None:
    """The CAST target for an mlkit column type; None: leave the value as it is."""
    if isinstance(type_, sa.Boolean):
        return {"postgresql": "BOOLEAN", "mysql": "SIGNED"}.get(dialect, "INTEGER")
    if isinstance(type_, sa.Integer):
        if dialect == "mysql":
            return "SIGNED"
        if dialect == "sqlite":
            return "INTEGER"
        if isinstance(type_, sa.BigInteger):
            return "BIGINT"
        return "SMALLINT" if isinstance(type_, sa.SmallInteger) else "INTEGER"
    if isinstance(type_, sa.Float):
        return {"postgresql": "DOUBLE PRECISION", "mysql": "DOUBLE"}.get(dialect, "REAL")
    if isinstance(type_, sa.Numeric):
        if dialect == "sqlite":
            return "REAL"
        kind = "NUMERIC" if dialect == "postgresql" else "DECIMAL"
        return f"{kind}({type_.precision}, {type_.scale})"
    if isinstance(type_, sa.DateTime):
        return {"postgresql": "TIMESTAMP", "mysql": "DATETIME(6)"}.get(dialect)
    if isinstance(type_, sa.JSON):
        return {"postgresql": "JSONB"}.get(dialect)
    if isinstance(type_, sa.String) and type_.length:
        return {"postgresql": f"VARCHAR({type_.length})", "mysql": f"CHAR({type_.length})"}.get(
            dialect, "TEXT"
        )
    return {"mysql": "CHAR"}.get(dialect, "TEXT")


def _cast(expr: str, type_: sa.types.TypeEngine, dialect: str, kind: str = "other") -> str:
    if kind == "timestamptz" and dialect == "postgresql":
        expr = f"({expr}) AT TIME ZONE 'UTC'"
    target = cast_type(type_, dialect)
    return f"CAST({expr} AS {target})" if target else expr


def hashed_id(expr: str, dialect: str, kind: str) -> str:
    """An id column's value: integers as they are, anything else hashed to 63 bits, the
    same text to the same id in every view."""
    if dialect == "sqlite":
        return f"{SQLITE_ID_FUNCTION}({expr})"
    if kind == "integer":
        return _cast(expr, sa.BigInteger(), dialect)
    if dialect == "postgresql":
        return f"(('x' || substr(md5(CAST({expr} AS TEXT)), 1, 16))::bit(64)::bigint & {ID_MASK})"
    return (
        f"CAST(CAST(CONV(SUBSTRING(MD5({expr}), 1, 16), 16, 10) AS UNSIGNED) & {ID_MASK} AS SIGNED)"
    )


def _literal(value, dialect: str) -> str:
    if isinstance(value, bool):
        return ("TRUE" if value else "FALSE") if dialect == "postgresql" else str(int(value))
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def raw_expressions(dialect, src: InputSource, shape: Shape) -> dict[str, str]:
    """mlkit column -> the SQL giving the platform's value, before any cast."""
    out = {}
    for target, expr in src.columns.items():
        out[target] = f"src.{quote(dialect, expr)}" if is_identifier(expr) else expr
    if src.sql is not None:
        for column in shape.columns:
            if column in schema.metadata.tables[src.input].columns and column not in out:
                out[column] = f"src.{quote(dialect, column)}"
    return out


def view_body(dialect, sources: Sources, src: InputSource, shape: Shape) -> str:
    """The SELECT of a mapped input's view: every mlkit column, typed, plus the platform's
    own text of each mapped id as `source_<column>`."""
    name = dialect.name
    raw = raw_expressions(dialect, src, shape)
    table = schema.metadata.tables[src.input]
    selected = []
    for column in table.columns:
        expr, kind = raw.get(column.name), shape.kinds.get(column.name, "other")
        if expr is not None and is_id_column(column):
            value = hashed_id(expr, name, kind)
        elif expr is not None:
            value = _cast(expr, column.type, name, kind)
        else:
            value = _default(src, column, raw, name)
        selected.append(f"{value} AS {quote(dialect, column.name)}")
    for column in table.columns:
        if is_id_column(column) and column.name in raw:
            selected.append(f"{raw[column.name]} AS {quote(dialect, 'source_' + column.name)}")
    if src.table is not None:
        owner, tname = platform_table(dialect, sources, src)
        origin = _qualified(dialect, owner, tname)
    else:
        origin = f"({src.sql})"
    return "SELECT\n    " + ",\n    ".join(selected) + f"\nFROM {origin} src"


def _default(src: InputSource, column: sa.Column, raw: dict[str, str], dialect: str) -> str:
    default = DEFAULTS[src.input].get(column.name)
    if isinstance(default, RowNumber):
        order = raw.get(TIME_COLUMN[src.input], "1")
        return _cast(f"ROW_NUMBER() OVER (ORDER BY {order})", column.type, dialect)
    if isinstance(default, SourceText):
        if default.column in raw:
            return _cast(raw[default.column], column.type, dialect)
        default = None
    if default is not None:
        return _cast(_literal(default, dialect), column.type, dialect)
    if not column.nullable:
        raise MlkitError(
            f"{src.key}: the source gives no {column.name}, which {src.input} needs",
            hint=f"return a column named {column.name} from {src.key}.sql, or map it under "
            f"{src.key}.columns",
        )
    return _cast("NULL", column.type, dialect)


def derived_body(dialect, sources: Sources, name: str, orders: str | None = None) -> str:
    """`wallets` or `events` from the mapped orders (the orders view, or the FROM item
    `orders`): one row per buyer wallet (created at its first order) or per event (sale
    start and base price of its first order)."""
    d = dialect.name
    orders = orders or view_name(dialect, sources, "orders")
    q = lambda n: quote(dialect, n)  # noqa: E731
    if name == "wallets":
        # As text: MIN has no UUID version, and one address is one text anyway.
        buyer_text = _cast(f"o.{q('source_buyer_wallet_id')}", sa.Text(), d)
        first_text = f"MIN({buyer_text})"
        columns = [
            f"o.{q('buyer_wallet_id')} AS {q('wallet_id')}",
            f"{_cast(first_text, sa.String(42), d)} AS {q('address')}",
            f"{_cast('NULL', sa.String(2), d)} AS {q('country')}",
            f"MIN(o.{q('created_at')}) AS {q('created_at')}",
            f"{first_text} AS {q('source_wallet_id')}",
        ]
        return (
            "SELECT\n    " + ",\n    ".join(columns) + f"\nFROM {orders} o\n"
            f"WHERE o.{q('buyer_wallet_id')} IS NOT NULL\nGROUP BY o.{q('buyer_wallet_id')}"
        )
    first_price = (
        f"FIRST_VALUE(o.{q('price')}) OVER (PARTITION BY o.{q('event_id')} "
        f"ORDER BY o.{q('created_at')}, o.{q('order_id')})"
    )
    source_text = _cast(f"o.{q('source_event_id')}", sa.Text(), d)
    first_text, price = f"MIN(x.{q('source_text')})", f"MIN(x.{q('first_price')})"
    columns = [
        f"x.{q('event_id')} AS {q('event_id')}",
        f"{_cast(first_text, sa.String(200), d)} AS {q('name')}",
        f"{_cast(_literal('other', d), sa.String(32), d)} AS {q('event_type')}",
        f"{_cast('NULL', sa.String(120), d)} AS {q('venue')}",
        f"{_cast('NULL', sa.String(80), d)} AS {q('city')}",
        f"{_cast('NULL', sa.Double(), d)} AS {q('venue_lat')}",
        f"{_cast('NULL', sa.Double(), d)} AS {q('venue_lon')}",
        f"{_cast(price, schema.MONEY, d)} AS {q('base_price')}",
        f"{_cast(str(DERIVED_CAPACITY), sa.Integer(), d)} AS {q('capacity')}",
        f"MIN(x.{q('created_at')}) AS {q('sale_start')}",
        f"MAX(x.{q('created_at')}) AS {q('event_date')}",
        f"MIN(x.{q('created_at')}) AS {q('created_at')}",
        f"{first_text} AS {q('source_event_id')}",
    ]
    inner = (
        f"SELECT o.{q('event_id')}, {source_text} AS {q('source_text')}, o.{q('created_at')}, "
        f"{first_price} AS {q('first_price')}\n    FROM {orders} o "
        f"WHERE o.{q('event_id')} IS NOT NULL"
    )
    return (
        "SELECT\n    " + ",\n    ".join(columns) + f"\nFROM (\n    {inner}\n) x\n"
        f"GROUP BY x.{q('event_id')}"
    )
