"""Running the app: uvicorn with N worker processes, each building its own Service from the
environment (the CLI's --config, --database and --redis are passed down through it)."""

from __future__ import annotations

import os
import tempfile

from mlkit.toolkit.errors import MlkitError


def run(
    host: str,
    port: int,
    workers: int,
    *,
    config_path: str | None = None,
    database_url: str | None = None,
    redis_url: str | None = None,
) -> None:
    """Serve `app.create_app` on host:port until interrupted."""
    import uvicorn

    if not 1 <= port <= 65535:
        raise MlkitError(f"--port {port} is out of range", hint="a TCP port, 1 to 65535")
    if not 1 <= workers <= 64:
        raise MlkitError(f"--workers {workers} is out of range", hint="1 to 64 processes")
    # One order at a time: XGBoost's OpenMP team costs a single-row prediction ~100 ms on
    # a busy 2-core machine against ~15 ms on one thread; workers scale across cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    for name, value in (
        ("MLKIT_CONFIG", config_path),
        ("MLKIT_DATABASE_URL", database_url),
        ("MLKIT_REDIS_URL", redis_url),
    ):
        if value:
            os.environ[name] = value
    with tempfile.TemporaryDirectory(prefix="mlkit-metrics-") as shared:
        if workers > 1:  # each worker writes its series there; /metrics sums them
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared
        uvicorn.run(
            "mlkit.service.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            access_log=False,
        )
