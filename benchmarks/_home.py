"""A fresh mlkit home for a benchmark: its config and engine, a new SQLite file unless a URL
is given."""

from __future__ import annotations

import tempfile
from pathlib import Path

from sqlalchemy.engine import Engine

from mlkit.toolkit.config import Config, load_config
from mlkit.toolkit.db import make_engine


def fresh_home(database: str | None = None) -> tuple[Config, Engine]:
    home = Path(tempfile.mkdtemp(prefix="mlkit-bench-"))
    url = database or f"sqlite:///{home}/bench.db"
    return load_config(database_url=url, env={"MLKIT_HOME": str(home)}), make_engine(url)
