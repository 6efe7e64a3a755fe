"""Features of a new, not-yet-stored order, with the batch path's own definitions.

A wallet's history comes from Redis (written by `materialize`) when present, else from the database;
tests compare this path with `features.py` on the same orders.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import schema
from ..clock import as_utc
from ..db import read_frame
from ..errors import MlkitError
from ..geo import JET_SPEED_KMH, haversine_km
from .columns import LABEL_HISTORY_WINDOWS_DAYS
from .labels import label_query

if TYPE_CHECKING:
    import pandas as pd

WALLET_KEY = "features:wallet:{}"
ORDER_COLUMNS = (
    "order_id",
    "buyer_wallet_id",
    "seller_wallet_id",
    "event_id",
    "ticket_id",
    "price",
    "payment_method",
    "is_resale",
    "status",
    "geo_lat",
    "geo_lon",
    "created_at",
)
TIME_COLUMNS = {"created_at", "transferred_at", "label_available_at"}
MATERIALIZE_CHUNK = 5_000
HOUR, DAY = timedelta(hours=1), timedelta(days=1)


def _orders_select():
    o = schema.orders
    return sa.select(*[o.c[name] for name in ORDER_COLUMNS])


def wallet_histories(conn: sa.Connection, wallet_ids: Iterable[int]) -> dict[str, pd.DataFrame]:
    """Set-based: every history row of these wallets, in one query per table."""
    ids = sorted({int(w) for w in wallet_ids})
    o, w, t = schema.orders, schema.wallets, schema.ticket_transfers
    orders = read_frame(
        conn,
        _orders_select().where(sa.or_(o.c.buyer_wallet_id.in_(ids), o.c.seller_wallet_id.in_(ids))),
    )
    wallets = read_frame(
        conn, sa.select(w.c.wallet_id, w.c.created_at).where(w.c.wallet_id.in_(ids))
    )
    transfers = read_frame(
        conn,
        sa.select(t.c.from_wallet_id, t.c.to_wallet_id, t.c.transferred_at).where(
            sa.or_(t.c.from_wallet_id.in_(ids), t.c.to_wallet_id.in_(ids))
        ),
    )
    wallet_labels = read_frame(conn, label_query(wallet_ids=ids))
    return {"orders": orders, "wallets": wallets, "transfers": transfers, "labels": wallet_labels}


_EPOCH = datetime(1970, 1, 1)


def _decode(text: str) -> dict[str, list[dict]]:
    """A materialized wallet as plain rows: a handful of dicts is faster than frames."""
    tables = {}
    for name, part in json.loads(text).items():
        columns = part["columns"]
        rows = [dict(zip(columns, values, strict=True)) for values in part["data"]]
        for row in rows:
            for column in TIME_COLUMNS.intersection(row):
                if row[column] is not None:
                    row[column] = _EPOCH + timedelta(seconds=row[column])
        tables[name] = rows
    return tables


# One statement reads what an order's features need: a UNION ALL of branches that share the
# orders' columns, each tagged in its first column; other tables' values ride in slots of a
# compatible type (SLOTS), NULL elsewhere.
WALLET_TABLES = ("orders", "wallets", "transfers", "labels")
SLOTS = {
    "orders": {name: name for name in ORDER_COLUMNS},
    "wallets": {"wallet_id": "buyer_wallet_id", "created_at": "created_at"},
    "transfers": {
        "from_wallet_id": "buyer_wallet_id",
        "to_wallet_id": "seller_wallet_id",
        "transferred_at": "created_at",
    },
    "labels": {
        "order_id": "order_id",
        "wallet_id": "buyer_wallet_id",
        "label_available_at": "created_at",
    },
    "event": {
        "capacity": "buyer_wallet_id",
        "sales_before": "seller_wallet_id",
        "base_price": "price",
    },
    "event_labels": {"label_available_at": "created_at"},
    # The batch statement (`_batch_statement`): each event row names its event.
    "events": {
        "event_id": "event_id",
        "capacity": "buyer_wallet_id",
        "sales_before": "seller_wallet_id",
        "base_price": "price",
    },
    "sales": {"event_id": "event_id", "created_at": "created_at"},
    "events_labels": {"event_id": "event_id", "label_available_at": "created_at"},
}
BATCH_EVENT_TABLES = ("events", "sales", "events_labels")


def _branch(tag: str, values, *, typed: bool = False) -> sa.Select:
    """`tag`, then `values` (columns by name) in the slots SLOTS gives them, NULL elsewhere.
    Every slot has its orders column's type whichever branch comes first (SQLite's times are
    text until a DateTime result processor reads them); a numeric NULL is cast, as
    PostgreSQL types a column of bare NULLs as text, which numeric results refuse; `typed`
    casts integer and time NULLs too (the batch statement's first branches are mostly
    NULLs, which PostgreSQL would settle as text before a typed branch comes)."""
    slot_of = {slot: values[name] for name, slot in SLOTS[tag].items()}
    columns = []
    for name in ORDER_COLUMNS:
        kind = schema.orders.c[name].type
        value = slot_of.get(name, sa.null())
        cast = (sa.Numeric, sa.Float, sa.Integer, sa.DateTime) if typed else (sa.Numeric, sa.Float)
        if isinstance(value, sa.Null) and isinstance(kind, cast):
            value = sa.cast(value, kind)
        columns.append(sa.type_coerce(value, kind).label(name))
    return sa.select(sa.literal_column(f"'{tag}'").label("tag"), *columns)


@functools.cache
def _statement(wallet: bool, event: bool) -> sa.CompoundSelect:
    """Every history row of :wallet_id (`wallet`) and (`event`) the event's facts as of
    :moment: its row with its completed primary sales before :moment, and the times its
    orders' labels became available in [:since, :moment). Built once; SQLAlchemy caches its
    compiled form."""
    o, w, t, e = schema.orders, schema.wallets, schema.ticket_transfers, schema.events
    wallet_id = sa.bindparam("wallet_id", type_=sa.BigInteger)
    event_id = sa.bindparam("event_id", type_=sa.BigInteger)
    moment = sa.bindparam("moment", type_=sa.DateTime)
    branches = []
    if wallet:
        labels = label_query(wallet_ids=[wallet_id]).subquery()
        branches += [
            _branch("orders", o.c).where(
                sa.or_(o.c.buyer_wallet_id == wallet_id, o.c.seller_wallet_id == wallet_id)
            ),
            _branch("wallets", w.c).where(w.c.wallet_id == wallet_id),
            _branch("transfers", t.c).where(
                sa.or_(t.c.from_wallet_id == wallet_id, t.c.to_wallet_id == wallet_id)
            ),
            _branch("labels", labels.c),
        ]
    if event:
        sales = (
            sa.select(sa.func.count())
            .where(
                o.c.event_id == event_id,
                o.c.status == "COMPLETED",
                o.c.is_resale.is_(False),
                # Through the event's rows, never a walk of the created_at index over every
                # earlier order (a prepared statement's generic plan chose it): coalesce()
                # hides created_at from that index.
                sa.func.coalesce(o.c.created_at, o.c.created_at) < moment,
            )
            .scalar_subquery()
        )
        event_labels = label_query(
            available_before=moment,
            order_ids=sa.select(o.c.order_id).where(o.c.event_id == event_id),
        ).subquery()
        since = sa.bindparam("since", type_=sa.DateTime)
        branches += [
            _branch(
                "event",
                {"capacity": e.c.capacity, "sales_before": sales, "base_price": e.c.base_price},
            ).where(e.c.event_id == event_id),
            _branch("event_labels", event_labels.c).where(
                event_labels.c.label_available_at >= since
            ),
        ]
    return sa.union_all(*branches)


def _read(conn: sa.Connection, *, wallet_id=None, event_id=None, moment=None) -> dict:
    """The rows of `_statement` by tag, as plain dicts of their own columns."""
    params = {}
    if wallet_id is not None:
        params["wallet_id"] = int(wallet_id)
    if event_id is not None:
        window = timedelta(days=max(LABEL_HISTORY_WINDOWS_DAYS))
        params |= {"event_id": int(event_id), "moment": moment, "since": moment - window}
    tags = [*(WALLET_TABLES if wallet_id is not None else ()), "event", "event_labels"]
    found: dict[str, list[dict]] = {tag: [] for tag in tags}
    position = {name: i for i, name in enumerate(ORDER_COLUMNS, start=1)}
    pick = {tag: [(name, position[slot]) for name, slot in SLOTS[tag].items()] for tag in tags}
    for row in _run(conn, wallet_id is not None, event_id is not None, params):
        found[row[0]].append({name: row[i] for name, i in pick[row[0]]})
    return found


def _run(conn: sa.Connection, wallet: bool, event: bool, params: dict, *, slots=None):
    """The rows of `_statement(wallet, event)` (or, given `slots`, of
    `_batch_statement(wallet, slots)`). On PostgreSQL through a statement prepared once per
    connection: planning the union costs about as much as running it, each time."""
    if conn.dialect.name != "postgresql":
        statement = _batch_statement(wallet, None) if slots else _statement(wallet, event)
        return conn.execute(statement, params)
    name, prepare, compiled, names = _prepared(conn.dialect, wallet, event, slots)
    prepared = conn.connection.info.setdefault("mlkit_prepared", set())
    if name not in prepared:
        conn.exec_driver_sql(prepare)
        prepared.add(name)
    values = compiled.construct_params(params)
    arguments = ", ".join(f"%({key})s" for key in names)
    return conn.exec_driver_sql(f"EXECUTE {name} ({arguments})", {k: values[k] for k in names})


@functools.cache
def _prepared(dialect, wallet: bool, event: bool, slots=None) -> tuple[str, str, Any, list[str]]:
    """The name, PREPARE statement, compiled form and parameter names of a PostgreSQL
    `_statement` (or, given `slots`, `_batch_statement`), compiled once."""
    if slots:
        name = f"mlkit_online_batch_{int(wallet)}_{slots[0]}_{slots[1]}"
        compiled = _batch_statement(wallet, slots).compile(dialect=dialect)
    else:
        name = f"mlkit_online_features_{int(wallet)}{int(event)}"
        compiled = _statement(wallet, event).compile(dialect=dialect)
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", compiled.string)))
    position = {key: f"${i}" for i, key in enumerate(names, start=1)}
    text = re.sub(r"%\((\w+)\)s", lambda m: position[m.group(1)], compiled.string)
    return name, f"PREPARE {name} AS {text.replace('%%', '%')}", compiled, names


def _wallet_rows(conn: sa.Connection, wallet_id: int) -> dict[str, list[dict]]:
    """One wallet's history as plain rows, in one indexed statement."""
    found = _read(conn, wallet_id=wallet_id)
    return {name: found[name] for name in WALLET_TABLES}


