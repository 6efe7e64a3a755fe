"""The `outputs:` section: where mlkit also writes into the platform's own tables.

`outputs.fraud_predictions` maps the platform's prediction table column by column to what mlkit
scored (order_id is the platform's own order id, the orders view's `source_order_id`);
`outputs.orders_archive` and `outputs.fraud_predictions_archive` name the platform's archive
tables `retention run` moves its old rows into. Nothing mapped: mlkit writes only its own tables.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from . import schema
from .errors import MlkitError

# What a prediction output column can take, by mlkit's names.
PREDICTION_VALUES = (
    "order_id",
    "fraud_score",
    "decision",
    "features",
    "model_version",
    "created_at",
)
OUTPUT_NAMES = ("fraud_predictions", "orders_archive", "fraud_predictions_archive")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
HINT = "see examples/sources/ticketing-004.yaml and the README's 'Your own data'"


@dataclass(frozen=True)
class PredictionOutput:
    table: str  # [schema.]table
    columns: dict[str, str]  # platform column -> mlkit value

    def column_of(self, value: str) -> str | None:
        """The platform column that takes mlkit's `value`, if one does."""
        return next((col for col, v in self.columns.items() if v == value), None)


@dataclass(frozen=True)
class ArchiveOutput:
    table: str  # the platform's archive table
    source: str  # the platform's live table its rows come from
    key: str  # a unique column of both, the batches' order
    time: str  # the column the retention cut-off applies to
    link: str | None = None  # predictions: the column holding the platform's order id


