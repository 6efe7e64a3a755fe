"""`mlkit sources check`: for each mapped input, whether mlkit can read it and what it will
find there, measured through the same SELECTs the views are made of (so before `db init`
too). Every query is set-based: one reflection and one statistics query per input, one
LEFT JOIN count per pair of ids that must join, one read of the label delays."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from .. import schema
from ..db import first_line
from ..errors import MlkitError
from ..outputs import Outputs, outputs_of
from .apply import platform_first
from .mapping import TIME_COLUMN, InputSource, Sources, is_identifier
from .views import (
    Shape,
    derived_body,
    guarded,
    quote,
    raw_expressions,
    reflect,
    view_body,
    view_name,
)

LABEL_FLAG = {"security_alerts": "confirmed_fraud", "bot_detection": "is_bot"}
# (input, column, parent input, parent column): ids that must find their row.
JOINS = (
    ("orders", "buyer_wallet_id", "wallets", "wallet_id"),
    ("orders", "event_id", "events", "event_id"),
    ("security_alerts", "order_id", "orders", "order_id"),
    ("bot_detection", "order_id", "orders", "order_id"),
    ("tickets", "event_id", "events", "event_id"),
    ("product_interactions", "product_id", "products", "product_id"),
    ("product_reviews", "product_id", "products", "product_id"),
    ("order_items", "product_id", "products", "product_id"),
)
SECONDS_PER_DAY = 86400.0


@dataclass
class Report:
    """The whole `sources check` document, built input by input."""

    database: str
    sources: Sources
    inputs: dict[str, dict] = field(default_factory=dict)
    outputs: dict[str, dict] = field(default_factory=dict)
    problems: list[dict] = field(default_factory=list)

    def problem(self, name: str, text: str, hint: str) -> None:
        self.problems.append({"input": name, "problem": text, "hint": hint})

    def as_dict(self) -> dict:
        return {
            "database": self.database,
            "state_schema": self.sources.state_schema,
            "inputs": self.inputs,
            "derived": {name: "orders" for name in self.sources.derived},
            "outputs": self.outputs,
            "problems": self.problems,
            "ok": not self.problems,
        }


def check_configured(config) -> dict:
    """`mlkit sources check` on the config's database, connected to the platform's own
    schema (MySQL: database), so it works before `db init` made the state schema."""
    from ..config import mask_url
    from ..db import make_engine
    from .mapping import sources_from_config

    sources = sources_from_config(config)
    outputs = outputs_of(config)
    if not sources.inputs and not outputs.tables():
        return Report(mask_url(config.database_url), sources).as_dict()  # nothing to connect for
    engine = make_engine(config.database_url)
    try:
        return check_sources(engine, sources, outputs)
    finally:
        engine.dispose()


def check_sources(engine: Engine, sources: Sources, outputs: Outputs | None = None) -> dict:
    """Every mapped input: reachable, columns and types, rows, time range, NULLs in
    required columns, labels and their delay, and ids that do not join; every output
    table: there, with the columns mlkit will write."""
    from ..db import explain_db_error, masked

    report = Report(masked(engine), sources)
    try:
        with engine.connect() as conn, platform_first(conn, sources):
            bodies = {}
            for name, src in sources.inputs.items():
                body = _check_input(conn, report, src)
                if body is not None:
                    bodies[name] = body
            for name in bodies:
                if name in LABEL_FLAG:
                    report.inputs[name].update(_label_delays(conn, sources, bodies, name))
            _check_joins(conn, report, bodies)
            _check_derived(conn, report, bodies)
            for name, table, columns in outputs.tables() if outputs else []:
                _check_output(conn, report, name, table, columns)
    except DBAPIError as exc:
        raise explain_db_error(exc, engine.url) from None
    return report.as_dict()


def _check_input(conn: Connection, report: Report, src: InputSource) -> str | None:
    """Reflect one input, report its columns and statistics; its view's SELECT when it can
    be built."""
    name = src.input
    shape = reflect(conn, report.sources, src)
    entry: dict = {"source": src.described, "reachable": shape.reachable, "columns": {}}
    report.inputs[name] = entry
    if not shape.reachable:
        where = f"{src.key}.table" if src.table else f"{src.key}.sql"
        report.problem(name, f"cannot read {src.described}: {shape.error}", _reach_hint(where))
        return None
    entry["columns"] = shape.columns
    if not _columns_present(report, src, shape):
        return None
    try:
        body = view_body(conn.dialect, report.sources, src, shape)
    except MlkitError as exc:
        report.problem(name, exc.message.removeprefix(f"{src.key}: "), exc.hint or "")
        return None
    mapped = set(raw_expressions(conn.dialect, src, shape))
    try:
        with guarded(conn):
            entry.update(_statistics(conn, name, body, mapped))
    except DBAPIError as exc:
        report.problem(
            name,
            f"its rows do not read as mlkit's types: {first_line(exc)}",
            f"map columns of the right kind under {src.key}.columns (or cast them in SQL)",
        )
        return None
    _report_statistics(report, src, entry)
    return body


def _reach_hint(where: str) -> str:
    return (
        f"check {where}: the table must exist (schema.table if it is not in the platform's "
        "default schema) and the SELECT must run as written"
    )


def _columns_present(report: Report, src: InputSource, shape: Shape) -> bool:
    ok = True
    if src.table is not None:
        for target, expr in src.columns.items():
            if is_identifier(expr) and expr.lower() not in shape.names:
                ok = False
                report.problem(
                    src.input,
                    f"column {expr!r} (mapped to {target}) not found in {src.table}",
                    f"fix {src.key}.columns.{target}; {src.table} has: " + ", ".join(shape.columns),
                )
    return ok


def _statistics(conn: Connection, name: str, body: str, mapped: set[str]) -> dict:
    """Rows, time range, NULLs of the required mapped columns (and labels) in one query."""
    table = schema.metadata.tables[name]
    time = quote(conn, TIME_COLUMN[name])
    required = [c.name for c in table.columns if not c.nullable and c.name in mapped]
    parts = [
        "COUNT(*)",
        f"MIN(v.{time})",
        f"MAX(v.{time})",
        *[f"SUM(CASE WHEN v.{quote(conn, c)} IS NULL THEN 1 ELSE 0 END)" for c in required],
    ]
    if name in LABEL_FLAG:
        parts.append(f"SUM(CASE WHEN v.{quote(conn, LABEL_FLAG[name])} THEN 1 ELSE 0 END)")
    row = conn.execute(sa.text(f"SELECT {', '.join(parts)} FROM ({body}) v")).one()
    rows = int(row[0])
    nulls = {c: int(row[3 + i] or 0) for i, c in enumerate(required)}
    out = {
        "rows": rows,
        "time_column": TIME_COLUMN[name],
        "time_range": [_iso(row[1]), _iso(row[2])],
        "nulls": nulls,
        "null_rates": {c: (n / rows if rows else 0.0) for c, n in nulls.items()},
    }
    if name in LABEL_FLAG:
        out["labels"] = int(row[-1] or 0)
    return out


def _iso(value) -> str | None:
    if value is None:
        return None
    return value.isoformat(sep=" ") if isinstance(value, datetime) else str(value)


def _report_statistics(report: Report, src: InputSource, entry: dict) -> None:
    name = src.input
    if entry["rows"] == 0:
        report.problem(
            name,
            f"{src.described} has no rows",
            f"point {src.key} at the table (or SELECT) that holds the platform's {name}",
        )
    for column, missing in entry["nulls"].items():
        if not missing:
            continue
        mapped = src.columns.get(column, column)
        report.problem(
            name,
            f"{column} is NULL in {missing} of {entry['rows']} rows "
            f"({missing / entry['rows']:.1%})",
            f"mlkit needs {column} in every row: map {src.key}.columns.{column} to a column "
            f"that is never NULL (now {mapped!r}), or leave such rows out with {src.key}.sql",
        )
    if name in LABEL_FLAG and entry["rows"] and not entry["labels"]:
        report.problem(
            name,
            f"no row is a confirmed label ({LABEL_FLAG[name]} is never true)",
            f"map {src.key}.columns.{LABEL_FLAG[name]}, or leave it out (every row a label)",
        )


def _relation(conn: Connection, sources: Sources, bodies: dict[str, str], name: str) -> str:
    """An input as a FROM item: its mapped SELECT, else mlkit's own table."""
    if name in bodies:
        return f"({bodies[name]})"
    return view_name(conn.dialect, sources, name)


