"""`mlkit dashboard`: the Textual TUI (imported only when the command runs)."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import DatabaseOption, RedisOption, load_config, open_engine, options


def dashboard(
    ctx: typer.Context,
    refresh: Annotated[float, typer.Option("--refresh", help="Seconds between polls.")] = 2.0,
    database: DatabaseOption = None,
    redis: RedisOption = None,
) -> None:
    """Live fraud rates, bandit arms and training status from the database and Redis.

    Keys: r refresh, p pause, q quit, ? help, ctrl+p command palette. Panels whose source
    goes away say so and recover when it returns.

    Example: mlkit dashboard --refresh 2
    """
    from mlkit.toolkit.errors import MlkitError

    if refresh < 0.2:
        raise MlkitError(f"--refresh {refresh} is too fast", hint="poll at most 5 times a second")
    opts = options(ctx)
    opts.database_url = database or opts.database_url
    opts.redis_url = redis or opts.redis_url
    config = load_config(ctx, check_database=False)
    from mlkit.dashboard.app import Dashboard, leave_now

    # The URL is read and the engine made by the first poll, after the first paint. Not
    # connected first: the dashboard starts while the database is down and says so.
    def connect():
        config.check_database_url()
        return open_engine(ctx, config, check=False)

    app = Dashboard(connect, config.redis_url, refresh, config)
    app.run()
    if app.connect_error is not None:
        raise app.connect_error
    leave_now(app.return_code or 0)