def _event_facts(found: dict, event_id: int) -> dict:
    """What the event features need, from `_read`'s event rows."""
    if not found["event"]:
        raise MlkitError(f"event {event_id} does not exist", hint="check the order's event_id")
    facts = found["event"][0]
    return {
        "base_price": float(facts["base_price"]),
        "capacity": float(facts["capacity"]),
        "sales_before": int(facts["sales_before"]),
        "label_times": [row["label_available_at"] for row in found["event_labels"]],
    }


def _id_list(name: str, slots: int | None):
    """The ids of the list parameter `name`, as `in_` takes them: an expanding list, or on
    PostgreSQL `slots` parameters `name_0`, `name_1`... (`slot_params`), so the statement
    can be prepared once per size and its generic plan still sees equalities, which the
    planner estimates from the column's statistics, as it does one order's statement."""
    if slots is None:
        return sa.bindparam(name, expanding=True)
    return [sa.bindparam(f"{name}_{i}", type_=sa.BigInteger) for i in range(slots)]


def _among(column, name: str, slots: int | None):
    return column.in_(_id_list(name, slots))


def slot_count(n: int) -> int:
    """The parameter slots for n ids: the next power of two, so a connection prepares a
    handful of sizes."""
    return 1 << max(n - 1, 0).bit_length()


