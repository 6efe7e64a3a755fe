"""What one demo generation run is asked for; shared by every family's generator."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

FAMILIES = ("fraud", "pricing", "signal", "recommender")
# Names accepted by `--shift NAME=FACTOR` and what each one scales.
SHIFTS = {
    "price": "event base prices and order prices",
    "fraud": "the share of orders placed by fraudulent wallets",
    "volume": "the number of orders, interactions and market volume per day",
    "volatility": "market volatility",
}


@dataclass(frozen=True)
class DemoParams:
    """One generation period: the first seed (period 0) or an `--append` (period 1, 2, ...)."""

    seed: int
    orders: int  # ticket orders to generate in this period (primary sales + resales)
    days: float
    start: datetime  # naive UTC; the period covers [start, start + days)
    families: tuple[str, ...] = FAMILIES
    shift: dict[str, float] = field(default_factory=dict)
    period: int = 0
    # Size of the world at period 0; an append keeps the world of its first seed.
    world_orders: int = 0

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)

    def factor(self, name: str) -> float:
        return float(self.shift.get(name, 1.0))

    def rng(self, family: str) -> np.random.Generator:
        """A generator stream per (seed, period, family): families never disturb each other."""
        salt = sum(ord(c) * 131**i for i, c in enumerate(family)) % (2**31)
        return np.random.default_rng([self.seed, self.period, salt])
