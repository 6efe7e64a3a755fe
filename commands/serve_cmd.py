"""`mlkit serve`: the models online over HTTP (the web app lives in mlkit.service)."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import load_config, options


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 5001,
    workers: Annotated[int, typer.Option("--workers", help="Worker processes.")] = 1,
) -> None:
    """Serve fraud scores, pricing, recommendations and signals over HTTP (FastAPI on
    uvicorn), each worker keeping its models loaded and reloading them when an alias moves.

    Endpoints: POST /api/fraud/score, GET /api/pricing/recommend?event_id=, POST
    /api/pricing/reward, GET /api/recommendations/product/ID?n=, /user/ID, /popular, GET
    /api/model/info, POST /api/retrain?days=, GET /api/signals/SYMBOL[/status], GET /health,
    GET /metrics. Starts while the database is down (/health answers 503 until it is back).

    Example: mlkit serve --host 0.0.0.0 --port 5001 --workers 2
    """
    from mlkit.service.server import run

    load_config(ctx)  # a bad configuration is one error line before anything listens
    opts = options(ctx)
    run(
        host,
        port,
        workers,
        config_path=opts.config_path,
        database_url=opts.database_url,
        redis_url=opts.redis_url,
    )
