"""`mlkit dashboard`: the Textual TUI (imported only when the command runs)."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import load_config


def dashboard(
    ctx: typer.Context,
    refresh: Annotated[float, typer.Option("--refresh", help="Seconds between polls.")] = 2.0,
    database: Annotated[
        str | None, typer.Option("--database", help="Database URL (else the configured one).")
    ] = None,
    redis: Annotated[
        str | None, typer.Option("--redis", help="Redis URL (else the configured one).")
    ] = None,
) -> None:
    """Live fraud rates, bandit arms and training status from the database and Redis.

    Keys: r refresh, p pause, q quit, ? help, ctrl+p command palette. Panels whose source
    goes away say so and recover when it returns.

    Example: mlkit dashboard --refresh 2
    """
    from mlkit.toolkit.errors import MlkitError

    if refresh < 0.2:
        raise MlkitError(f"--refresh {refresh} is too fast", hint="poll at most 5 times a second")
    config = load_config(ctx)
    from mlkit.dashboard.app import Dashboard

    Dashboard(database or config.database_url, redis or config.redis_url, refresh).run()
