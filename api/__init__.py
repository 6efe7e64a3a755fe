"""mlkit's Python API, for those who call it in-process:

    from mlkit import FraudScorer, Bandit, Recommender, open_world

    config, engine = open_world()              # the configuration and engine the CLI uses
    scorer = FraudScorer(engine, config)       # fraud@prod, reloaded when the alias moves
    scorer.score({"buyer_wallet_id": 12, "event_id": 3, "price": 80,
                  "payment_method": "paypal", "created_at": "2026-03-01T12:00:00"})
    Bandit(engine, config).recommend(42)
    Recommender(engine, config).similar(1, n=5)

The same objects `mlkit serve` uses (`mlkit.toolkit.serving`); imported on first use, so
importing mlkit (and `mlkit --help`) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlkit.toolkit.serving import Bandit, FraudScorer, Recommender, Service

__all__ = ["Bandit", "FraudScorer", "Recommender", "Service", "open_world"]


def open_world(
    config_path: str | None = None,
    *,
    database_url: str | None = None,
    redis_url: str | None = None,
) -> tuple[Any, Any]:
    """The effective configuration (flag > environment > config.yaml > defaults) and an
    engine on its database, as every command opens them."""
    from mlkit.toolkit.config import load_config
    from mlkit.toolkit.db import config_engine

    config = load_config(config_path, database_url=database_url, redis_url=redis_url)
    return config, config_engine(config)


def __getattr__(name: str) -> Any:
    if name in ("Bandit", "FraudScorer", "Recommender", "Service"):
        from mlkit.toolkit import serving

        return getattr(serving, name)
    raise AttributeError(f"module 'mlkit' has no attribute {name!r}")
