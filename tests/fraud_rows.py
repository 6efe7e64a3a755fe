"""Reading the stored fraud features and adding a late label, shared by the feature, nightly
ETL and Spark equality tests."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import sqlalchemy as sa

from mlkit.toolkit import schema


def stored_features(engine) -> pd.DataFrame:
    """Every fraud_features row, by order id."""
    table = schema.fraud_features
    with engine.connect() as conn:
        return pd.read_sql(sa.select(table).order_by(table.c.order_id), conn)


def add_label(engine, order_id: int, wallet_id: int, available_at: datetime) -> None:
    """A confirmed chargeback on the order, known from `available_at`."""
    with engine.begin() as conn:
        conn.execute(
            schema.security_alerts.insert().values(
                order_id=order_id,
                wallet_id=wallet_id,
                alert_type="chargeback",
                severity="high",
                confirmed_fraud=True,
                label_available_at=available_at,
            )
        )
