"""A reproducible NFT-ticketing world for the fraud and pricing demo families.

`generate` makes one period; `read_state` reads back what an `--append` needs to continue it.
Wallets have a latent kind (normal, scalper bot, stolen payment) that shows only through behaviour;
times are int64 seconds after the period's origin until the frames are built.
"""

from ...inputs import ORDER_STATUSES as STATUSES
from ...inputs import PAYMENT_METHODS
from .facts import (
    ARMS,
    CITY_COUNTRIES,
    CITY_LAT,
    CITY_LON,
    CITY_NAMES,
    CITY_SHARE,
    EVENT_STATE_COLUMNS,
    EVENT_TYPES,
    ID_COLUMNS,
    KINDS,
    N_CITIES,
    RESALE_ARM,
    RESALE_SHARE,
    STATE_WALLET_COLUMNS,
    TRUE_CONVERSION,
)
from .period import generate
from .state import TicketingState, read_state

__all__ = [
    "ARMS",
    "CITY_COUNTRIES",
    "CITY_LAT",
    "CITY_LON",
    "CITY_NAMES",
    "CITY_SHARE",
    "EVENT_STATE_COLUMNS",
    "EVENT_TYPES",
    "ID_COLUMNS",
    "KINDS",
    "N_CITIES",
    "PAYMENT_METHODS",
    "RESALE_ARM",
    "RESALE_SHARE",
    "STATE_WALLET_COLUMNS",
    "STATUSES",
    "TRUE_CONVERSION",
    "TicketingState",
    "generate",
    "read_state",
]
