"""The fraud training set: orders as-of-joined to their feature rows, labels as of a cut-off.

Label rule: an order counts as fraud when a confirmed label (security alert or bot
detection) for it became available at or before the label cut-off (default: the clock,
`MLKIT_NOW` when set; never later). Orders younger than `fraud.label_delay_days` at the
cut-off are left out, because their labels may still be on their way: a missing label
there means "not yet", not "no".
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import schema
from ..clock import utcnow
from ..datasets import asof_join_index, write_snapshot
from ..db import read_frame
from ..errors import MlkitError
from .columns import DATASET_COLUMNS, FEATURES
from .features import order_keys
from .labels import label_query, own_labels

NAME = "fraud"


@dataclass
class DatasetResult:
    path: Path
    manifest: dict
    seconds: float

    def as_dict(self) -> dict:
        keys = ("run_id", "rows", "time_range", "label_counts", "label_cutoff", "sha256")
        return {
            "path": str(self.path),
            **{k: self.manifest[k] for k in keys},
            "seconds": round(self.seconds, 2),
        }


@dataclass(frozen=True)
class SnapshotWindow:
    """The orders a training snapshot holds, shared by both engines: those before `end`, the
    label cut-off less the label delay (younger orders' labels may not have arrived yet),
    and not after `until`, from `since`."""

    since: datetime | None
    cutoff: datetime
    end: datetime
    label_delay_days: float

    @classmethod
    def of(
        cls,
        since: datetime | None,
        until: datetime | None,
        label_cutoff: datetime | None,
        label_delay_days: float,
    ) -> SnapshotWindow:
        now = utcnow()
        cutoff = label_cutoff or now
        if cutoff > now:
            raise MlkitError(
                f"the label cut-off {cutoff} is later than now ({now})",
                hint="labels not available yet must not count: pick a moment in the past",
            )
        end = cutoff - timedelta(days=label_delay_days)
        return cls(since, cutoff, min(until, end) if until else end, label_delay_days)

    def queries(self) -> tuple[sa.Select, sa.Select]:
        """The window's orders (entities) and feature rows."""
        o, f = schema.orders, schema.fraud_features
        entities = sa.select(
            o.c.order_id, o.c.buyer_wallet_id, o.c.event_id, o.c.created_at, o.c.price
        ).where(o.c.created_at < self.end)
        features = sa.select(
            f.c.order_id, f.c.wallet_id, f.c.feature_ts, *[f.c[name] for name in FEATURES]
        ).where(f.c.feature_ts < self.end)
        if self.since is not None:
            entities = entities.where(o.c.created_at >= self.since)
            features = features.where(f.c.feature_ts >= self.since)
        return entities, features

    def no_orders(self) -> MlkitError:
        return MlkitError(
            f"no orders between {self.since or 'the beginning'} and {self.end} "
            f"(orders younger than {self.label_delay_days:g} days before the label cut-off "
            f"{self.cutoff} are left out)",
            hint="widen --since/--until, or load orders first",
        )


def build_fraud_dataset(
    engine: Engine,
    datasets_dir: Path,
    *,
    since: datetime | None,
    until: datetime | None,
    label_cutoff: datetime | None = None,
    label_delay_days: float = 7.0,
    set_current: bool = False,
) -> DatasetResult:
    started = time.perf_counter()
    window = SnapshotWindow.of(since, until, label_cutoff, label_delay_days)
    cutoff = window.cutoff
    entity_query, feature_query = window.queries()
    entity_query = entity_query.order_by("created_at", "order_id")
    feature_query = feature_query.order_by("feature_ts", "order_id")
    with engine.connect() as conn:
        entities = read_frame(conn, entity_query)
        if entities.empty:
            raise window.no_orders()
        feature_rows = read_frame(conn, feature_query)
        labels = read_frame(conn, label_query(available_at_or_before=cutoff))
    frame, own_rows = join_features(entities, feature_rows)
    # Price and payment method are the order's own: only its own row will do.
    missing = int((~own_rows).sum())
    if missing:
        raise MlkitError(
            f"{missing} of {len(frame)} orders have no feature row",
            hint="run `mlkit etl run` over the same range first",
        )
    frame["label_available_at"] = own_labels(labels, frame["order_id"].to_numpy())
    frame["label"] = frame["label_available_at"].notna().astype("int8")
    frame = frame[list(DATASET_COLUMNS)]

    counts = frame["label"].value_counts()
    manifest = {
        "created_at": utcnow().isoformat(),
        "rows": len(frame),
        "columns": list(frame.columns),
        "feature_columns": list(FEATURES),
        "time_range": {
            "start": frame["event_ts"].min().isoformat(),
            "end": frame["event_ts"].max().isoformat(),
        },
        "label_counts": {"0": int(counts.get(0, 0)), "1": int(counts.get(1, 0))},
        "label_cutoff": cutoff.isoformat(),
        "label_rule": __doc__.split("\n\n")[1].replace("\n", " "),
        "query": {
            "entities": _sql(engine, entity_query),
            "features": _sql(engine, feature_query),
            "as_of_join": "latest feature row of the same wallet with (feature_ts, order_id) "
            "<= (event_ts, order_id)",
        },
        "config": {
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "label_delay_days": label_delay_days,
            "database": engine.url.render_as_string(hide_password=True),
        },
    }
    path = write_snapshot(datasets_dir, NAME, frame, manifest, set_current=set_current)
    import json

    written = json.loads((path / "manifest.json").read_text())
    return DatasetResult(path, written, time.perf_counter() - started)


def build_from_config(
    engine: Engine,
    config,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    label_cutoff: datetime | None = None,
    set_current: bool = False,
) -> DatasetResult:
    """`build_fraud_dataset` in this database's datasets folder, with the configured label
    delay."""
    from ..identity import database_home

    return build_fraud_dataset(
        engine,
        database_home(config, engine).datasets_dir,
        since=since,
        until=until,
        label_cutoff=label_cutoff,
        label_delay_days=config.get("fraud.label_delay_days"),
        set_current=set_current,
    )


def join_features(
    entities: pd.DataFrame, feature_rows: pd.DataFrame
) -> tuple[pd.DataFrame, np.ndarray]:
    """Each order with the latest feature row of its wallet known at the order's moment, and whether
    that row is the order's own; both frames come sorted by (time, order_id), so a tie within one
    second resolves to the order's own row."""
    seq = pd.Series(np.arange(len(entities), dtype=np.int64), index=entities["order_id"])
    order_seq = seq.reindex(feature_rows["order_id"]).to_numpy()
    # Feature rows of orders outside the entity set sort by time among them.
    outside = np.isnan(order_seq) if order_seq.dtype.kind == "f" else np.zeros(len(order_seq), bool)
    if outside.any():
        feature_rows = feature_rows[~outside]
        order_seq = order_seq[~outside]
    wallets, _ = pd.factorize(
        pd.concat([entities["buyer_wallet_id"], feature_rows["wallet_id"]], ignore_index=True)
    )
    left_by, right_by = wallets[: len(entities)], wallets[len(entities) :]
    index = asof_join_index(left_by, seq.to_numpy(), right_by, order_seq.astype(np.int64))
    matched = feature_rows.reset_index(drop=True).reindex(np.where(index >= 0, index, -1))
    out = pd.DataFrame(
        {
            **order_keys(entities, "event_ts"),
            "feature_ts": matched["feature_ts"].to_numpy(),
            "amount": entities["price"].to_numpy(dtype=float),
        }
    )
    for name in FEATURES:
        out[name] = matched[name].to_numpy()
    out["is_resale"] = out["is_resale"].fillna(False).astype(bool)
    own = matched["order_id"].to_numpy(dtype=float) == out["order_id"].to_numpy(dtype=float)
    return out, own


def _sql(engine: Engine, query: sa.Select) -> str:
    return str(query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))


def build_configured(
    engine: Engine, config, *, set_current: bool = False, **moments: str | None
) -> DatasetResult:
    """`mlkit dataset build fraud`: `build_from_config` over `moments` (since, until,
    label_cutoff) as their options give them: 30d back from now or a date; None: unbounded,
    the cut-off now."""
    from ..clock import parse_moment

    now = utcnow()
    parsed = {
        name: parse_moment(value, now=now, option=f"--{name.replace('_', '-')}") if value else None
        for name, value in moments.items()
    }
    return build_from_config(engine, config, **parsed, set_current=set_current)