def slot_params(name: str, ids: list[int], slots: int) -> dict[str, int]:
    """`ids` in `slots` parameters, the last id repeated into the spare ones."""
    padded = [*ids, *[ids[-1]] * (slots - len(ids))]
    return {f"{name}_{i}": value for i, value in enumerate(padded)}


@functools.cache
def _batch_statement(wallet: bool, slots: tuple[int, int] | None) -> sa.CompoundSelect:
    """What a batch of orders needs, set-based, in one statement: every history row of the
    wallets :wallet_ids (`wallet`), and the facts of the events :event_ids over the batch's
    moments [:first, :last]: each event's row, its completed primary sales before :first
    counted and those in [:first, :last) listed, and the times its orders' labels became
    available in [:since, :last). Each order's own figures are then cut from these in
    Python (`_batch_event_facts`), with `_statement`'s bounds."""
    o, w, t, e = schema.orders, schema.wallets, schema.ticket_transfers, schema.events
    wallet_slots, event_slots = slots or (None, None)
    first = sa.bindparam("first", type_=sa.DateTime)
    last = sa.bindparam("last", type_=sa.DateTime)
    since = sa.bindparam("since", type_=sa.DateTime)
    branches = []
    if wallet:
        labels = label_query(wallet_ids=_id_list("wallet_ids", wallet_slots)).subquery()
        branches += [
            _branch("orders", o.c, typed=True).where(
                sa.or_(
                    _among(o.c.buyer_wallet_id, "wallet_ids", wallet_slots),
                    _among(o.c.seller_wallet_id, "wallet_ids", wallet_slots),
                )
            ),
            _branch("wallets", w.c, typed=True).where(
                _among(w.c.wallet_id, "wallet_ids", wallet_slots)
            ),
            _branch("transfers", t.c, typed=True).where(
                sa.or_(
                    _among(t.c.from_wallet_id, "wallet_ids", wallet_slots),
                    _among(t.c.to_wallet_id, "wallet_ids", wallet_slots),
                )
            ),
            _branch("labels", labels.c, typed=True),
        ]
    # Each event's sales are counted through its own rows (the equality on the event), not
    # by walking every order before :first on the created_at index, which a prepared
    # statement's generic plan can settle on (it did here): coalesce() hides created_at
    # from that index and leaves the equality.
    sold = o.alias("sold")
    primary_sales = (sold.c.status == "COMPLETED", sold.c.is_resale.is_(False))
    before_first = sa.func.coalesce(sold.c.created_at, sold.c.created_at) < first
    sales_before = (
        sa.select(sa.func.count())
        .where(sold.c.event_id == e.c.event_id, *primary_sales, before_first)
        .scalar_subquery()
    )
    event_labels = label_query(
        available_before=last,
        order_ids=sa.select(o.c.order_id).where(_among(o.c.event_id, "event_ids", event_slots)),
    ).subquery()
    labelled = o.alias("labelled")
    branches += [
        _branch(
            "events",
            {
                "event_id": e.c.event_id,
                "capacity": e.c.capacity,
                "base_price": e.c.base_price,
                "sales_before": sales_before,
            },
            typed=True,
        ).where(_among(e.c.event_id, "event_ids", event_slots)),
        _branch("sales", {"event_id": e.c.event_id, "created_at": sold.c.created_at}, typed=True)
        .select_from(e.join(sold, sold.c.event_id == e.c.event_id))
        .where(
            _among(e.c.event_id, "event_ids", event_slots),
            *primary_sales,
            sold.c.created_at >= first,
            sold.c.created_at < last,
        ),
        _branch(
            "events_labels",
            {
                "event_id": labelled.c.event_id,
                "label_available_at": event_labels.c.label_available_at,
            },
            typed=True,
        )
        .select_from(event_labels.join(labelled, labelled.c.order_id == event_labels.c.order_id))
        .where(event_labels.c.label_available_at >= since),
    ]
    return sa.union_all(*branches)