@dataclass(frozen=True)
class Outputs:
    fraud_predictions: PredictionOutput | None = None
    orders_archive: ArchiveOutput | None = None
    fraud_predictions_archive: ArchiveOutput | None = None
    orders_mapped: bool = False  # `sources:` maps orders: mlkit's orders is a view of them

    def tables(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """(output, platform table, the columns mlkit writes there) of each mapped output."""
        found = []
        if self.fraud_predictions:
            columns = tuple(self.fraud_predictions.columns)
            found.append(("fraud_predictions", self.fraud_predictions.table, columns))
        for name in ("orders_archive", "fraud_predictions_archive"):
            archive = getattr(self, name)
            if archive:
                columns = tuple(c for c in (archive.key, archive.time, archive.link) if c)
                found.append((name, archive.table, columns))
        return found


def _error(where: str, problem: str) -> MlkitError:
    return MlkitError(f"outputs{'.' + where if where else ''}: {problem}", hint=HINT)


def _name(value: Any, where: str, *, qualified: bool = False) -> str:
    """A column name, or [schema.]table when `qualified`."""
    text = str(value or "").strip()
    parts = text.split(".", 1) if qualified else [text]
    if not text or not all(_IDENT.fullmatch(part) for part in parts):
        raise _error(where, f"{text!r} is not a plain {'table' if qualified else 'column'} name")
    return text


def _table(value: Any, where: str, platform: str | None) -> str:
    """[schema.]table; a bare name is the platform's (its schema or database) when mlkit keeps
    its own tables apart, as in `sources:`, so it never means mlkit's table of that name."""
    name = _name(value, where, qualified=True)
    return f"{platform}.{name}" if platform and "." not in name else name


def _section(raw: Mapping, name: str) -> Mapping | None:
    section = raw.get(name)
    if section is None:
        return None
    if not isinstance(section, Mapping):
        raise _error(name, f"expected a section with `table:`, got {section!r}")
    unknown = set(section) - {"table", "columns", "source", "key", "time"}
    if unknown:
        raise _error(f"{name}.{sorted(unknown)[0]}", "unknown key")
    return section


def _prediction_output(section: Mapping, platform: str | None) -> PredictionOutput:
    columns = section.get("columns")
    if not isinstance(columns, Mapping) or not columns:
        raise _error("fraud_predictions.columns", "map each platform column to an mlkit value")
    mapped = {}
    for column, value in columns.items():
        where = f"fraud_predictions.columns.{column}"
        if value not in PREDICTION_VALUES:
            raise _error(where, f"{value!r} is not one of {', '.join(PREDICTION_VALUES)}")
        mapped[_name(column, where)] = str(value)
    output = PredictionOutput(
        _table(section.get("table"), "fraud_predictions.table", platform), mapped
    )
    if output.column_of("order_id") is None:
        raise _error("fraud_predictions.columns", "no platform column takes order_id")
    return output


def _plain_column(expression: Any) -> str | None:
    """A source mapping's column expression when it is one (maybe quoted) column name."""
    text = str(expression or "").strip().strip('"`')
    return text if _IDENT.fullmatch(text) else None


def _orders_source(sources: Mapping) -> Mapping | None:
    found = sources.get("orders", sources.get("transactions"))
    return found if isinstance(found, Mapping) else None


def _orders_archive(section: Mapping, sources: Mapping, platform: str | None) -> ArchiveOutput:
    orders = _orders_source(sources) or {}
    columns = orders.get("columns") if isinstance(orders.get("columns"), Mapping) else {}
    derived = {
        "source": orders.get("table"),
        "key": _plain_column(columns.get("order_id")),
        "time": _plain_column(columns.get("created_at")),
    }
    given = {k: section.get(k) or derived[k] for k in derived}
    for key, value in given.items():
        if not value:
            raise _error(
                f"orders_archive.{key}",
                f"cannot tell the platform's order {key} from sources.orders; give it here",
            )
    return ArchiveOutput(
        table=_table(section.get("table"), "orders_archive.table", platform),
        source=_table(given["source"], "orders_archive.source", platform),
        key=_name(given["key"], "orders_archive.key"),
        time=_name(given["time"], "orders_archive.time"),
    )


def _predictions_archive(
    section: Mapping, predictions: PredictionOutput | None, platform: str | None
) -> ArchiveOutput:
    if predictions is None:
        raise _error("fraud_predictions_archive", "needs outputs.fraud_predictions mapped")
    time = section.get("time") or predictions.column_of("created_at")
    if not time:
        raise _error("fraud_predictions_archive.time", "no platform column takes created_at")
    return ArchiveOutput(
        table=_table(section.get("table"), "fraud_predictions_archive.table", platform),
        source=predictions.table,
        key=_name(section.get("key") or "id", "fraud_predictions_archive.key"),
        time=_name(time, "fraud_predictions_archive.time"),
        link=predictions.column_of("order_id"),
    )


def parse_outputs(
    raw: Mapping | None, sources: Mapping | None = None, platform: str | None = None
) -> Outputs:
    """The `outputs:` section checked; `sources` (the `sources:` section) supplies what the
    orders archive needs to know of the platform's orders table; bare table names are in the
    `platform` schema (or MySQL database) when one is given."""
    raw, sources = raw or {}, sources or {}
    if not isinstance(raw, Mapping):
        raise _error("", f"expected a section, got {raw!r}")
    unknown = set(raw) - set(OUTPUT_NAMES)
    if unknown:
        raise _error(sorted(unknown)[0], f"unknown output (known: {', '.join(OUTPUT_NAMES)})")
    sections = {name: _section(raw, name) for name in OUTPUT_NAMES}
    predictions = (
        _prediction_output(sections["fraud_predictions"], platform)
        if sections["fraud_predictions"]
        else None
    )
    orders = sections["orders_archive"]
    archive = sections["fraud_predictions_archive"]
    return Outputs(
        fraud_predictions=predictions,
        orders_archive=_orders_archive(orders, sources, platform) if orders else None,
        fraud_predictions_archive=(
            _predictions_archive(archive, predictions, platform) if archive else None
        ),
        orders_mapped=_orders_source(sources) is not None,
    )


def outputs_of(config) -> Outputs:
    """The configured outputs (none when the config has no `outputs:` section)."""
    from .sources.mapping import sources_from_config

    data = config.data
    sources = sources_from_config(config)
    platform = sources.platform if sources.state_schema else None
    return parse_outputs(data.get("outputs"), data.get("sources"), platform)


# ---------------------------------------------------------------- writing


def platform_table(conn: sa.Connection, name: str) -> sa.Table:
    """The platform's table `[schema.]name` as the database has it."""
    schema_name, _, table = name.rpartition(".")
    try:
        return sa.Table(table, sa.MetaData(), schema=schema_name or None, autoload_with=conn)
    except sa.exc.NoSuchTableError:
        raise MlkitError(
            f"the platform table {name!r} named in outputs: does not exist", hint=HINT
        ) from None


def platform_order_id(conn: sa.Connection) -> tuple[sa.TableClause, sa.ColumnElement]:
    """mlkit's orders and the column holding the platform's own order id: `source_order_id`
    where orders is a view of the platform's table with hashed ids, else order_id."""
    names = {c["name"] for c in sa.inspect(conn).get_columns("orders")}
    own = "source_order_id" if "source_order_id" in names else "order_id"
    orders = sa.table("orders", sa.column("order_id"), sa.column(own))
    return orders, orders.c[own]


def write_fraud_predictions(
    conn: sa.Connection, output: PredictionOutput, scope: sa.ColumnElement
) -> int:
    """Copy mlkit's fraud predictions matching `scope` into the platform's table, in the
    caller's transaction and set-based: first the platform's rows of the same orders and model
    version go (a re-run replaces, never duplicates), then one INSERT ... SELECT."""
    target = platform_table(conn, output.table)
    missing = [c for c in output.columns if c not in target.c]
    if missing:
        raise _error("fraud_predictions.columns", f"{output.table} has no column {missing[0]!r}")
    p = schema.fraud_predictions
    orders, source_id = platform_order_id(conn)
    values = {
        "order_id": source_id,
        **{name: p.c[name] for name in PREDICTION_VALUES if name != "order_id"},
    }
    exprs = {col: sa.cast(values[v], target.c[col].type) for col, v in output.columns.items()}
    joined = p.join(orders, orders.c.order_id == p.c.order_id)
    features_col = output.column_of("features")
    if features_col is not None:
        # Batch predictions keep no copy of their features: fraud_features has them by order.
        f = schema.fraud_features
        joined = joined.outerjoin(f, f.c.order_id == p.c.order_id)
        kind = target.c[features_col].type
        exprs[features_col] = sa.func.coalesce(
            sa.cast(p.c.features, kind), sa.cast(feature_object(conn.dialect.name, f), kind)
        )
    order_col, version_col = output.column_of("order_id"), output.column_of("model_version")
    if version_col is not None:
        same = sa.and_(
            target.c[order_col] == exprs[order_col], target.c[version_col] == exprs[version_col]
        )
        conn.execute(
            target.delete().where(sa.exists(sa.select(1).select_from(joined).where(scope, same)))
        )
    rows = sa.select(*exprs.values()).select_from(joined).where(scope)
    return conn.execute(target.insert().from_select(list(exprs), rows)).rowcount


def feature_object(dialect: str, f: sa.Table) -> sa.ColumnElement:
    """A fraud_features row's feature vector as one JSON object, built by the database."""
    from .fraud.columns import FEATURES

    build = {"postgresql": sa.func.json_build_object, "mysql": sa.func.json_object}.get(
        dialect, sa.func.json_object
    )
    pairs = [part for name in FEATURES for part in (sa.literal_column(f"'{name}'"), f.c[name])]
    return build(*pairs)
