"""`mlkit validate`: may this model version serve?"""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import JsonFlag, emit_json, load_context, stdout_console

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
    from mlkit.toolkit.validation import validate_ref

    config, engine = load_context(ctx)
    report = validate_ref(engine, config, ref, min_auc_pr=min_auc_pr)
    if as_json:
        emit_json(report.as_dict())
    else:
        console = stdout_console()
        for check in report.checks:
            console.print(f"{'✓' if check.ok else '✗'} {check.name}: {check.detail}")
    failure = report.failure()
    if failure is not None:
        raise failure