def _read_batch(conn: sa.Connection, wallet_ids: list[int], event_ids: list[int], moments) -> dict:
    """The rows of `_batch_statement` by tag, as plain dicts of their own columns."""
    window = timedelta(days=max(LABEL_HISTORY_WINDOWS_DAYS))
    first, last = min(moments), max(moments)
    params: dict[str, Any] = {"first": first, "last": last, "since": first - window}
    tags = list(BATCH_EVENT_TABLES)
    slots = None
    if conn.dialect.name == "postgresql":
        slots = (slot_count(len(wallet_ids)) if wallet_ids else 0, slot_count(len(event_ids)))
        params |= slot_params("event_ids", event_ids, slots[1])
        if wallet_ids:
            params |= slot_params("wallet_ids", wallet_ids, slots[0])
    else:
        slots = (0, 0)  # expanding lists
        params["event_ids"] = event_ids
        if wallet_ids:
            params["wallet_ids"] = wallet_ids
    if wallet_ids:
        tags += WALLET_TABLES
    found: dict[str, list[dict]] = {tag: [] for tag in tags}
    position = {name: i for i, name in enumerate(ORDER_COLUMNS, start=1)}
    pick = {tag: [(name, position[slot]) for name, slot in SLOTS[tag].items()] for tag in tags}
    for row in _run(conn, bool(wallet_ids), True, params, slots=slots):
        found[row[0]].append({name: row[i] for name, i in pick[row[0]]})
    return found


