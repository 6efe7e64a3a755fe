"""The ticketing world's fixed facts: cities, event types, the pricing truth, the buyers'
shares and the true fraud logit."""

from __future__ import annotations

import numpy as np

DAY = 86_400
HOUR = 3_600

# ---------------------------------------------------------------- the world's fixed facts

# City, country, lat, lon and relative size: homes, venues and where orders come from.
_CITY_TABLE = """
New York      US   40.71   -74.01  9
Los Angeles   US   34.05  -118.24  6
Chicago       US   41.88   -87.63  4
Toronto       CA   43.65   -79.38  4
Mexico City   MX   19.43   -99.13  5
Sao Paulo     BR  -23.55   -46.63  5
Buenos Aires  AR  -34.60   -58.38  3
London        GB   51.51    -0.13  8
Paris         FR   48.86     2.35  6
Berlin        DE   52.52    13.40  5
Frankfurt     DE   50.11     8.68  2
Madrid        ES   40.42    -3.70  4
Rome          IT   41.90    12.50  3
Amsterdam     NL   52.37     4.90  3
Stockholm     SE   59.33    18.07  2
Warsaw        PL   52.23    21.01  2
Prague        CZ   50.08    14.44  2
Istanbul      TR   41.01    28.98  4
Dubai         AE   25.20    55.27  3
Cairo         EG   30.04    31.24  2
Lagos         NG    6.52     3.38  2
Johannesburg  ZA  -26.20    28.05  2
Mumbai        IN   19.08    72.88  4
Singapore     SG    1.35   103.82  4
Bangkok       TH   13.76   100.50  3
Hong Kong     HK   22.32   114.17  3
Seoul         KR   37.57   126.98  5
Tokyo         JP   35.68   139.69  7
Sydney        AU  -33.87   151.21  4
Melbourne     AU  -37.81   144.96  3
"""
_CITY_ROWS = [line.rsplit(None, 4) for line in _CITY_TABLE.strip().splitlines()]
CITY_NAMES = np.array([row[0] for row in _CITY_ROWS], dtype=object)
CITY_COUNTRIES = np.array([row[1] for row in _CITY_ROWS], dtype=object)
CITY_LAT = np.array([float(row[2]) for row in _CITY_ROWS])
CITY_LON = np.array([float(row[3]) for row in _CITY_ROWS])
CITY_SHARE = np.array([float(row[4]) for row in _CITY_ROWS])
CITY_SHARE /= CITY_SHARE.sum()
N_CITIES = len(_CITY_ROWS)

EVENT_TYPES = ("concert", "sports", "theatre", "festival", "conference")
_EVENT_TYPE_SHARE = np.array([0.34, 0.24, 0.18, 0.09, 0.15])
_BASE_PRICE_MEDIAN = np.array([80.0, 70.0, 65.0, 95.0, 110.0])
_BASE_PRICE_SD = 0.2  # of log base price within a type
_POPULARITY_SD = 0.5  # of log popularity: some hits, many quieter events
_SALE_WINDOW_DAYS = np.array([28.0, 14.0, 21.0, 45.0, 35.0])
_CAPACITY_MEDIAN = np.array([5_000, 25_000, 900, 30_000, 1_500])
_VENUE_KINDS = np.array(
    [
        ("Arena", "Music Hall", "Club"),
        ("Stadium", "Arena", "Ballpark"),
        ("Theatre", "Opera House", "Playhouse"),
        ("Park", "Fairgrounds", "Showgrounds"),
        ("Convention Center", "Expo Center", "Congress Hall"),
    ],
    dtype=object,
)
_BAND_WORDS = (
    np.array(
        [
            "Neon",
            "Velvet",
            "Silver",
            "Midnight",
            "Electric",
            "Golden",
            "Crimson",
            "Wild",
            "Lunar",
            "Static",
            "Paper",
            "Hollow",
        ],
        dtype=object,
    ),
    np.array(
        [
            "Wolves",
            "Tides",
            "Echoes",
            "Harbor",
            "Machines",
            "Satellites",
            "Roses",
            "Parade",
            "Ghosts",
            "Rivers",
        ],
        dtype=object,
    ),
)
_TEAM_WORDS = np.array(
    ["Lions", "Falcons", "United", "Rangers", "Comets", "Sharks", "Titans", "Royals"], dtype=object
)
_PLAYS = np.array(
    [
        "Hamlet",
        "The Seagull",
        "A Doll's House",
        "The Tempest",
        "Cabaret",
        "The Cherry Orchard",
        "Macbeth",
        "Twelfth Night",
        "The Glass Menagerie",
        "Waiting for Godot",
    ],
    dtype=object,
)
_FESTIVAL_WORDS = np.array(
    ["Summer", "Winter", "Sound", "Lights", "Open Air", "Jazz"], dtype=object
)
_CONFERENCE_TOPICS = np.array(
    ["Web3", "AI", "Fintech", "DevOps", "Data", "Cloud", "Security", "Blockchain"], dtype=object
)

# ---------------------------------------------------------------- pricing truth

