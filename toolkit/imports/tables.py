"""`mlkit ingest orders|labels|events|products|interactions`: a platform's CSV export upserted
into mlkit's own table on its key, in one transaction; a file with any bad line writes
nothing and the error names the line and the column.

Ids are integers, as mlkit's tables keep them. Wallets are the exception: a wallet column
(`buyer_wallet_id`, `seller_wallet_id`, a label's `wallet_id`) may hold addresses or card
numbers as text; each is resolved through `wallets.address`, and a new one gets a wallet
row whose `created_at` is the first time the file saw it (wallet age from the first order).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import schema
from ..clock import utcnow
from ..db import bulk_insert, explain_db_error, read_frame
from ..errors import MlkitError
from ..inputs import LineProblems
from .csvfile import match_columns, parse_renames, read_cells
from .upsert import upsert_frame
from .values import STRING_ID_HINT, Converter, check_lengths

if TYPE_CHECKING:
    import pandas as pd

MAX_LISTED = 5  # bad lines named in the error; the rest are counted
IN_CHUNK = 5_000  # ids per IN list when looking rows up
TIME_NAMES = ("created_at", "timestamp", "ts", "datetime", "date_time", "time", "date", "created")
INTERACTION_TYPES = ("view", "add_to_cart", "purchase", "rate")
GENDERS = {"m": "M", "male": "M", "men": "M", "f": "F", "female": "F", "women": "F"}
GENDERS |= {"u": "U", "unisex": "U", "all": "U"}


@dataclass
class Batch:
    """One file's rows on their way into a table: typed values and where each came from."""

    frame: pd.DataFrame
    given: set[str]  # columns the file filled (or derived from what it filled)
    lines: object  # numpy array of line numbers, row-aligned with frame
    problems: LineProblems


@dataclass(frozen=True)
class TableImport:
    """What one `mlkit ingest <kind>` fills and how it reads a file."""

    kind: str
    table: sa.Table
    keys: tuple[str, ...]
    accepted: dict[str, tuple[str, ...]]
    required: tuple[str, ...]
    defaults: dict = field(default_factory=dict)  # written on insert when the file has none
    wallet_columns: tuple[str, ...] = ()
    first_seen: str = "created_at"  # the time column that dates a new wallet
    derive: Callable[[Batch], None] | None = None  # checks and derivations on the file alone
    resolve: Callable[[sa.Connection, Batch], None] | None = None  # checks against the database


def _derive_orders(batch: Batch) -> None:
    if "is_resale" not in batch.given:
        seller = batch.frame.get("seller_wallet_id")
        resale = seller.notna().to_numpy(dtype=bool) if seller is not None else False
        batch.frame["is_resale"] = resale
        batch.given.add("is_resale")
    price = batch.frame["price"]
    batch.problems.add((price < 0).to_numpy(), lambda i: f"column price: {price.iloc[i]} < 0")


def _derive_events(batch: Batch) -> None:
    frame = batch.frame
    if "sale_start" not in batch.given and "created_at" not in batch.given:
        raise MlkitError(
            "events need sale_start or created_at (when tickets went on sale / the event was "
            "listed)",
            hint="name one of them so, or --map sale_start=<your column>",
        )
    for column, other in (("sale_start", "created_at"), ("created_at", "sale_start")):
        if column not in batch.given:
            frame[column] = frame[other]
            batch.given.add(column)
    capacity = frame["capacity"]
    bad = (capacity <= 0).fillna(False).to_numpy()
    batch.problems.add(bad, lambda i: f"column capacity: {capacity.iloc[i]} is not positive")


def _derive_products(batch: Batch) -> None:
    if "gender" not in batch.given:
        return
    text = batch.frame["gender"].fillna("u").str.lower()
    batch.frame["gender"] = text.map(GENDERS)
    unknown = batch.frame["gender"].isna().to_numpy()
    batch.problems.add(unknown, lambda i: f"column gender: {text.iloc[i]!r} is not M, F or U")