def _batch_wallets(found: dict, wallet_ids: list[int]) -> dict[int, dict[str, list[dict]]]:
    """Each wallet's history, as `_wallet_rows` reads it alone, from the batch's rows: an
    order is the history of its buyer and of its seller, a transfer of either side."""
    wallets = {w: {name: [] for name in WALLET_TABLES} for w in wallet_ids}
    sides = {
        "orders": ("buyer_wallet_id", "seller_wallet_id"),
        "wallets": ("wallet_id",),
        "transfers": ("from_wallet_id", "to_wallet_id"),
        "labels": ("wallet_id",),
    }
    for table, columns in sides.items():
        for row in found.get(table, ()):
            for owner in {row[c] for c in columns}:
                if owner in wallets:
                    wallets[owner][table].append(row)
    return wallets


def _batch_event_facts(found: dict, event_id: int, moment: datetime) -> dict:
    """`_event_facts` of one order from the batch's event rows, with `_statement`'s bounds:
    sales before `moment`, label times in [moment - the longest window, moment)."""
    rows = [r for r in found["events"] if r["event_id"] == event_id]
    if not rows:
        raise MlkitError(f"event {event_id} does not exist", hint="check the order's event_id")
    since = moment - timedelta(days=max(LABEL_HISTORY_WINDOWS_DAYS))
    before = int(rows[0]["sales_before"])
    later = sum(1 for r in found["sales"] if r["event_id"] == event_id and r["created_at"] < moment)
    return {
        "base_price": float(rows[0]["base_price"]),
        "capacity": float(rows[0]["capacity"]),
        "sales_before": before + later,
        "label_times": [
            r["label_available_at"]
            for r in found["events_labels"]
            if r["event_id"] == event_id and since <= r["label_available_at"] < moment
        ],
    }


