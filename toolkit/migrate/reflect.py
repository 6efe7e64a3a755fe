"""What the source holds: tables reflected with their keys, indexes and foreign keys, each
column reduced to a portable kind and measured (longest text, integer range, how SQLite
stores dates), which is what the target's types are chosen from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

# Portable kinds every dialect can hold; a column's target type is chosen per kind.
KINDS = ("int", "float", "decimal", "text", "blob", "bool", "date", "datetime", "time", "json")
# Kinds whose SQLite values are numbers, as text no longer than a double's repr
# ('-1.7976931348623157e+308') or a 64-bit integer.
NUMBER_KINDS = ("int", "float", "decimal", "bool")
NUMBER_TEXT_BYTES = 24
# Where epoch numbers switch from seconds to milliseconds: 1e11 s is the year 5138,
# 1e11 ms is 1973.
EPOCH_MS_FROM = 100_000_000_000


@dataclass
class ColumnSpec:
    name: str
    kind: str
    declared: str  # the source's type as written, for the plan
    nullable: bool = True
    length: int | None = None  # declared VARCHAR/CHAR length
    precision: int | None = None
    scale: int | None = None
    autoincrement: bool = False
    integer_width: str = "big"  # small | int | big, for sources that enforce their types
    timezone: bool = False
    # Measured on the stored values:
    max_chars: int = 0
    max_bytes: int = 0
    min_int: int | None = None
    max_int: int | None = None
    nulls: int = 0
    nonconforming: int = 0  # values whose storage class does not fit the kind (SQLite)
    epoch_unit: str | None = None  # "s" or "ms" when dates are stored as numbers
    stored_as: dict[str, int] = field(default_factory=dict)  # SQLite classes, undeclared kinds


@dataclass
class IndexSpec:
    name: str
    columns: list[str]
    unique: bool


@dataclass
class ForeignKeySpec:
    name: str | None
    columns: list[str]
    ref_table: str
    ref_columns: list[str]
    ondelete: str | None = None
    onupdate: str | None = None


@dataclass
class TableSpec:
    name: str
    columns: list[ColumnSpec]
    primary_key: list[str]
    indexes: list[IndexSpec]
    foreign_keys: list[ForeignKeySpec]
    rows: int = 0
    rowid: str | None = None  # SQLite rowid alias used as the key of a table without one
    sqlite_sequence: int | None = None  # AUTOINCREMENT's high-water mark, may exceed MAX(id)

    def column(self, name: str) -> ColumnSpec:
        return next(c for c in self.columns if c.name == name)

    @property
    def key(self) -> list[str]:
        """The columns batches are paged by: the primary key, else the SQLite rowid."""
        if self.primary_key:
            return list(self.primary_key)
        return [self.rowid] if self.rowid else []


def quote(engine_or_dialect, name: str) -> str:
    dialect = getattr(engine_or_dialect, "dialect", engine_or_dialect)
    return dialect.identifier_preparer.quote_identifier(name)


def list_tables(engine: Engine) -> tuple[list[str], list[str]]:
    """(tables, views) of the source, sorted; SQLite's internal tables left out."""
    inspector = sa.inspect(engine)
    tables = sorted(t for t in inspector.get_table_names() if not t.startswith("sqlite_"))
    views = sorted(inspector.get_view_names())
    return tables, views


def reflect_tables(engine: Engine, names: list[str]) -> list[TableSpec]:
    """Reflect and measure the named tables, parents before children."""
    meta = sa.MetaData()
    meta.reflect(bind=engine, only=names, resolve_fks=False)
    inspector = sa.inspect(engine)
    dialect = engine.dialect.name
    specs: dict[str, TableSpec] = {}
    for name in names:
        table = meta.tables[name]
        autoinc = {}
        if dialect != "sqlite":
            autoinc = {c["name"]: bool(c.get("autoincrement")) for c in inspector.get_columns(name)}
        pk = [c.name for c in table.primary_key.columns]
        columns = [_column_spec(c, dialect, pk, autoinc.get(c.name, False)) for c in table.columns]
        indexes = [
            IndexSpec(ix.name or f"ix_{name}_{i}", [c.name for c in ix.columns], bool(ix.unique))
            for i, ix in enumerate(sorted(table.indexes, key=lambda ix: ix.name or ""))
            if ix.columns and len(ix.columns) == len(ix.expressions)
        ]
        uniques = [
            (uc.name, [c.name for c in uc.columns])
            for uc in table.constraints
            if isinstance(uc, sa.UniqueConstraint)
        ]
        if dialect == "sqlite":
            # A column's own UNIQUE shows only as an automatic index.
            uniques += [
                (None, list(ix["column_names"]))
                for ix in inspector.get_indexes(name, include_auto_indexes=True)
                if ix["name"].startswith("sqlite_autoindex_") and ix["unique"]
            ]
        for uc_name, cols in uniques:
            if cols == pk or any(ix.unique and ix.columns == cols for ix in indexes):
                continue
            indexes.append(IndexSpec(uc_name or f"uq_{name}_{'_'.join(cols)}", cols, True))
        fks = [
            ForeignKeySpec(
                fk.get("name"),
                list(fk["constrained_columns"]),
                fk["referred_table"],
                list(fk["referred_columns"]),
                (fk.get("options") or {}).get("ondelete"),
                (fk.get("options") or {}).get("onupdate"),
            )
            for fk in inspector.get_foreign_keys(name)
            if fk.get("referred_table")
        ]
        specs[name] = TableSpec(name, columns, pk, indexes, fks)
    with engine.connect() as conn:
        for spec in specs.values():
            _measure(conn, spec, engine)
    return _parents_first(list(specs.values()))