def _derive_interactions(batch: Batch) -> None:
    frame = batch.frame
    kinds = frame["interaction_type"].str.lower().str.replace(r"[\s\-]+", "_", regex=True)
    frame["interaction_type"] = kinds
    batch.problems.add(
        (~kinds.isin(INTERACTION_TYPES)).to_numpy(),
        lambda i: (
            f"column interaction_type: {kinds.iloc[i]!r} is not one of "
            + ", ".join(INTERACTION_TYPES)
        ),
    )
    if "rating" in batch.given:
        rating = frame["rating"]
        bad = ((rating < 1) | (rating > 5)).fillna(False).to_numpy()
        batch.problems.add(bad, lambda i: f"column rating: {rating.iloc[i]} is not 1 to 5")


def _lookup(conn: sa.Connection, table: sa.Table, key: str, values, *columns: str):
    """The rows of `table` whose `key` is among `values`, read in chunks."""
    import pandas as pd

    unique = list(dict.fromkeys(values))
    selected = [table.c[key], *(table.c[c] for c in columns)]
    parts = [
        read_frame(conn, sa.select(*selected).where(table.c[key].in_(unique[i : i + IN_CHUNK])))
        for i in range(0, len(unique), IN_CHUNK)
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[key, *columns])


def _resolve_labels(conn: sa.Connection, batch: Batch) -> None:
    frame = batch.frame
    ids = [int(v) for v in frame["order_id"]]
    found = _lookup(conn, schema.orders, "order_id", ids, "buyer_wallet_id", "created_at")
    buyers = found.set_index("order_id")["buyer_wallet_id"]
    known = frame["order_id"].isin(buyers.index).to_numpy()
    batch.problems.add(
        ~known, lambda i: f"order {frame['order_id'].iloc[i]} is not in orders (import it first)"
    )
    # A label known before its order was placed would let the order's own label leak
    # into the features of that very order.
    created = found.set_index("order_id")["created_at"].astype("datetime64[us]")
    placed = created.reindex(frame["order_id"].to_numpy())  # reindex: map of none is float
    early = known & (frame["label_available_at"].to_numpy() < placed.to_numpy())
    batch.problems.add(
        early,
        lambda i: (
            f"column label_available_at: {frame['label_available_at'].iloc[i]} is before "
            f"order {frame['order_id'].iloc[i]} was placed ({placed.iloc[i]})"
        ),
    )
    if "wallet_id" not in batch.given:
        frame["wallet_id"] = frame["order_id"].map(buyers).astype("Int64")
        batch.given.add("wallet_id")


def _resolve_interactions(conn: sa.Connection, batch: Batch) -> None:
    products = batch.frame["product_id"]
    found = _lookup(conn, schema.products, "product_id", [int(v) for v in products])
    missing = (~products.isin(found["product_id"])).to_numpy()
    batch.problems.add(
        missing, lambda i: f"product {products.iloc[i]} is not in products (import it first)"
    )


def _names(*names: str) -> tuple[str, ...]:
    return names