def online_features_many(
    engine: Engine, orders: list[dict], client=None
) -> list[tuple[dict, str] | Exception]:
    """`online_features` of each of `orders` (validated requests), read set-based: one
    Redis MGET for their wallets and one SQL statement for the wallets Redis lacks and every
    event. Each order gets its features and source, or the exception that refuses it alone
    (an unknown event), as scoring it alone would raise."""
    if not orders:
        return []
    moments = [_moment(order["created_at"]) for order in orders]
    wallet_ids = list(dict.fromkeys(int(order["buyer_wallet_id"]) for order in orders))
    cached: dict[int, Any] = {}
    if client is not None:
        try:
            values = client.mget([WALLET_KEY.format(w) for w in wallet_ids])
            cached = {w: v for w, v in zip(wallet_ids, values, strict=True) if v is not None}
        except Exception:  # an unreachable cache only costs the database read
            cached = {}
    missing = [w for w in wallet_ids if w not in cached]
    event_ids = sorted({int(order["event_id"]) for order in orders})
    with engine.connect() as conn:
        found = _read_batch(conn, missing, event_ids, moments)
    histories = _batch_wallets(found, missing)
    for wallet_id, value in cached.items():
        histories[wallet_id] = _decode(value.decode() if isinstance(value, bytes) else value)
    results: list[tuple[dict, str] | Exception] = []
    for order, moment in zip(orders, moments, strict=True):
        wallet_id = int(order["buyer_wallet_id"])
        source = "redis" if wallet_id in cached else "database"
        try:
            event = _batch_event_facts(found, int(order["event_id"]), moment)
            features = features_of_one_order(order, moment, histories[wallet_id], event)
        except Exception as exc:  # this order's alone (an event of no capacity: a bug's 500)
            results.append(exc)
            continue
        results.append((features, source))
    return results


def batch_scores(model, features: list[dict]):
    """The scores of many orders' features and their per-feature contributions, one call to
    the model for all of them, each row's figures what `predict_one` and `contributions_one`
    give it alone: (scores as floats, names, contributions of shape (n, features), unit).

    An XGBoost model is asked once for the margins (calibrated as `predict_one` does) and
    once for the contributions, through its batch methods (`margins`,
    `matrix_contributions`) or else its booster; any other model row by row through its own
    methods."""
    import numpy as np

    batched = hasattr(model, "margins") and hasattr(model, "matrix_contributions")
    booster = None if batched else getattr(model, "booster_", None)
    if not features or not (batched or booster is not None):
        scores = [model.predict_one(f) for f in features]
        explained = [model.contributions_one(f) for f in features]
        if not explained:
            return scores, [], np.empty((0, 0)), ""
        names, _, unit = explained[0]
        return scores, names, np.vstack([values for _, values, _ in explained]), unit
    names, unit = _contribution_labels(model, features[0])
    matrix = _matrix(names, features)
    if batched:  # the model's own calls for a batch of rows
        margins, values = model.margins(matrix), model.matrix_contributions(matrix)
    else:
        import xgboost as xgb

        rounds = (0, model.best_iteration_ + 1)
        margins = booster.inplace_predict(matrix, iteration_range=rounds, predict_type="margin")
        values = booster.predict(
            xgb.DMatrix(matrix),  # its columns are the model's feature names: no check
            pred_contribs=True,
            iteration_range=rounds,
            validate_features=False,
        )[:, :-1]
    a, b = model.calibration_
    calibrated = a * np.asarray(margins, dtype=float) + b
    scores = (1.0 / (1.0 + np.exp(-np.clip(calibrated, -50.0, 50.0)))).tolist()
    return scores, names, np.asarray(values), unit


_LABELS: dict[int, tuple[Any, list[str], str]] = {}  # id(model): (weak ref, names, unit)


