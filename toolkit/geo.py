"""Distances on the globe, shared by the fraud features (batch and online) and the demo world."""

from __future__ import annotations

import numpy as np

EARTH_RADIUS_KM = 6371.0
# Faster than an airliner between two orders: the geo-velocity flag.
JET_SPEED_KMH = 900.0


def haversine_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance in km, element-wise (arrays broadcast)."""
    lat1, lon1, lat2, lon2 = (
        np.radians(np.asarray(v, dtype=float)) for v in (lat1, lon1, lat2, lon2)
    )
    a = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