ORDER_TIME = ("order_time", "transaction_time", "purchased_at", *TIME_NAMES)
IMPORTS: dict[str, TableImport] = {
    "orders": TableImport(
        kind="orders",
        table=schema.orders,
        keys=("order_id",),
        accepted={
            "order_id": _names("order_id", "transaction_id", "txn_id", "tx_id", "id"),
            "buyer_wallet_id": _names(
                "buyer_wallet_id", "wallet_id", "wallet_address", "buyer_id", "buyer", "card_id"
            ),
            "seller_wallet_id": _names("seller_wallet_id", "seller_id", "seller_wallet", "seller"),
            "event_id": _names("event_id", "merchant_id", "event", "merchant"),
            "ticket_id": _names("ticket_id", "token_id"),
            "price": _names("price", "price_paid", "amount", "total", "value"),
            "payment_method": _names("payment_method", "payment_type", "payment"),
            "is_resale": _names("is_resale", "resale"),
            "status": _names("status", "state", "order_status"),
            "ip_address": _names("ip_address", "ip"),
            "geo_lat": _names("geo_lat", "lat", "latitude"),
            "geo_lon": _names("geo_lon", "lon", "lng", "longitude"),
            "country": _names("country", "country_code"),
            "created_at": ORDER_TIME,
            "completed_at": _names("completed_at", "completed"),
        },
        required=("order_id", "buyer_wallet_id", "event_id", "price", "created_at"),
        defaults={"payment_method": "unknown", "status": "completed"},
        wallet_columns=("buyer_wallet_id", "seller_wallet_id"),
        derive=_derive_orders,
    ),
    "labels": TableImport(
        kind="labels",
        table=schema.security_alerts,
        keys=("order_id", "alert_type"),
        accepted={
            "order_id": _names("order_id", "transaction_id", "txn_id", "tx_id"),
            "label_available_at": _names(
                "label_available_at",
                "available_at",
                "labeled_at",
                "labelled_at",
                "known_at",
                "reported_at",
                "confirmed_at",
                "detected_at",
                *TIME_NAMES,
            ),
            "confirmed_fraud": _names(
                "confirmed_fraud", "is_fraud", "fraud", "label", "is_fraudulent"
            ),
            "alert_type": _names("alert_type", "label_source", "source", "type"),
            "severity": _names(
                "severity",
            ),
            "wallet_id": _names("wallet_id", "wallet_address", "wallet"),
            "details": _names("details", "reason", "note", "notes"),
        },
        required=("order_id", "label_available_at"),
        defaults={"confirmed_fraud": True, "alert_type": "imported", "severity": "high"},
        wallet_columns=("wallet_id",),
        first_seen="label_available_at",
        resolve=_resolve_labels,
    ),
    "events": TableImport(
        kind="events",
        table=schema.events,
        keys=("event_id",),
        accepted={
            "event_id": _names("event_id", "id", "merchant_id"),
            "name": _names("name", "title", "event_name", "merchant_name"),
            "event_type": _names("event_type", "type", "category"),
            "venue": _names("venue", "venue_name"),
            "city": _names(
                "city",
            ),
            "venue_lat": _names("venue_lat", "lat", "latitude"),
            "venue_lon": _names("venue_lon", "lon", "lng", "longitude"),
            "base_price": _names("base_price", "price", "face_value", "ticket_price"),
            "capacity": _names("capacity", "seats", "total_tickets", "tickets"),
            "sale_start": _names("sale_start", "sale_start_at", "sales_start", "on_sale"),
            "event_date": _names("event_date", "starts_at", "start_time", "event_time", "date"),
            "created_at": _names("created_at", "created", "listed_at"),
        },
        required=("event_id", "name", "base_price", "capacity", "event_date"),
        defaults={"event_type": "other"},
        derive=_derive_events,
    ),
    "products": TableImport(
        kind="products",
        table=schema.products,
        keys=("product_id",),
        accepted={
            "product_id": _names("product_id", "id", "sku_id", "item_id"),
            "name": _names("name", "title", "product_name"),
            "category": _names("category", "product_type", "type"),
            "gender": _names("gender", "sex"),
            "color": _names("color", "colour"),
            "material": _names(
                "material",
            ),
            "size": _names(
                "size",
            ),
            "price": _names("price", "unit_price", "list_price"),
            "description": _names("description", "desc"),
            "created_at": _names("created_at", "created", "added_at"),
        },
        required=("product_id", "name", "category", "price"),
        defaults={"gender": "U", "created_at": None},  # None: the import's time
        derive=_derive_products,
    ),
    "interactions": TableImport(
        kind="interactions",
        table=schema.product_interactions,
        keys=("user_id", "product_id", "interaction_type", "created_at"),
        accepted={
            "id": _names("id", "interaction_id"),
            "user_id": _names("user_id", "customer_id", "visitor_id", "user"),
            "product_id": _names("product_id", "item_id", "sku_id"),
            "interaction_type": _names("interaction_type", "event_type", "action", "type"),
            "rating": _names("rating", "stars"),
            "session_id": _names("session_id", "session"),
            "time_spent_seconds": _names("time_spent_seconds", "time_spent", "dwell_seconds"),
            "created_at": _names("created_at", "event_time", "occurred_at", *TIME_NAMES),
        },
        required=("user_id", "product_id", "interaction_type", "created_at"),
        defaults={"time_spent_seconds": 0},
        derive=_derive_interactions,
        resolve=_resolve_interactions,
    ),
}
KINDS = tuple(IMPORTS)