def _contribution_labels(model, features: dict) -> tuple[list[str], str]:
    """The model's own names and unit of its contributions (`contributions_one`), asked once
    per loaded model."""
    import weakref

    known = _LABELS.get(id(model))
    if known is None or known[0]() is not model:
        names, _, unit = model.contributions_one(features)
        for key in [k for k, (ref, _, _) in _LABELS.items() if ref() is None]:
            del _LABELS[key]  # models no longer served
        known = _LABELS[id(model)] = (weakref.ref(model), list(names), unit)
    return known[1], known[2]


def _matrix(names: list[str], features: list[dict]):
    """The orders' rows in the model's columns (`names`), as its `_matrix` lays a frame out:
    the numeric features (NaN when missing), is_resale, then one column per payment method."""
    import numpy as np

    method = "payment_method="
    rows = []
    for f in features:
        row = []
        for name in names:
            if name == "is_resale":
                row.append(float(bool(f.get("is_resale"))))
            elif name.startswith(method):
                row.append(float(f.get("payment_method") == name[len(method) :]))
            else:
                value = f.get(name)
                row.append(np.nan if value is None else float(value))
        rows.append(row)
    return np.asarray(rows, dtype=np.float32)


def materialize(
    engine: Engine, client, ttl_seconds: int, progress=None, *, full: bool = False
) -> int:
    """Write the wallets with new activity (all on the first run, or with `full`) to Redis
    with a TTL, renewing the others' (toolkit.fraud.materialize); returns keys written."""
    from .materialize import materialize_wallets

    return materialize_wallets(engine, client, ttl_seconds, full=full, progress=progress).written


def online_features(engine: Engine, order: dict, client=None) -> tuple[dict, str]:
    """The features of `order` (a mapping of ORDER_COLUMNS; order_id may be missing) and
    where the wallet's history came from: "redis" or "database". One SQL statement either
    way: the event's facts, and the wallet's history unless Redis holds it."""
    wallet_id, event_id = int(order["buyer_wallet_id"]), int(order["event_id"])
    moment = _moment(order["created_at"])
    cached = None
    if client is not None:
        try:
            cached = client.get(WALLET_KEY.format(wallet_id))
        except Exception:  # an unreachable cache only costs the database read
            cached = None
    with engine.connect() as conn:
        if cached is not None:
            found = _read(conn, event_id=event_id, moment=moment)
            wallet = _decode(cached.decode() if isinstance(cached, bytes) else cached)
            source = "redis"
        else:
            found = _read(conn, wallet_id=wallet_id, event_id=event_id, moment=moment)
            wallet = {name: found[name] for name in WALLET_TABLES}
            source = "database"
    event = _event_facts(found, event_id)
    return features_of_one_order(order, moment, wallet, event), source


