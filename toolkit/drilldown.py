"""One order in detail, for the dashboard's drill-down: its features, latest score and
decision, the model's own per-feature contributions to that score (XGBoost's exact tree
contributions, `pred_contribs=True`; a logistic regression's coefficient times value), and
the buyer wallet's recent orders. Read on demand, never on the poll path."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from . import schema
from .errors import MlkitError
from .fraud.columns import FEATURES
from .monitor import latest

WALLET_HISTORY = 10
TOP_CONTRIBUTIONS = 8


def order_detail(engine: Engine, order_id: int, config=None) -> dict[str, Any]:
    """The order, its prediction and features, the contributions (None with the reason when
    the model cannot be loaded), its wallet's last orders."""
    o, p, f = schema.orders, schema.fraud_predictions, schema.fraud_features
    with engine.connect() as conn:
        order = conn.execute(sa.select(o).where(o.c.order_id == order_id)).first()
        if order is None:
            raise MlkitError(f"order {order_id} does not exist")
        prediction = conn.execute(
            sa.select(p).where(p.c.order_id == order_id).order_by((p.c.id + 0).desc()).limit(1)
        ).first()
        features = conn.execute(sa.select(f).where(f.c.order_id == order_id)).first()
        history = conn.execute(
            sa.select(
                o.c.order_id,
                o.c.created_at,
                o.c.price,
                o.c.status,
                o.c.is_resale,
                o.c.event_id,
                latest(p, o.c.order_id, "decision").label("decision"),
            )
            .where(o.c.buyer_wallet_id == order.buyer_wallet_id)
            .order_by(o.c.created_at.desc(), o.c.order_id.desc())
            .limit(WALLET_HISTORY)
        ).all()
    detail = {
        "order": order._asdict(),
        "prediction": prediction._asdict() if prediction is not None else None,
        "features": {name: getattr(features, name) for name in FEATURES} if features else None,
        "wallet_history": [row._asdict() for row in history],
        "contributions": None,
        "contributions_note": None,
    }
    if prediction is None or features is None:
        detail["contributions_note"] = "not scored yet" if prediction is None else "no features"
        return detail
    try:
        detail["contributions"], detail["contributions_unit"] = contributions(
            engine, prediction.model_version, features, config
        )
    except MlkitError as exc:
        detail["contributions_note"] = exc.message
    return detail


def contributions(engine: Engine, model_ref: str, features, config) -> tuple[list, str]:
    """The TOP_CONTRIBUTIONS strongest per-feature contributions of the model `model_ref` to
    the order's score, strongest first, and their unit."""
    import pandas as pd

    from .fraud.scoring import load_verified_model
    from .registry import resolve

    if config is None:
        raise MlkitError("no configuration: the model's artifact cannot be found")
    model = load_verified_model(resolve(engine, model_ref), config.artifacts_dir)
    frame = pd.DataFrame([{name: getattr(features, name) for name in FEATURES}])
    return strongest_contributions(model, frame)


def strongest_contributions(model, frame) -> tuple[list, str]:
    """The TOP_CONTRIBUTIONS strongest contributions of `model` to the score of the one row of
    `frame`, strongest first, and their unit."""
    return strongest(*model.contributions(frame))


def strongest(names: list[str], values, unit: str) -> tuple[list, str]:
    """The TOP_CONTRIBUTIONS strongest of one row's contributions (`values` of shape (1, n),
    as a model's `contributions` gives them), strongest first, and their unit."""
    pairs = sorted(zip(names, values[0].tolist(), strict=True), key=lambda item: -abs(item[1]))
    return [{"feature": n, "contribution": v} for n, v in pairs[:TOP_CONTRIBUTIONS]], unit
