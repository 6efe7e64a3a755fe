"""Names shared by the fraud pipeline's features, datasets and inspection."""

# Every feature is known at the order's timestamp: computed only from rows strictly earlier
# than the order, plus the order's own attributes (price, payment method, resale flag).
CORE_FEATURES = (
    "txn_velocity_1h",
    "wallet_age_days",
    "avg_ticket_hold_time",
    "event_popularity_score",
    "price_deviation_ratio",
    "cross_event_attendance",
    "geo_velocity_flag",
    "payment_method_diversity",
    "social_graph_centrality",
    "time_to_first_resale",
)
LABEL_HISTORY_WINDOWS_DAYS = (1, 7, 30)
LABEL_HISTORY_FEATURES = tuple(
    f"{scope}_labels_{days}d"
    for scope in ("wallet", "event")
    for days in LABEL_HISTORY_WINDOWS_DAYS
)
NUMERIC_FEATURES = CORE_FEATURES + LABEL_HISTORY_FEATURES
CATEGORICAL_FEATURES = ("payment_method", "is_resale")
FEATURES = NUMERIC_FEATURES + CATEGORICAL_FEATURES

# Columns of a fraud training set (a dataset snapshot), in order.
DATASET_KEYS = ("order_id", "wallet_id", "event_id", "event_ts", "feature_ts")
DATASET_COLUMNS = (*DATASET_KEYS, *FEATURES, "amount", "label", "label_available_at")

# Decisions a score maps to, mildest first; the flagged ones count as fraud in rates and
# alert rules (the dashboard's fraud rate and the `fraud_rate` alert share this).
DECISIONS = ("APPROVED", "REQUIRE_2FA", "MANUAL_REVIEW", "BLOCKED")
FLAGGED = ("MANUAL_REVIEW", "BLOCKED")
