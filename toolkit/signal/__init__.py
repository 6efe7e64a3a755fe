"""The signal family: market data ingest, technical indicators, CatBoost SELL / HOLD / BUY
signals with feature selection, automatic initial training and an SMA/RSI fallback."""
