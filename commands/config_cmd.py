"""`mlkit config`: what configuration is in effect."""

from __future__ import annotations

import typer

from ._common import JsonFlag, emit_json, load_config, stdout_console

app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True)


@app.command("show")
def show(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Print the effective configuration, every password masked.

    Example: DB_HOST=db.internal mlkit config show --json
    """
    document = load_config(ctx).masked()
    if as_json:
        emit_json(document)
        return
    import yaml
    from rich.syntax import Syntax

    effective = document.pop("effective")
    console = stdout_console()
    console.print(f"# config file: {effective.pop('config_file') or '(none, built-in defaults)'}")
    for key, value in effective.items():
        console.print(f"# {key}: {value}")
    console.print(
        Syntax(yaml.safe_dump(document, sort_keys=False), "yaml", background_color="default")
    )