ARMS = ("baseline", "surge_pricing", "early_bird", "ml_pricing")
# demo_truth_orders.pricing_arm of a resale: the seller set that price, no platform strategy.
RESALE_ARM = "resale"
_RESALE_INDEX = len(ARMS)
# The multiplier each strategy applies to the base price; baseline is exactly 1.
_ARM_MULTIPLIER = np.array([[1.0, 1.0], [1.15, 1.5], [0.7, 0.92], [0.96, 1.08]])
# Mostly uniform exploration, a little extra traffic on the platform's current favourite.
_ARM_SHARE = np.array([0.2375, 0.2375, 0.2375, 0.2875])
# True conversion per (event type, arm). Revenue per offer = conversion x mean price ratio,
# so the best arm is surge for concerts, ML pricing for sports and conferences, baseline for
# theatre and early bird for festivals: for sports and theatre it is neither the arm that
# converts best nor the most expensive one.
TRUE_CONVERSION = np.array(
    [
        [0.50, 0.45, 0.58, 0.51],  # concert
        [0.46, 0.30, 0.54, 0.52],  # sports
        [0.50, 0.28, 0.55, 0.45],  # theatre
        [0.38, 0.22, 0.60, 0.38],  # festival
        [0.34, 0.27, 0.38, 0.40],  # conference
    ]
)
_EVENT_CONVERSION_SD = 0.15  # per-event shift of every arm's conversion, on the logit scale
RESALE_COMPLETION = 0.93

# ---------------------------------------------------------------- buyers

KINDS = ("normal", "scalper_bot", "stolen_payment")
NORMAL, BOT, STOLEN = 0, 1, 2
_CREDIT_CARD, _CRYPTO = 0, 2
_NORMAL_METHOD_SHARE = np.array([0.34, 0.22, 0.08, 0.17, 0.14, 0.05])
COMPLETED, FAILED, PENDING, REFUNDED = 0, 1, 2, 3

# Share of primary orders placed by each fraudulent kind (times the `fraud` shift).
_BOT_ORDER_SHARE = 0.035
_STOLEN_ORDER_SHARE = 0.012
RESALE_SHARE = 0.04
_FOLLOW_UP_SHARE = 0.18  # normal orders that are a second ticket minutes after the first
_TRAVEL_SHARE = 0.03
_GIFT_SHARE = 0.015
_REFUND_SHARE = 0.004
_QUICK_RESALE_SECONDS = 48 * HOUR
_FLAT_DEMAND = 0.3  # share of a sale's demand spread evenly; the rest ramps up to the date
_POPCOUNT = np.array([bin(i).count("1") for i in range(64)])  # of a 6-bit payment-method mask

# True fraud logit: an intercept, terms an order's features can see before it is placed and
# the latent kind of the wallet acting (the seller of a resale), which its behaviour betrays.
# No private per-order noise: the truth is the best probability anyone could know, so the
# oracle it gives is one a model can approach, not one that knows what no data shows.
_FRAUD_LOGIT = {
    "intercept": -7.0,
    "log_velocity_1h": 1.1,  # log1p(orders of the buyer in the previous hour)
    "youth": 0.6,  # log(30 days / wallet age), floored at 0
    "extra_payment_methods": 1.0,  # distinct methods used before, beyond the first
    "jet_speed": 2.0,  # faster than a plane since the previous order
    "resale_markup": 1.3,  # resale price above 1.3x face value
    "log_quick_resales": 0.6,  # log1p(the actor's tickets resold within 48 h, before)
}
_KIND_LOGIT = np.array([0.0, 1.8, 2.8])

# Public first octets of residential ISPs and of hosting providers (bots rent those).
_RESIDENTIAL_OCTETS = np.array(
    [
        24,
        31,
        37,
        46,
        62,
        66,
        71,
        76,
        78,
        81,
        82,
        84,
        86,
        88,
        90,
        92,
        95,
        98,
        109,
        121,
        151,
        176,
        178,
        188,
        201,
        212,
        217,
    ]
)
_HOSTING_OCTETS = np.array([34, 35, 45, 104, 138, 139, 159, 185, 193])

# Local hour-of-day weights (0..23): quiet nights, lunch and evening peaks.
_HOURLY = np.array(
    [
        0.15,
        0.10,
        0.07,
        0.05,
        0.05,
        0.07,
        0.15,
        0.30,
        0.45,
        0.55,
        0.65,
        0.70,
        0.80,
        0.75,
        0.70,
        0.70,
        0.75,
        0.85,
        0.95,
        1.00,
        1.00,
        0.90,
        0.60,
        0.30,
    ]
)

# Tables whose ids this module assigns, and their id column.
ID_COLUMNS = {
    "wallets": "wallet_id",
    "events": "event_id",
    "tickets": "ticket_id",
    "orders": "order_id",
    "ticket_transfers": "transfer_id",
    "security_alerts": "alert_id",
    "bot_detection": "detection_id",
    "security_events": "id",
    "admin_audit_log": "id",
}

# Columns of TicketingState.wallets.
STATE_WALLET_COLUMNS = (
    "wallet_id",
    "address",
    "country",
    "created_at",
    "kind",
    "home_lat",
    "home_lon",
    "activity",
    "last_order_at",
    "last_geo_lat",
    "last_geo_lon",
    "payment_methods_mask",
    "quick_resales",
)


# Columns of TicketingState.events: the events table's, and the tickets sold so far.
EVENT_STATE_COLUMNS = (
    "event_id",
    "event_type",
    "city",
    "venue_lat",
    "venue_lon",
    "base_price",
    "capacity",
    "sale_start",
    "event_date",
    "created_at",
    "name",
    "venue",
    "sold",
)