def _column_spec(column: sa.Column, dialect: str, pk: list[str], autoinc: bool) -> ColumnSpec:
    t = column.type
    declared = _declared(t)
    spec = ColumnSpec(column.name, _kind(t), declared, nullable=bool(column.nullable))
    if isinstance(t, sa.String) and t.length:
        spec.length = t.length
    if spec.kind == "decimal":
        spec.precision, spec.scale = t.precision, t.scale
    if isinstance(t, sa.DateTime | sa.Time):
        spec.timezone = bool(getattr(t, "timezone", False))
    if spec.kind == "int":
        upper = declared.upper()
        if dialect == "sqlite":
            spec.integer_width = "big"  # SQLite's INTEGER is 64-bit whatever it is called
        elif isinstance(t, sa.BigInteger) or "UNSIGNED" in upper:
            spec.integer_width = "big"
        elif isinstance(t, sa.SmallInteger) or "TINYINT" in upper:
            spec.integer_width = "small"
        else:
            spec.integer_width = "int"
    if pk == [column.name] and spec.kind == "int":
        # SQLite: only INTEGER PRIMARY KEY is the rowid and hands out ids by itself.
        spec.autoincrement = declared.upper() == "INTEGER" if dialect == "sqlite" else autoinc
    return spec


def _declared(t: sa.types.TypeEngine) -> str:
    try:
        return str(t)
    except Exception:  # a type that cannot render itself without a dialect
        return type(t).__name__


# SQLAlchemy's types and the kind each is copied as, in the order they are tried (a Float
# is also a Numeric).
_KIND_OF_TYPE = (
    (sa.Boolean, "bool"),
    (sa.Integer, "int"),
    (sa.Float, "float"),
    (sa.Numeric, "decimal"),
    (sa.DateTime, "datetime"),
    (sa.Date, "date"),
    (sa.Time, "time"),
    (sa.JSON, "json"),
    (sa.LargeBinary, "blob"),
    (sa.types.NullType, "untyped?"),
)


def _kind(t: sa.types.TypeEngine) -> str:
    for type_, kind in _KIND_OF_TYPE:
        if isinstance(t, type_):
            # NUMERIC without precision holds whatever SQLite stored (ints or doubles): see
            # _measure.
            return "numeric?" if kind == "decimal" and t.precision is None else kind
    return "text"  # strings, and types without a portable counterpart (UUID, ENUM...) as text


# The storage classes a kind takes as they are (anything else converts or is refused).
_ALLOWED = {
    "int": {"integer"},
    "float": {"integer", "real"},
    "decimal": {"integer", "real"},
    "text": {"text"},
    "json": {"text"},
    "blob": {"blob"},
    "bool": {"integer"},
    "date": {"text", "integer", "real"},
    "datetime": {"text", "integer", "real"},
    "time": {"text"},
}
_CLASSES = ("integer", "real", "text", "blob")


# A SQLite table with more rows than this is measured in rowid ranges, one thread and
# connection each (SQLite runs a query without Python's lock), on as many cores as there are.
SPLIT_MEASURE_ROWS = 50_000
# How each measure of a range combines with the others'.
_COMBINE = {
    "max_len": max,
    "max_bytes": max,
    "max_int": max,
    "max_abs": max,
    "min_int": min,
}