def _moment(value) -> datetime:
    """An order's time as naive UTC: an offset names another clock, converted, never dropped."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if hasattr(value, "to_pydatetime"):  # pandas' Timestamp
        value = value.to_pydatetime()
    return as_utc(value)


def features_of_one_order(order: dict, moment: datetime, wallet: dict, event: dict) -> dict:
    """The definitions of features.py, for one order from one wallet's history (plain rows)
    and the event's aggregates; a test holds both paths to the same values."""
    t = moment
    wallet_id = int(order["buyer_wallet_id"])
    own_id = order.get("order_id")
    rows = [r for r in wallet["orders"] if r["created_at"] < t and r["order_id"] != own_id]
    rows.sort(key=lambda r: (r["created_at"], r["order_id"]))
    buys = [r for r in rows if r["buyer_wallet_id"] == wallet_id]
    hour_ago = t - timedelta(hours=1)
    created = wallet["wallets"][0]["created_at"] if wallet["wallets"] else None
    features = {
        "txn_velocity_1h": float(sum(1 for r in buys if r["created_at"] >= hour_ago)),
        "wallet_age_days": (t - created) / DAY if created else math.nan,
        "event_popularity_score": event["sales_before"] / event["capacity"],
        "price_deviation_ratio": float(order["price"]) / event["base_price"] - 1.0,
        "cross_event_attendance": float(
            len({r["event_id"] for r in buys if r["status"] == "COMPLETED"})
        ),
        "payment_method_diversity": float(
            len(
                {r["payment_method"] for r in buys if r["payment_method"]}
                | {order["payment_method"]}
            )
        ),
        "geo_velocity_flag": math.nan,
    }
    lat, lon = order.get("geo_lat"), order.get("geo_lon")
    if buys and not (_missing(lat) or _missing(lon)):
        previous = buys[-1]
        if not (_missing(previous["geo_lat"]) or _missing(previous["geo_lon"])):
            km = float(
                haversine_km(previous["geo_lat"], previous["geo_lon"], float(lat), float(lon))
            )
            hours = (t - previous["created_at"]) / HOUR
            features["geo_velocity_flag"] = float(km / hours > JET_SPEED_KMH)
    partners = set()
    for edge in wallet["transfers"]:
        if edge["transferred_at"] < t:
            if edge["from_wallet_id"] == wallet_id:
                partners.add(edge["to_wallet_id"])
            if edge["to_wallet_id"] == wallet_id:
                partners.add(edge["from_wallet_id"])
    features["social_graph_centrality"] = float(len(partners))
    holds = _hold_hours(rows, wallet_id)
    features["avg_ticket_hold_time"] = sum(holds) / len(holds) if holds else math.nan
    features["time_to_first_resale"] = holds[0] if holds else math.nan
    wallet_times = [
        lab["label_available_at"] for lab in wallet["labels"] if lab["label_available_at"] < t
    ]
    for days in LABEL_HISTORY_WINDOWS_DAYS:
        since = t - timedelta(days=days)
        features[f"wallet_labels_{days}d"] = float(sum(1 for x in wallet_times if x >= since))
        features[f"event_labels_{days}d"] = float(
            sum(1 for x in event["label_times"] if since <= x < t)
        )
    return {
        "order_id": own_id,
        "wallet_id": wallet_id,
        "event_id": int(order["event_id"]),
        "feature_ts": moment,
        **features,
        "payment_method": order["payment_method"],
        "is_resale": bool(order.get("is_resale") or False),
    }


def _missing(value) -> bool:
    """None, or a float NaN (what a frame's row holds for a missing value)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _hold_hours(rows: list[dict], wallet_id: int) -> list[float]:
    """For the wallet's completed resales in time order: hours since it bought that ticket."""
    sold = [r for r in rows if r["status"] == "COMPLETED" and not _missing(r["ticket_id"])]
    holds = []
    for resale in sold:
        if not resale["is_resale"] or resale["seller_wallet_id"] != wallet_id:
            continue
        before = [
            r
            for r in sold
            if r["ticket_id"] == resale["ticket_id"] and r["created_at"] < resale["created_at"]
        ]
        if before and before[-1]["buyer_wallet_id"] == wallet_id:
            holds.append((resale["created_at"] - before[-1]["created_at"]) / HOUR)
    return holds


def materialize_configured(
    engine: Engine, config, *, ttl: int | None = None, full: bool = False, progress=None
) -> dict:
    """`mlkit features materialize`: the wallets with new activity since the last run (every
    wallet the first time, or with `full`) to the configured Redis (which must answer), each
    key living `ttl` seconds [default: fraud.online_ttl_seconds]; the others' TTL renewed."""
    from ..cache import redis_client
    from .materialize import materialize_wallets

    client = redis_client(config.redis_url)
    seconds = ttl if ttl is not None else config.get("fraud.online_ttl_seconds")
    done = materialize_wallets(engine, client, seconds, full=full, progress=progress)
    return {
        "wallets": done.written,
        "wallets_known": done.wallets,
        "kept": done.kept,
        "mode": done.mode,
        "ttl_seconds": seconds,
        "seconds": round(done.seconds, 2),
    }
