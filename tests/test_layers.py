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
                ("mlkit.commands", "mlkit.dashboard", "mlkit.service")
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


# Shared command helpers, not commands: every command may use them.
COMMAND_HELPERS = ("_common", "_render")


def command_imports(path: Path) -> set[str]:
    """What a module imports, relative imports of the commands package named in full."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = imported_roots(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                names.add(f"mlkit.commands.{node.module}")
            else:
                names.update(f"mlkit.commands.{alias.name}" for alias in node.names)
    return names


def test_commands_import_no_other_command_nor_sqlalchemy():
    offenders = []
    for path in sorted((ROOT / "commands").glob("*.py")):
        for name in command_imports(path):
            module = name.removeprefix("mlkit.commands.").split(".")[0]
            other_command = name.startswith("mlkit.commands.") and module not in (
                *COMMAND_HELPERS,
                path.stem,
            )
            if path.name == "main.py" and other_command:
                continue  # the root app joins every command's sub-app
            if other_command or name.split(".")[0] == "sqlalchemy":
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_the_dashboard_imports_no_command():
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / "dashboard").rglob("*.py"))
        for name in imported_roots(path)
        if name.startswith("mlkit.commands")
    ]
    assert offenders == []


def test_the_web_service_and_the_python_api_import_no_command_nor_ui():
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for folder in ("service", "api")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for name in imported_roots(path)
        if name.startswith(("mlkit.commands", "mlkit.dashboard"))
        or name.split(".")[0] in FORBIDDEN_IN_TOOLKIT
    ]
    assert offenders == []