def _measure(conn: sa.Connection, spec: TableSpec, engine: Engine | None = None) -> None:
    """One scan per table: row count, and per column what the types are chosen from. On
    SQLite a column's kind decides what is counted, since the scan's time grows with the
    number of aggregates."""
    sqlite = conn.dialect.name == "sqlite"
    q = lambda name: quote(conn, name)  # noqa: E731
    exprs: list[str] = ["COUNT(*)"]
    slots: list[tuple[ColumnSpec, str]] = []

    def add(column: ColumnSpec, what: str, sql: str) -> None:
        exprs.append(sql)
        slots.append((column, what))

    for c in spec.columns:
        col = q(c.name)
        if not sqlite:
            add(c, "nulls", f"SUM(CASE WHEN {col} IS NULL THEN 1 ELSE 0 END)")
            if c.kind == "text":
                add(c, "max_chars", f"MAX(CHAR_LENGTH({col}))")
                add(c, "max_bytes", f"MAX(OCTET_LENGTH({col}))")
            elif c.kind == "blob":
                add(c, "max_bytes", f"MAX(OCTET_LENGTH({col}))")
            continue
        add(c, "present", f"COUNT({col})")
        if c.kind not in NUMBER_KINDS:
            # Numbers' text is short (NUMBER_TEXT_BYTES at most) and turning each one into
            # text to measure it was a third of the scan; a text among them is refused.
            add(c, "max_bytes", f"MAX(length(CAST({col} AS BLOB)))")
        allowed = _ALLOWED.get(c.kind)
        if allowed is None:  # undecided until the stored values are known
            for storage in _CLASSES:
                add(c, storage, f"SUM(CASE WHEN typeof({col}) = '{storage}' THEN 1 END)")
        else:
            others = ", ".join(f"'{k}'" for k in _CLASSES if k not in allowed)
            # CASE, not a bare boolean SUM: SQLite evaluates it faster.
            add(c, "nonconforming", f"SUM(CASE WHEN typeof({col}) IN ({others}) THEN 1 END)")
        if c.kind in ("text", "json", "untyped?"):
            # The longest value in characters: exact when every value is text, which the
            # counts tell (else _longest_text measures the text values alone); a blob
            # column holds text only when it holds values of another type.
            add(c, "max_len", f"MAX(length({col}))")
        if c.kind == "bool":
            add(c, "min_int", f"MIN(CASE WHEN typeof({col}) = 'integer' THEN {col} END)")
            add(c, "max_int", f"MAX(CASE WHEN typeof({col}) = 'integer' THEN {col} END)")
        if c.kind in ("date", "datetime"):
            add(
                c,
                "max_abs",
                f"MAX(CASE WHEN typeof({col}) IN ('integer', 'real') THEN abs({col}) END)",
            )
    table = q(spec.name)
    sql = f"SELECT {', '.join(exprs)} FROM {table}"
    rowid = _rowid_alias(conn, spec) if sqlite else None
    if rowid is not None and engine is not None:
        row = _scan_in_ranges(conn, engine, sql, table, rowid, [w for _c, w in slots])
    else:
        row = tuple(conn.exec_driver_sql(sql).one())
    spec.rows = int(row[0] or 0)
    measured: dict[str, dict[str, Any]] = {}
    for (column, what), value in zip(slots, row[1:], strict=True):
        measured.setdefault(column.name, {})[what] = value
    for c in spec.columns:
        m = measured.get(c.name, {})
        c.max_chars = int(m.get("max_chars") or 0)
        c.max_bytes = int(m.get("max_bytes") or 0)
        if sqlite and "max_bytes" not in m:
            c.max_bytes = NUMBER_TEXT_BYTES
        if sqlite:
            longest = _longest_text(c, m)
            c.max_chars = longest if longest is not None else _text_chars(conn, spec, c)
            c.nulls = spec.rows - int(m.get("present") or 0)
            c.stored_as = {s: int(m[s] or 0) for s in _CLASSES if s in m}
            c.min_int, c.max_int = m.get("min_int"), m.get("max_int")
            _settle_sqlite_kind(c, m)
        else:
            c.nulls = int(m.get("nulls") or 0)
    if sqlite:
        spec.rowid = rowid
        spec.sqlite_sequence = _sqlite_sequence(conn, spec.name)
        if spec.primary_key and any(spec.column(k).nulls for k in spec.primary_key):
            # SQLite lets NULL into a non-integer primary key; page such a table by rowid.
            spec.primary_key = []


