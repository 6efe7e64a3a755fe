"""Every source package is declared, so a non-editable install ships all of it."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_python_folder_is_a_declared_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = {folder: name for name, folder in config["package-dir"].items()}
    assert set(declared.values()) == set(config["packages"])
    for layer in ("toolkit", "commands", "dashboard", "service", "api"):
        for init in (ROOT / layer).rglob("__init__.py"):
            folder = init.parent.relative_to(ROOT).as_posix()
            assert folder in declared, f"{folder} is not in [tool.setuptools] package-dir"
