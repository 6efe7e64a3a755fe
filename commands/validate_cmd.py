"""`mlkit validate`: may this model version serve?"""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import JsonFlag, emit_json, load_config, open_engine, stdout_console

app = typer.Typer(help="Validate model artifacts.", no_args_is_help=True)


@app.command("model")
def model(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="fraud@prod, fraud:3 or fraud (latest).")],
    min_auc_pr: Annotated[
        float | None, typer.Option("--min-auc-pr", help="Gate [default: fraud.min_auc_pr].")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Check sha256, loading, the feature list, a prediction on the stored input example
    and the metric gates. Exit 1 naming the failing checks.

    Example: mlkit validate model fraud@candidate --min-auc-pr 0.5
    """
    from mlkit.toolkit.errors import MlkitError
    from mlkit.toolkit.registry import resolve
    from mlkit.toolkit.validation import validate_version

    config = load_config(ctx)
    mv = resolve(open_engine(ctx, config), ref)
    checks = validate_version(mv, config, min_auc_pr=min_auc_pr)
    failed = [c for c in checks if not c.ok]
    if as_json:
        emit_json(
            {
                "model": f"{mv.name}:{mv.version}",
                "ok": not failed,
                "checks": [c.__dict__ for c in checks],
            }
        )
    else:
        console = stdout_console()
        for check in checks:
            console.print(f"{'✓' if check.ok else '✗'} {check.name}: {check.detail}")
    if failed:
        raise MlkitError(
            f"{mv.name}:{mv.version} failed " + ", ".join(c.name for c in failed),
            hint="; ".join(c.detail for c in failed),
        )
