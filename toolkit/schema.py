"""One SQLAlchemy MetaData for every table mlkit reads or writes.

Timestamps are naive UTC; money is NUMERIC read back as float, so frames stay numeric; every string
has a length, so the tables compile on MySQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

metadata = sa.MetaData()

# JSONB on PostgreSQL (indexable, compact), JSON elsewhere.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
MONEY = sa.Numeric(14, 2, asdecimal=False)
# Large fact tables get 64-bit ids; SQLite only autoincrements INTEGER.
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Long free text: MEDIUMTEXT on MySQL so a value is never cut at 64 KiB.
LONGTEXT = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql")


def _ts(name: str, nullable: bool = True, **kw) -> sa.Column:
    return sa.Column(name, sa.DateTime(), nullable=nullable, **kw)


# ---------------------------------------------------------------- ticketing (fraud, pricing)

wallets = sa.Table(
    "wallets",
    metadata,
    sa.Column("wallet_id", BIGID, primary_key=True, autoincrement=True),
    sa.Column("address", sa.String(42), nullable=False, unique=True),
    sa.Column("country", sa.String(2)),
    _ts("created_at", nullable=False),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("event_id", BIGID, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("event_type", sa.String(32), nullable=False),
    sa.Column("venue", sa.String(120)),
    sa.Column("city", sa.String(80)),
    sa.Column("venue_lat", sa.Double()),
    sa.Column("venue_lon", sa.Double()),
    sa.Column("base_price", MONEY, nullable=False),
    sa.Column("capacity", sa.Integer(), nullable=False),
    _ts("sale_start", nullable=False),
    _ts("event_date", nullable=False),
    _ts("created_at", nullable=False),
    sa.Index("ix_events_event_date", "event_date"),
)

tickets = sa.Table(
    "tickets",
    metadata,
    sa.Column("ticket_id", BIGID, primary_key=True, autoincrement=True),
    sa.Column("event_id", BIGID, sa.ForeignKey("events.event_id"), nullable=False),
    sa.Column("owner_wallet_id", BIGID, nullable=False),
    sa.Column("seat", sa.String(16)),
    sa.Column("face_price", MONEY, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    _ts("minted_at", nullable=False),
    sa.Index("ix_tickets_event", "event_id"),
    sa.Index("ix_tickets_owner", "owner_wallet_id"),
)

# An order is one purchase attempt: primary sale (seller_wallet_id NULL) or resale.
orders = sa.Table(
    "orders",
    metadata,
    sa.Column("order_id", BIGID, primary_key=True, autoincrement=True),
    sa.Column("buyer_wallet_id", BIGID, nullable=False),
    sa.Column("seller_wallet_id", BIGID),
    sa.Column("event_id", BIGID, nullable=False),
    sa.Column("ticket_id", BIGID),
    sa.Column("price", MONEY, nullable=False),
    sa.Column("payment_method", sa.String(32), nullable=False),
    sa.Column("is_resale", sa.Boolean(), nullable=False, default=False),
    sa.Column("status", sa.String(16), nullable=False),
    # Where the order was placed from: what geo-velocity needs.
    sa.Column("ip_address", sa.String(45)),
    sa.Column("geo_lat", sa.Double()),
    sa.Column("geo_lon", sa.Double()),
    sa.Column("country", sa.String(2)),
    _ts("created_at", nullable=False),
    _ts("completed_at"),
    sa.Index("ix_orders_created_at", "created_at"),
    sa.Index("ix_orders_wallet_created", "buyer_wallet_id", "created_at"),
    sa.Index("ix_orders_event_created", "event_id", "created_at"),
    # A wallet's resales as seller: online features read a wallet's history by both ends.
    sa.Index("ix_orders_seller", "seller_wallet_id"),
    # A resold ticket's earlier sales: what a resale's hold time needs, one probe a ticket.
    sa.Index("ix_orders_ticket", "ticket_id", "created_at"),
)

ticket_transfers = sa.Table(
    "ticket_transfers",
    metadata,
    sa.Column("transfer_id", BIGID, primary_key=True, autoincrement=True),
    sa.Column("ticket_id", BIGID, nullable=False),
    sa.Column("order_id", BIGID),
    sa.Column("from_wallet_id", BIGID, nullable=False),
    sa.Column("to_wallet_id", BIGID, nullable=False),
    sa.Column("transfer_type", sa.String(16), nullable=False),  # resale | gift
    sa.Column("price", MONEY),
    _ts("transferred_at", nullable=False),
    sa.Index("ix_transfers_from", "from_wallet_id", "transferred_at"),
    sa.Index("ix_transfers_to", "to_wallet_id", "transferred_at"),
    sa.Index("ix_transfers_ticket", "ticket_id"),
)

# Fraud labels arrive after the order; label_available_at is when mlkit may use them.
security_alerts = sa.Table(
    "security_alerts",
    metadata,
    sa.Column("alert_id", BIGID, primary_key=True, autoincrement=True),
    sa.Column("order_id", BIGID),
    sa.Column("wallet_id", BIGID),
    sa.Column("wallet_address", sa.String(42)),
    sa.Column("alert_type", sa.String(32), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("confirmed_fraud", sa.Boolean(), nullable=False),
    sa.Column("details", sa.String(255)),
    _ts("label_available_at", nullable=False),
    sa.Index("ix_alerts_order", "order_id"),
    sa.Index("ix_alerts_wallet_available", "wallet_id", "label_available_at"),
    sa.Index("ix_alerts_available", "label_available_at"),
)

bot_detection = sa.Table(
    "bot_detection",
    metadata,
    sa.Column("detection_id", BIGID, primary_key=True, autoincrement=True),
    sa.Column("order_id", BIGID),
    sa.Column("wallet_id", BIGID),
    sa.Column("wallet_address", sa.String(42)),
    sa.Column("bot_score", sa.Double(), nullable=False),
    sa.Column("is_bot", sa.Boolean(), nullable=False),
    sa.Column("detector", sa.String(32)),
    _ts("label_available_at", nullable=False),
    sa.Index("ix_bot_order", "order_id"),
    sa.Index("ix_bot_wallet_available", "wallet_id", "label_available_at"),
    sa.Index("ix_bot_available", "label_available_at"),
)


def _fraud_prediction_columns() -> list[sa.Column]:
    return [
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("order_id", BIGID, nullable=False),
        sa.Column("fraud_score", sa.Double(), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("features", JSON),
        sa.Column("model_version", sa.String(64)),
        _ts("created_at", nullable=False),
    ]


# Every index is paid on each bulk write, so only what the readers need: an order's latest
# prediction (kpi, dashboard, drill-down, outputs, retention) walks (order_id, id); the alerts'
# and retention's time windows a BRIN on created_at on PostgreSQL (rows arrive in time order;
# nearly free to maintain); the dashboard's latest blocked orders an index of the BLOCKED rows
# only, where the dialect has partial indexes (MySQL: of every row).
_BLOCKED_ONLY = sa.text("decision = 'BLOCKED'")
fraud_predictions = sa.Table(
    "fraud_predictions",
    metadata,
    *_fraud_prediction_columns(),
    sa.Index("ix_predictions_order_id", "order_id", "id"),
    sa.Index("ix_predictions_time", "created_at", postgresql_using="brin"),
    sa.Index(
        "ix_predictions_blocked_created",
        "decision",
        "created_at",
        "id",
        postgresql_where=_BLOCKED_ONLY,
        sqlite_where=_BLOCKED_ONLY,
    ),
)

# Indexes an older mlkit made that no reader needs any more: `db init` drops them, since each
# one slows every bulk write.
RETIRED_INDEXES = {
    "fraud_predictions": (
        "ix_predictions_order",
        "ix_predictions_created",
        "ix_predictions_decision_created",
    ),
}

security_events = sa.Table(
    "security_events",
    metadata,
    sa.Column("id", BIGID, primary_key=True, autoincrement=True),
    sa.Column("event_type", sa.String(32), nullable=False),
    sa.Column("severity", sa.String(16)),
    sa.Column("source_ip", sa.String(45)),
    sa.Column("user_id", sa.String(64)),
    sa.Column("metadata", JSON),
    _ts("created_at", nullable=False),
    sa.Index("ix_security_events_type_created", "event_type", "created_at"),
)

blacklisted_wallets = sa.Table(
    "blacklisted_wallets",
    metadata,
    sa.Column("wallet_address", sa.String(42), primary_key=True),
    sa.Column("reason", sa.Text()),
    _ts("created_at", nullable=False),
)

admin_audit_log = sa.Table(
    "admin_audit_log",
    metadata,
    sa.Column("id", BIGID, primary_key=True, autoincrement=True),
    sa.Column("admin_user", sa.String(64)),
    sa.Column("action", sa.String(128), nullable=False),
    sa.Column("ip_address", sa.String(45)),
    sa.Column("metadata", JSON),
    _ts("created_at", nullable=False),
)

# Archive twins keep the source ids (no autoincrement) and when they were moved.
orders_archive = sa.Table(
    "orders_archive",
    metadata,
    *[
        sa.Column(
            c.name, c.type, primary_key=c.primary_key, nullable=c.nullable, autoincrement=False
        )
        for c in orders.columns
    ],
    _ts("archived_at", nullable=False),
    sa.Index("ix_orders_archive_created", "created_at"),
)

fraud_predictions_archive = sa.Table(
    "fraud_predictions_archive",
    metadata,
    *[
        sa.Column(
            c.name, c.type, primary_key=c.primary_key, nullable=c.nullable, autoincrement=False
        )
        for c in _fraud_prediction_columns()
    ],
    _ts("archived_at", nullable=False),
    sa.Index("ix_predictions_archive_order", "order_id"),
)

# ---------------------------------------------------------------- trading (signal)

market_data = sa.Table(
    "market_data",
    metadata,
    sa.Column("symbol", sa.String(20), primary_key=True),
    _ts("ts", nullable=False, primary_key=True),
    sa.Column("open", sa.Double(), nullable=False),
    sa.Column("high", sa.Double(), nullable=False),
    sa.Column("low", sa.Double(), nullable=False),
    sa.Column("close", sa.Double(), nullable=False),
    sa.Column("volume", sa.Double(), nullable=False),
)

signals = sa.Table(
    "signals",
    metadata,
    sa.Column("id", BIGID, primary_key=True, autoincrement=True),
    sa.Column("symbol", sa.String(20), nullable=False),
    _ts("ts", nullable=False),
    sa.Column("signal", sa.String(4), nullable=False),  # SELL | HOLD | BUY
    sa.Column("confidence", sa.Double(), nullable=False),
    sa.Column("fallback", sa.Boolean(), nullable=False),
    sa.Column("model_version", sa.String(64)),
    _ts("created_at", nullable=False),
    sa.Index("ix_signals_symbol_ts", "symbol", "ts"),
)

# Per symbol: how many signals came from the fallback while no model was trained, so the
# "model is not trained" warning can be logged every 10th time across separate runs.
signal_state = sa.Table(
    "signal_state",
    metadata,
    sa.Column("symbol", sa.String(20), primary_key=True),
    sa.Column("untrained_predictions", sa.BigInteger(), nullable=False, default=0),
    _ts("updated_at", nullable=False),
)

# ---------------------------------------------------------------- e-shop (recommender)

products = sa.Table(
    "products",
    metadata,
    sa.Column("product_id", BIGID, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("category", sa.String(64), nullable=False),
    sa.Column("gender", sa.String(1), nullable=False),  # M | F | U
    sa.Column("color", sa.String(32)),
    sa.Column("material", sa.String(32)),
    sa.Column("size", sa.String(8)),
    sa.Column("price", MONEY, nullable=False),
    sa.Column("description", sa.Text()),
    _ts("created_at", nullable=False),
    sa.Index("ix_products_category", "category"),
)

product_interactions = sa.Table(
    "product_interactions",
    metadata,
    sa.Column("id", BIGID, primary_key=True, autoincrement=True),
    sa.Column("user_id", BIGID, nullable=False),
    sa.Column("product_id", BIGID, sa.ForeignKey("products.product_id"), nullable=False),
    sa.Column("interaction_type", sa.String(16), nullable=False),  # view|add_to_cart|purchase|rate
    sa.Column("rating", sa.SmallInteger()),
    sa.Column("session_id", sa.String(64)),
    sa.Column("time_spent_seconds", sa.Integer(), nullable=False, default=0),
    _ts("created_at", nullable=False),
    sa.Index("ix_interactions_user_created", "user_id", "created_at"),
    sa.Index("ix_interactions_product_type", "product_id", "interaction_type"),
    sa.Index("ix_interactions_created", "created_at"),
)

product_reviews = sa.Table(
    "product_reviews",
    metadata,
    sa.Column("review_id", BIGID, primary_key=True, autoincrement=True),
    sa.Column("user_id", BIGID, nullable=False),
    sa.Column("product_id", BIGID, sa.ForeignKey("products.product_id"), nullable=False),
    sa.Column("rating", sa.SmallInteger(), nullable=False),
    sa.Column("comment", sa.Text()),
    _ts("created_at", nullable=False),
    sa.Index("ix_reviews_product", "product_id"),
)

order_items = sa.Table(
    "order_items",
    metadata,
    sa.Column("item_id", BIGID, primary_key=True, autoincrement=True),
    sa.Column("shop_order_id", BIGID, nullable=False),
    sa.Column("user_id", BIGID, nullable=False),
    sa.Column("product_id", BIGID, sa.ForeignKey("products.product_id"), nullable=False),
    sa.Column("quantity", sa.Integer(), nullable=False),
    sa.Column("purchase_price", MONEY, nullable=False),
    _ts("created_at", nullable=False),
    sa.Index("ix_order_items_user", "user_id", "created_at"),
    sa.Index("ix_order_items_product", "product_id"),
)

cart_items = sa.Table(
    "cart_items",
    metadata,
    sa.Column("item_id", BIGID, primary_key=True, autoincrement=True),
    sa.Column("user_id", BIGID, nullable=False),
    sa.Column("product_id", BIGID, sa.ForeignKey("products.product_id"), nullable=False),
    sa.Column("quantity", sa.Integer(), nullable=False),
    _ts("added_at", nullable=False),
    sa.Index("ix_cart_items_user", "user_id"),
)

# ---------------------------------------------------------------- toolkit's own tables

# One row per order: the ten core features and label history as known at feature_ts.
fraud_features = sa.Table(
    "fraud_features",
    metadata,
    sa.Column("order_id", BIGID, primary_key=True, autoincrement=False),
    sa.Column("wallet_id", BIGID, nullable=False),
    sa.Column("event_id", BIGID, nullable=False),
    _ts("feature_ts", nullable=False),
    sa.Column("txn_velocity_1h", sa.Double()),
    sa.Column("wallet_age_days", sa.Double()),
    sa.Column("avg_ticket_hold_time", sa.Double()),
    sa.Column("event_popularity_score", sa.Double()),
    sa.Column("price_deviation_ratio", sa.Double()),
    sa.Column("cross_event_attendance", sa.Double()),
    sa.Column("geo_velocity_flag", sa.Double()),
    sa.Column("payment_method_diversity", sa.Double()),
    sa.Column("social_graph_centrality", sa.Double()),
    sa.Column("time_to_first_resale", sa.Double()),
    sa.Column("wallet_labels_1d", sa.Double()),
    sa.Column("wallet_labels_7d", sa.Double()),
    sa.Column("wallet_labels_30d", sa.Double()),
    sa.Column("event_labels_1d", sa.Double()),
    sa.Column("event_labels_7d", sa.Double()),
    sa.Column("event_labels_30d", sa.Double()),
    sa.Column("payment_method", sa.String(32)),
    sa.Column("is_resale", sa.Boolean()),
    # The order's own label and when it became known; never a feature.
    sa.Column("label", sa.Boolean()),
    _ts("label_available_at"),
    _ts("computed_at", nullable=False),
    sa.Index("ix_fraud_features_ts", "feature_ts"),
    sa.Index("ix_fraud_features_wallet_ts", "wallet_id", "feature_ts"),
)

etl_watermarks = sa.Table(
    "etl_watermarks",
    metadata,
    sa.Column("job", sa.String(64), primary_key=True),
    _ts("watermark", nullable=False),
    _ts("updated_at", nullable=False),
)

model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("family", sa.String(32), nullable=False),
    sa.Column("artifact_path", sa.String(1024), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("metrics", JSON),
    sa.Column("params", JSON),
    sa.Column("features", JSON),
    sa.Column("input_example", JSON),
    sa.Column("dataset_ref", sa.String(1024)),
    _ts("created_at", nullable=False),
)

model_aliases = sa.Table(
    "model_aliases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("alias", sa.String(32), primary_key=True),
    sa.Column("version", sa.Integer(), nullable=False),
    _ts("updated_at", nullable=False),
    sa.ForeignKeyConstraint(["name", "version"], ["model_versions.name", "model_versions.version"]),
)

# Append-only: every move of an alias, who made it and from which version.
model_alias_history = sa.Table(
    "model_alias_history",
    metadata,
    sa.Column("id", BIGID, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("alias", sa.String(32), nullable=False),
    sa.Column("from_version", sa.Integer()),
    sa.Column("to_version", sa.Integer()),
    sa.Column("action", sa.String(16), nullable=False),  # promote | rollback | delete
    sa.Column("changed_by", sa.String(128), nullable=False),
    sa.Column("reason", sa.String(255)),
    _ts("changed_at", nullable=False),
    sa.Index("ix_alias_history_name", "name", "alias", "changed_at"),
)

training_runs = sa.Table(
    "training_runs",
    metadata,
    sa.Column("run_id", BIGID, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # running | ok | failed
    sa.Column("version", sa.Integer()),
    _ts("started_at", nullable=False),
    _ts("finished_at"),
    sa.Column("duration_seconds", sa.Double()),
    sa.Column("n_samples", sa.Integer()),
    sa.Column("n_features", sa.Integer()),
    sa.Column("class_distribution", JSON),
    sa.Column("metrics", JSON),
    sa.Column("last_error", sa.Text()),
    _ts("next_retry_at"),
    sa.Column("host", sa.String(128)),
    sa.Index("ix_training_runs_model_started", "model_name", "started_at"),
)

bandit_arms = sa.Table(
    "bandit_arms",
    metadata,
    sa.Column("bandit", sa.String(64), primary_key=True),
    sa.Column("arm", sa.String(32), primary_key=True),
    sa.Column("pulls", sa.BigInteger(), nullable=False, default=0),
    sa.Column("reward_sum", sa.Double(), nullable=False, default=0.0),
    sa.Column("reward_sq_sum", sa.Double(), nullable=False, default=0.0),
    sa.Column("alpha", sa.Double(), nullable=False, default=1.0),
    sa.Column("beta", sa.Double(), nullable=False, default=1.0),
    _ts("updated_at", nullable=False),
)

# Which state of the bandit Redis may serve: `generation` changes whenever the arms change
# in a way Redis did not receive (train, reset, a reward Redis missed); `database_id` is a
# random id written once, so Redis values of another database sharing the index are
# recognised. Every Redis value carries both.
bandit_generations = sa.Table(
    "bandit_generations",
    metadata,
    sa.Column("bandit", sa.String(64), primary_key=True),
    sa.Column("generation", sa.BigInteger(), nullable=False, default=1),
    sa.Column("database_id", sa.String(32), nullable=False),
    _ts("updated_at", nullable=False),
)

migration_progress = sa.Table(
    "migration_progress",
    metadata,
    sa.Column("migration_id", sa.String(64), primary_key=True),
    sa.Column("table_name", sa.String(128), primary_key=True),
    sa.Column("source_url", sa.String(512), nullable=False),  # masked
    sa.Column("status", sa.String(16), nullable=False),  # pending | copying | done | failed
    sa.Column("last_key", sa.String(255)),
    sa.Column("rows_copied", sa.BigInteger(), nullable=False, default=0),
    sa.Column("rows_total", sa.BigInteger()),
    _ts("updated_at", nullable=False),
)

# One row per `mlkit drift check`: the model, the windows compared and the verdict.
drift_checks = sa.Table(
    "drift_checks",
    metadata,
    sa.Column("check_id", BIGID, primary_key=True, autoincrement=True),
    sa.Column("model_ref", sa.String(96), nullable=False),  # name:version, never an alias
    sa.Column("reference", sa.String(1024)),  # the training snapshot compared against
    sa.Column("window_text", sa.String(32), nullable=False),  # as given, e.g. 7d
    _ts("window_start", nullable=False),
    _ts("window_end", nullable=False),
    sa.Column("reference_rows", sa.BigInteger(), nullable=False),
    sa.Column("current_rows", sa.BigInteger(), nullable=False),
    sa.Column("features_checked", sa.Integer(), nullable=False),
    sa.Column("features_drifted", sa.Integer(), nullable=False),
    sa.Column("drifted", sa.Boolean(), nullable=False),
    sa.Column("max_kl", sa.Double()),
    sa.Column("max_psi", sa.Double()),
    sa.Column("kl_threshold", sa.Double(), nullable=False),
    sa.Column("seconds", sa.Double()),
    _ts("checked_at", nullable=False),
    sa.Index("ix_drift_checks_checked", "checked_at"),
)

# Per feature of a check: PSI and KL on shared bins, and the size-aware test that was used.
drift_results = sa.Table(
    "drift_results",
    metadata,
    sa.Column("check_id", BIGID, sa.ForeignKey("drift_checks.check_id"), primary_key=True),
    sa.Column("feature", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # numeric | categorical
    sa.Column("psi", sa.Double()),
    sa.Column("kl", sa.Double()),
    sa.Column("test", sa.String(16), nullable=False),  # ks | wasserstein | chi2 | psi
    sa.Column("statistic", sa.Double()),
    sa.Column("p_value", sa.Double()),
    sa.Column("threshold", sa.Double(), nullable=False),
    sa.Column("drifted", sa.Boolean(), nullable=False),
    sa.Column("reasons", sa.String(64)),  # which measures crossed their threshold
    sa.Column("reference_mean", sa.Double()),
    sa.Column("current_mean", sa.Double()),
    sa.Column("reference_missing", sa.Double()),  # share of NULLs
    sa.Column("current_missing", sa.Double()),
)

# Alert rules as they fire and resolve: one row per episode, never one per evaluation.
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("alert_id", BIGID, primary_key=True, autoincrement=True),
    sa.Column("rule", sa.String(64), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # firing | resolved
    sa.Column("expression", sa.String(128), nullable=False),  # the rule's condition
    sa.Column("value", sa.Double()),  # the latest value seen while firing
    sa.Column("threshold", sa.Double(), nullable=False),
    sa.Column("message", sa.String(512), nullable=False),
    _ts("fired_at", nullable=False),
    _ts("last_seen_at", nullable=False),
    _ts("resolved_at"),
    sa.Index("ix_alerts_status_fired", "status", "fired_at"),
    sa.Index("ix_alerts_rule_status", "rule", "status"),
)

# The webhook's outbox: one row per `alerts check` that changed something, written with the
# alerts it reports, delivered oldest first; undelivered rows (delivered_at NULL) are
# retried by the next check.
alert_notifications = sa.Table(
    "alert_notifications",
    metadata,
    sa.Column("notification_id", BIGID, primary_key=True, autoincrement=True),
    sa.Column("payload", LONGTEXT, nullable=False),  # the JSON body
    _ts("queued_at", nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, default=0),
    _ts("last_attempt_at"),
    sa.Column("last_error", sa.String(512)),
    _ts("delivered_at"),
    sa.Index("ix_alert_notifications_pending", "delivered_at", "notification_id"),
)

# ---------------------------------------------------------------- demo truth (models never read it)

demo_worlds = sa.Table(
    "demo_worlds",
    metadata,
    sa.Column("run_id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("seed", sa.BigInteger(), nullable=False),
    sa.Column("families", sa.String(64), nullable=False),
    _ts("start_ts", nullable=False),
    _ts("end_ts", nullable=False),
    sa.Column("orders", sa.BigInteger(), nullable=False),
    sa.Column("params", JSON),
    _ts("created_at", nullable=False),
)

# The id ranges each demo period (and `demo stream` since) wrote per table: the fence that
# keeps seeding and `--replace` off every row no demo world wrote.
demo_world_rows = sa.Table(
    "demo_world_rows",
    metadata,
    sa.Column("run_id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("table_name", sa.String(64), primary_key=True),
    sa.Column("first_id", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("last_id", sa.BigInteger(), nullable=False),
)

demo_truth_orders = sa.Table(
    "demo_truth_orders",
    metadata,
    sa.Column("order_id", BIGID, primary_key=True, autoincrement=False),
    sa.Column("fraud_probability", sa.Double(), nullable=False),
    sa.Column("is_fraud", sa.Boolean(), nullable=False),
    sa.Column("pricing_arm", sa.String(16), nullable=False),
    sa.Column("conversion_probability", sa.Double(), nullable=False),
)

demo_truth_wallets = sa.Table(
    "demo_truth_wallets",
    metadata,
    sa.Column("wallet_id", BIGID, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(16), nullable=False),  # normal | scalper_bot | stolen_payment
    sa.Column("home_lat", sa.Double(), nullable=False),
    sa.Column("home_lon", sa.Double(), nullable=False),
    sa.Column("activity", sa.Double(), nullable=False),
)

demo_truth_pricing = sa.Table(
    "demo_truth_pricing",
    metadata,
    sa.Column("event_type", sa.String(32), primary_key=True),
    sa.Column("arm", sa.String(16), primary_key=True),
    sa.Column("conversion", sa.Double(), nullable=False),
    sa.Column("mean_price_ratio", sa.Double(), nullable=False),
    sa.Column("expected_revenue_ratio", sa.Double(), nullable=False),
    sa.Column("is_best", sa.Boolean(), nullable=False),
)

demo_truth_users = sa.Table(
    "demo_truth_users",
    metadata,
    sa.Column("user_id", BIGID, primary_key=True, autoincrement=False),
    sa.Column("gender", sa.String(1), nullable=False),
    sa.Column("categories", sa.String(128), nullable=False),
    sa.Column("colors", sa.String(128), nullable=False),
    sa.Column("materials", sa.String(128), nullable=False),
    sa.Column("price_level", sa.Double(), nullable=False),
    sa.Column("activity", sa.Double(), nullable=False),
)

demo_truth_regimes = sa.Table(
    "demo_truth_regimes",
    metadata,
    sa.Column("symbol", sa.String(20), primary_key=True),
    _ts("ts", nullable=False, primary_key=True),
    sa.Column("regime", sa.String(8), nullable=False),  # bull | bear | flat
    sa.Column("drift", sa.Double(), nullable=False),
    sa.Column("volatility", sa.Double(), nullable=False),
)

for _table in metadata.tables.values():
    # InnoDB for transactions and foreign keys, utf8mb4 so 4-byte characters survive.
    _table.dialect_kwargs["mysql_engine"] = "InnoDB"
    _table.dialect_kwargs["mysql_charset"] = "utf8mb4"

# What the demo generators knew: only toolkit/demo reads them, to grade models.
DEMO_TRUTH_TABLES = tuple(
    t for name, t in metadata.tables.items() if name.startswith("demo_truth_")
)