def _scan_in_ranges(
    conn: sa.Connection, engine: Engine, sql: str, table: str, rowid: str, measures: list[str]
) -> tuple:
    """The measuring query over the whole table, run in rowid ranges in parallel when the
    table is big enough and there is more than one core, its parts combined."""
    import os

    low, high = conn.exec_driver_sql(f"SELECT MIN({rowid}), MAX({rowid}) FROM {table}").one()
    parts = min(os.cpu_count() or 1, 4)
    if low is None or parts < 2 or high - low < SPLIT_MEASURE_ROWS:
        return tuple(conn.exec_driver_sql(sql).one())
    from concurrent.futures import ThreadPoolExecutor

    step = (high - low) // parts + 1
    ranges = [(low + i * step, low + (i + 1) * step - 1) for i in range(parts)]

    def part(bounds: tuple[int, int]) -> tuple:
        with engine.connect() as own:
            where = f" WHERE {rowid} BETWEEN {bounds[0]} AND {bounds[1]}"
            return tuple(own.exec_driver_sql(sql + where).one())

    with ThreadPoolExecutor(parts, thread_name_prefix="mlkit-measure") as threads:
        rows = list(threads.map(part, ranges))
    combined = []
    for at, values in enumerate(zip(*rows, strict=True)):
        present = [v for v in values if v is not None]
        if not present:
            combined.append(None)
            continue
        # COUNT(*) first, then one value per measure: counts add up, extremes compare.
        combine = _COMBINE.get(measures[at - 1]) if at else None
        combined.append(combine(present) if combine else sum(present))
    return tuple(combined)


def _longest_text(c: ColumnSpec, m: dict[str, Any]) -> int | None:
    """The longest text value's characters from the measuring scan when it tells them
    exactly (every value stored as text, or none), else None."""
    if c.kind in ("text", "json"):
        return None if m.get("nonconforming") else int(m.get("max_len") or 0)
    if c.kind == "blob":
        return None if m.get("nonconforming") else 0
    if c.kind == "untyped?":
        text = int(m.get("text") or 0)
        if not text:
            return 0
        return int(m.get("max_len") or 0) if text == int(m.get("present") or 0) else None
    return 0


def _text_chars(conn: sa.Connection, spec: TableSpec, c: ColumnSpec) -> int:
    """The longest text value's characters, over the text values alone."""
    col, table = quote(conn, c.name), quote(conn, spec.name)
    sql = f"SELECT MAX(length({col})) FROM {table} WHERE typeof({col}) = 'text'"
    return int(conn.exec_driver_sql(sql).scalar() or 0)


def _settle_sqlite_kind(c: ColumnSpec, m: dict[str, Any]) -> None:
    """SQLite stores any value in any column: settle undecided kinds by what is stored, and
    count the values that will not fit the kind (they follow --on-error)."""
    s = c.stored_as
    if c.kind == "untyped?":
        # No declared type: the kind the values themselves have, text when they are mixed.
        present = {k for k, n in s.items() if n}
        if present <= {"integer"}:
            c.kind = "int"
        elif present <= {"integer", "real"}:
            c.kind = "float"
        elif present == {"blob"}:
            c.kind = "blob"
        else:
            c.kind = "text"
    if c.kind == "numeric?":
        # NUMERIC without precision: SQLite kept integers or 8-byte doubles, hold them exactly.
        c.kind = "float" if s["real"] else "int"
    if s:  # counted class by class
        c.nonconforming = sum(n for k, n in s.items() if k not in _ALLOWED[c.kind])
    else:
        c.nonconforming = int(m.get("nonconforming") or 0)
    if c.kind == "bool" and c.min_int is not None and (c.min_int < 0 or c.max_int > 1):
        c.nonconforming += 1  # some integer other than 0/1: the converter finds which
    if c.kind in ("date", "datetime") and m.get("max_abs") is not None:  # numbers stored
        c.epoch_unit = "ms" if float(m.get("max_abs") or 0) >= EPOCH_MS_FROM else "s"


def _rowid_alias(conn: sa.Connection, spec: TableSpec) -> str | None:
    names = {c.name.lower() for c in spec.columns}
    alias = next((a for a in ("rowid", "_rowid_", "oid") if a not in names), None)
    if alias is None:
        return None
    try:
        conn.exec_driver_sql(f"SELECT {alias} FROM {quote(conn, spec.name)} LIMIT 0")
    except sa.exc.DBAPIError:  # a WITHOUT ROWID table (it always has a primary key)
        return None
    return alias


def _sqlite_sequence(conn: sa.Connection, table: str) -> int | None:
    try:
        return conn.exec_driver_sql(
            "SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)
        ).scalar()
    except sa.exc.DBAPIError:  # no table uses AUTOINCREMENT
        return None


def _parents_first(specs: list[TableSpec]) -> list[TableSpec]:
    """Order tables so a referenced table comes before those referencing it (cycles keep
    their order: foreign keys are added after all data anyway)."""
    by_name = {s.name: s for s in specs}
    done: list[TableSpec] = []
    seen: set[str] = set()

    def visit(spec: TableSpec, path: set[str]) -> None:
        if spec.name in seen or spec.name in path:
            return
        path.add(spec.name)
        for fk in spec.foreign_keys:
            if fk.ref_table in by_name and fk.ref_table != spec.name:
                visit(by_name[fk.ref_table], path)
        seen.add(spec.name)
        done.append(spec)

    for spec in specs:
        visit(spec, set())
    return done
