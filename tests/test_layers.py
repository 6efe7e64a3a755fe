"""The layers' direction: toolkit never imports the command line or the dashboard."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_TOOLKIT = ("typer", "textual", "rich", "click")


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_toolkit_source_never_imports_ui_libraries_or_upper_layers():
    offenders = []
    for path in sorted((ROOT / "toolkit").rglob("*.py")):
        for name in imported_roots(path):
            root = name.split(".")[0]
            if root in FORBIDDEN_IN_TOOLKIT or name.startswith(
                ("mlkit.commands", "mlkit.dashboard")
            ):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_importing_every_toolkit_module_loads_no_ui_library():
    modules = [
        "mlkit.toolkit." + ".".join(p.relative_to(ROOT / "toolkit").with_suffix("").parts)
        for p in sorted((ROOT / "toolkit").rglob("*.py"))
        if p.name != "__init__.py"
    ]
    probe = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print([m for m in {FORBIDDEN_IN_TOOLKIT!r} if m in sys.modules])\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
