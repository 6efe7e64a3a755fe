"""`mlkit export training-data`: JSON like the shop's endpoint, or CSV / Parquet files."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import Engine

from ..datasets import _atomic_write_text
from .data import export_document, load_shop_data, metadata


def write_export(
    engine: Engine, days: float, fmt: str, out: Path | None, generated_at: datetime
) -> dict | None:
    """Writes the window of `days` before `generated_at`; returns where and what (None when
    JSON went to stdout)."""
    data = load_shop_data(engine, days, now=generated_at)
    if fmt == "json":
        text = json.dumps(export_document(data, generated_at), default=str)
        if out is None:
            sys.stdout.write(text + "\n")
            return None
        _atomic_write_text(out, text)
        return {"path": str(out), "metadata": metadata(data, generated_at)}
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in (("products", data.products), ("interactions", data.interactions)):
        target = out / f"{name}.{fmt}"
        staging = target.with_name(f".{target.name}.tmp")
        if fmt == "csv":
            frame.to_csv(staging, index=False)
        else:
            frame.to_parquet(staging, index=False)
        staging.replace(target)
    info = metadata(data, generated_at)
    _atomic_write_text(out / "metadata.json", json.dumps(info, indent=2))
    return {"path": str(out), "metadata": info}


def export_training_data(engine: Engine, days: float, fmt: str, out: str | None) -> dict | None:
    """`mlkit export training-data`: `write_export` of the window ending now."""
    from ..clock import utcnow

    return write_export(engine, days, fmt, Path(out) if out else None, utcnow())