def _label_delays(conn: Connection, sources: Sources, bodies: dict[str, str], name: str) -> dict:
    """label_available_at minus the order's time over the labels that find their order:
    median and 90th percentile in days (one read of the joined pairs)."""
    import numpy as np

    q = lambda n: quote(conn, n)  # noqa: E731
    orders = _relation(conn, sources, bodies, "orders")
    sql = (
        f"SELECT l.{q('label_available_at')}, o.{q('created_at')} FROM ({bodies[name]}) l "
        f"JOIN {orders} o ON o.{q('order_id')} = l.{q('order_id')} "
        f"WHERE l.{q(LABEL_FLAG[name])} AND l.{q('label_available_at')} IS NOT NULL"
    )
    try:
        with guarded(conn):
            pairs = conn.execute(sa.text(sql)).all()
    except DBAPIError:
        return {"label_delay_days": None}  # the join problem is reported on its own
    delays = np.array(
        [(_as_datetime(a) - _as_datetime(b)).total_seconds() for a, b in pairs], dtype=float
    )
    if not len(delays):
        return {"label_delay_days": None}
    median, p90 = np.percentile(delays / SECONDS_PER_DAY, [50, 90])
    return {"label_delay_days": {"median": float(median), "p90": float(p90), "n": len(delays)}}


