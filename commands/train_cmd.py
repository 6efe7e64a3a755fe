"""`mlkit train`: train a model family and register the result."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import JsonFlag, emit_json, load_config, stdout_console

app = typer.Typer(help="Train models and register them.", no_args_is_help=True)


@app.command("fraud")
def fraud(
    ctx: typer.Context,
    dataset: Annotated[
        str, typer.Option("--dataset", help="latest, current or a snapshot PATH.")
    ] = "latest",
    model: Annotated[str, typer.Option("--model", help="xgboost or logreg.")] = "xgboost",
    alias: Annotated[
        str | None,
        typer.Option(
            "--alias", help="Alias to move to the new version if it validates; '' for none."
        ),
    ] = "candidate",
    force: Annotated[bool, typer.Option("--force", help="Ignore a failure cooldown.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Train the fraud model on a time-ordered split and register it.

    Train / validation / test by time with a label-delay gap; XGBoost (positives
    up-weighted, early stopping on validation AUC-PR, Platt-calibrated) or the logreg
    Pipeline baseline. On demo data the test metrics sit beside oracle_auc_pr, the true
    probabilities' score. Builds a dataset first when there is none.

    Example: mlkit train fraud --model xgboost --alias candidate --json
    """
    from mlkit.toolkit.db import make_engine
    from mlkit.toolkit.fraud.pipeline import train_fraud_model

    config = load_config(ctx)
    result = train_fraud_model(
        make_engine(config.database_url),
        config,
        dataset=dataset,
        kind=model,
        alias=alias or None,
        force=force,
    )
    if as_json:
        emit_json(result)
        return
    m = result["metrics"]
    oracle = f", oracle AUC-PR {m['oracle_auc_pr']:.4f}" if "oracle_auc_pr" in m else ""
    stdout_console().print(
        f"fraud:{result['version']} ({result['kind']}): test AUC-PR {m['auc_pr']:.4f}{oracle}, "
        f"AUC-ROC {m['auc_roc']:.4f}, F1 {m['f1']:.4f} at {m['threshold']:.3f}"
        + (f"; {result['alias']} -> v{result['version']}" if result["alias"] else "")
    )
