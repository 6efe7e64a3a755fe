"""How values are written out: JSON-safe documents and human times, one way everywhere."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime, time
from pathlib import Path
from typing import Any


def json_safe(value: Any, *, exact: bool = False) -> Any:
    """Plain JSON types (numpy unwrapped, missing values and NaN as None, times ISO, bytes as
    {"hex": ...}); with `exact`, what JSON cannot hold stays as its repr, for reject files.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return repr(value) if exact else None
    if isinstance(value, bytes | bytearray | memoryview):
        return {"hex": bytes(value).hex()}
    if exact:
        return value.isoformat() if isinstance(value, datetime | date | time) else repr(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, set | frozenset):
        return [json_safe(v) for v in sorted(value, key=str)]
    if type(value).__name__ in ("NAType", "NaTType"):  # pandas' missing values
        return None
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if type(value).__name__ == "Timedelta":  # pandas
        return value.total_seconds()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return json_safe(value.tolist())
    if hasattr(value, "isoformat"):  # pandas Timestamp
        return value.isoformat()
    return str(value)


def when(value: datetime | None) -> str:
    """A UTC moment for people: `2026-12-06 21:00:00 UTC`, or `-` for never."""
    return f"{value:%Y-%m-%d %H:%M:%S} UTC" if value else "-"


def version_label(value: int | None) -> str:
    """A model version for people: `v3`, or `-` for none."""
    return "-" if value is None else f"v{value}"
