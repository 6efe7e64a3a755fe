"""Names shared by the fraud pipeline's features, datasets and inspection."""

# Every feature is known at the order's timestamp: computed only from rows strictly earlier
# than the order, plus the order's own attributes (price, payment method, resale flag).
# "Before t" means strictly earlier than the order's timestamp t; units in brackets.
CORE_FEATURES = (
    "txn_velocity_1h",  # the wallet's orders (any status) in [t - 1 h, t)
    "wallet_age_days",  # t minus the wallet's creation time [days]
    # mean time the wallet held a ticket before reselling it, over its resales completed
    # before t [hours]; NaN without past resales
    "avg_ticket_hold_time",
    "event_popularity_score",  # the event's completed primary sales before t / its capacity
    "price_deviation_ratio",  # price / event base price - 1
    "cross_event_attendance",  # distinct events the wallet completed a purchase for before t
    # 1 when the implied speed from the wallet's previous order (before t) exceeds jet speed,
    # else 0; NaN without a previous order or location
    "geo_velocity_flag",
    # distinct payment methods over the wallet's orders before t and this order's own
    "payment_method_diversity",
    # the wallet's degree in the ticket-transfer graph before t (distinct counterparties):
    # a degree updates per edge, where other centralities need the whole graph per order
    "social_graph_centrality",
    # for the wallet's first resale completed before t, the time from buying that ticket to
    # reselling it [hours]; never the current ticket's own future
    "time_to_first_resale",
)
# {wallet,event}_labels_{w}d: fraud labels on the wallet's orders / the event's orders that
# became available in [t - w days, t), the order's own label excluded.
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
FLAGGED = DECISIONS[2:]
BLOCKED = DECISIONS[-1]


def flagged_count(decisions: dict) -> int:
    """Orders blocked or sent to review, from counts per decision."""
    return sum(decisions.get(decision, 0) for decision in FLAGGED)