def _as_datetime(value) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _check_derived(conn: Connection, report: Report, bodies: dict[str, str]) -> None:
    """The derived views compile on the mapped orders (their SELECT planned, no row read)."""
    if "orders" not in bodies:
        return
    for name in report.sources.derived:
        body = derived_body(conn.dialect, report.sources, name, f"({bodies['orders']})")
        try:
            with guarded(conn):
                conn.execute(sa.text(f"SELECT * FROM ({body}) d WHERE 1 = 0")).all()
        except DBAPIError as exc:
            report.problem(
                name,
                f"cannot derive {name} from orders: {first_line(exc)}",
                f"map sources.{name} to the platform's own table, or check sources.orders.columns",
            )


def _check_joins(conn: Connection, report: Report, bodies: dict[str, str]) -> None:
    """Per pair of ids that must join, where one side is mapped: how many ids find no row."""
    sources = report.sources
    q = lambda n: quote(conn, n)  # noqa: E731
    for child, column, parent, key in JOINS:
        if child not in bodies or parent in sources.derived:
            continue
        if parent in sources.inputs and parent not in bodies:
            continue  # the parent could not be read: reported already
        sql = (
            f"SELECT COUNT(*) FROM ({bodies[child]}) c LEFT JOIN "
            f"{_relation(conn, sources, bodies, parent)} p ON p.{q(key)} = c.{q(column)} "
            f"WHERE c.{q(column)} IS NOT NULL AND p.{q(key)} IS NULL"
        )
        try:
            with guarded(conn):
                unjoined = int(conn.execute(sa.text(sql)).scalar_one())
        except DBAPIError as exc:
            report.problem(
                child,
                f"cannot join {column} to {parent}: {first_line(exc)}",
                f"run `mlkit db init` so mlkit's own {parent} table exists",
            )
            continue
        report.inputs[child].setdefault("unjoined", {})[column] = unjoined
        if unjoined:
            total = report.inputs[child]["rows"]
            report.problem(
                child,
                f"{unjoined} of {total} rows: {column} matches no row of {parent}",
                f"the ids must be the same values in both (text ids hash alike): check "
                f"sources.{child} ({column}) against sources.{parent} ({key})"
                if parent in sources.inputs
                else f"map sources.{parent}, or check sources.{child} ({column})",
            )


def _check_output(
    conn: Connection, report: Report, name: str, table: str, columns: tuple[str, ...]
) -> None:
    """An output table exists and has the columns mlkit writes into it."""
    owner, _, bare = table.rpartition(".")
    inspector = sa.inspect(conn)
    if not inspector.has_table(bare, schema=owner or None):
        report.outputs[name] = {"table": table, "reachable": False}
        report.problem(
            f"outputs.{name}",
            f"table {table} does not exist",
            "create it (the platform's DDL), or fix outputs." + name + ".table",
        )
        return
    found = {c["name"] for c in inspector.get_columns(bare, schema=owner or None)}
    missing = [c for c in columns if c not in found]
    report.outputs[name] = {"table": table, "reachable": True, "columns": sorted(found)}
    if missing:
        report.problem(
            f"outputs.{name}",
            f"table {table} has no column {', '.join(missing)}",
            f"name the platform's columns under outputs.{name}",
        )