def _missing_columns(spec: TableImport, mapping: dict[str, str], where: str, headers) -> None:
    missing = [c for c in spec.required if c not in mapping]
    if not missing:
        return
    shown = ", ".join(repr(h) for h in headers) or "none"
    accepted = "; ".join(f"{c}: {'/'.join(spec.accepted[c][:5])}" for c in missing)
    raise MlkitError(
        f"{where}: missing column(s) {', '.join(missing)} for {spec.kind} (header has {shown})",
        hint=f"name them like {accepted} (any case), or --map {missing[0]}=<your column>",
    )


def _raise_problems(problems: LineProblems, where: str, converter: Converter) -> None:
    try:
        problems.raise_if_any(where)
    except MlkitError as exc:
        if converter.string_ids:
            exc.hint = STRING_ID_HINT
        raise


def _typed_batch(spec: TableImport, source: str, maps: list[str] | None):
    """The file's rows typed and checked on their own: (batch, where, mapping, headers)."""
    import pandas as pd

    csv = read_cells(source)
    mapping = match_columns(csv.headers, spec.accepted, parse_renames(maps), csv.where)
    _missing_columns(spec, mapping, csv.where, csv.headers)
    problems = LineProblems(csv.line_numbers, MAX_LISTED)
    converter = Converter(problems)
    frame = pd.DataFrame(
        {
            column: converter.column(
                csv.cells[header],
                spec.table.c[column],
                addresses=column in spec.wallet_columns,
            )
            for column, header in mapping.items()
        }
    )
    for column in spec.required:
        empty = (csv.cells[mapping[column]] == "").to_numpy()
        problems.add(empty, lambda i, column=column: f"column {column} is empty (required)")
    for column in (c for c in spec.wallet_columns if c in frame):
        values = frame[column]
        long = values.map(lambda v: isinstance(v, str) and len(v) > 42).to_numpy(dtype=bool)
        problems.add(
            long,
            lambda i, v=values, c=column: (
                f"column {c}: {v.iloc[i]!r} is longer than a wallet address (42 characters)"
            ),
        )
    _raise_problems(problems, csv.where, converter)
    batch = Batch(frame, set(mapping), csv.line_numbers, problems)
    if spec.derive is not None:
        spec.derive(batch)
    check_lengths(
        problems, spec.table, batch.frame.drop(columns=list(spec.wallet_columns), errors="ignore")
    )
    _raise_problems(problems, csv.where, converter)
    return batch, csv.where, mapping, csv.headers


def _fill_defaults(spec: TableImport, batch: Batch) -> list[str]:
    """Columns the file lacks, at their default; returns them (written on insert only)."""
    filled = []
    for column, default in spec.defaults.items():
        if column not in batch.given:
            batch.frame[column] = utcnow() if default is None else default
            filled.append(column)
    return filled


def _check_duplicates(batch: Batch, keys: list[str], where: str) -> None:
    import pandas as pd

    frame = batch.frame
    repeated = frame.duplicated(keys, keep="first").to_numpy()
    if not repeated.any():
        return
    first = pd.Series(batch.lines).groupby([frame[k] for k in keys]).transform("first")

    def describe(i: int) -> str:
        key = ", ".join(f"{k}={frame[k].iloc[i]}" for k in keys)
        return f"duplicate {key} (first on line {int(first.iloc[i])})"

    batch.problems.add(repeated, describe)
    batch.problems.raise_if_any(where)


def _date_wallets_back(conn: sa.Connection, seen, found) -> None:
    """A known wallet seen earlier than its `created_at` is dated back to that moment."""
    import pandas as pd

    stored = found.set_index("address")["created_at"]
    earlier = seen[seen.index.isin(stored.index)]
    earlier = earlier[earlier.to_numpy() < stored.reindex(earlier.index).to_numpy()]
    if len(earlier):
        frame = pd.DataFrame({"address": earlier.index, "created_at": earlier.to_numpy()})
        upsert_frame(conn, schema.wallets, frame, ["address"])


def _resolve_wallets(conn: sa.Connection, spec: TableImport, batch: Batch) -> None:
    """Wallet columns holding addresses become wallet ids, new wallets created."""
    import pandas as pd

    frame = batch.frame
    columns = [c for c in spec.wallet_columns if c in frame]
    is_text = {c: frame[c].map(lambda v: isinstance(v, str)).to_numpy(dtype=bool) for c in columns}
    texts = [
        pd.DataFrame(
            {"address": frame.loc[is_text[c], c], "seen": frame.loc[is_text[c], spec.first_seen]}
        )
        for c in columns
        if is_text[c].any()
    ]
    if texts:
        seen = pd.concat(texts).groupby("address")["seen"].min()
        wallets = schema.wallets
        found = _lookup(conn, wallets, "address", list(seen.index), "wallet_id", "created_at")
        _date_wallets_back(conn, seen, found)
        new = seen[~seen.index.isin(found["address"])]
        if len(new):
            bulk_insert(
                conn, wallets, pd.DataFrame({"address": new.index, "created_at": new.to_numpy()})
            )
            found = _lookup(conn, wallets, "address", list(seen.index), "wallet_id")
        ids = found.set_index("address")["wallet_id"]
        for column in columns:
            frame.loc[is_text[column], column] = frame.loc[is_text[column], column].map(ids)
    for column in columns:
        frame[column] = pd.array(list(frame[column]), dtype="Int64")


def ingest_table(engine: Engine, kind: str, source: str, maps: list[str] | None = None) -> dict:
    """Check the whole file, then upsert it into the kind's table in one transaction:
    {table, file, rows_read, inserted, updated, skipped, columns, ignored}."""
    from sqlalchemy.exc import DBAPIError

    spec = IMPORTS[kind]
    batch, where, mapping, headers = _typed_batch(spec, source, maps)
    pk = [c.name for c in spec.table.primary_key.columns]
    keys = pk if set(pk) <= batch.given else list(spec.keys)
    insert_only = _fill_defaults(spec, batch)
    _check_duplicates(batch, keys, where)
    try:
        with engine.begin() as conn:
            _resolve_wallets(conn, spec, batch)
            if spec.resolve is not None:
                spec.resolve(conn, batch)
                batch.problems.raise_if_any(where)
            columns = [c.name for c in spec.table.columns if c.name in batch.frame]
            counts = upsert_frame(
                conn, spec.table, batch.frame[columns], keys, insert_only=tuple(insert_only)
            )
    except DBAPIError as exc:
        raise explain_db_error(exc, engine.url) from None
    return {
        "table": spec.table.name,
        "file": where,
        "rows_read": len(batch.frame),
        **counts,
        "columns": mapping,
        "ignored": [h for h in headers if h not in mapping.values()],
    }


def ingest_table_file(engine: Engine, kind: str, source: str, maps: list[str] | None = None):
    """`mlkit ingest <kind>`: the schema created where missing, then `ingest_table`."""
    from ..db import init_schema

    init_schema(engine)
    _refuse_mapped_target(engine, IMPORTS[kind].table.name)
    return ingest_table(engine, kind, source, maps)


def _refuse_mapped_target(engine: Engine, table: str) -> None:
    """A mapped input is a view of the platform's table: mlkit never writes there."""
    with engine.connect() as conn:
        views = set(sa.inspect(conn).get_view_names())
    if table in views:
        raise MlkitError(
            f"{table} is mapped to the platform's own data by sources: (a view), and mlkit "
            "imports only into its own tables",
            hint=f"load the file into the platform's table, or remove sources.{table} "
            "from the config",
        )
