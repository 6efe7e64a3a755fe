"""`mlkit score` (batch) and `mlkit predict` (one order)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ._common import (
    EngineOption,
    JsonFlag,
    ModelOption,
    SinceOption,
    emit_json,
    load_context,
    stdout_console,
)

score_app = typer.Typer(help="Batch-score orders into fraud_predictions.", no_args_is_help=True)
predict_app = typer.Typer(help="Score one order with online features.", no_args_is_help=True)

OrderArgument = Annotated[
    str | None, typer.Argument(help="The order as JSON; '-' or nothing reads stdin.")
]


@score_app.command("fraud")
def score_fraud(
    ctx: typer.Context,
    since: SinceOption = None,
    model: ModelOption = "fraud@prod",
    no_etl: Annotated[
        bool, typer.Option("--no-etl", help="Score the stored features without catching up.")
    ] = False,
    engine_name: EngineOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Score orders and write score, decision, features and model version to
    fraud_predictions; re-running replaces that version's rows instead of adding more.
    With `outputs.fraud_predictions` in the config, the same rows go to the platform's own
    table in its shape, in the same transaction.

    The features are caught up first (as `mlkit etl run --since last`), so orders placed
    since the last ETL are scored too. A window without orders is not an error: it says
    there is nothing to score.

    `--engine spark` scores on Apache Spark (features read over JDBC in ranges, predictions
    staged, then the same replace in one transaction); `auto` picks Spark above
    engine.auto_rows orders.

    Example: mlkit score fraud --since 1d --model fraud@prod
    """
    from mlkit.toolkit.spark.score import score_configured

    config, engine = load_context(ctx)
    result, reason = score_configured(
        engine, config, model, since=since, catch_up=not no_etl, requested=engine_name
    )
    document = {**result.as_dict(), "engine": reason}
    if as_json:
        emit_json(document)
        return
    if engine_name or config.get("engine.name") != "local":
        stdout_console().print(reason)
    if not document["rows"]:
        stdout_console().print(
            f"{document['model']}: nothing to score: no orders since "
            f"{document['since'] or 'the beginning'}"
            + ("" if not no_etl else " with features (drop --no-etl to compute them first)")
        )
        return
    stdout_console().print(
        f"{document['model']}: {document['rows']:,} orders scored "
        f"({document['orders_per_second_predict']:,} orders/s predicting) in "
        f"{document['seconds']} s: "
        + ", ".join(f"{k} {v:,}" for k, v in document["decisions"].items())
        + (
            f"; {document['output']['rows']:,} rows into {document['output']['table']}"
            if document["output"]
            else ""
        )
    )


@predict_app.command("fraud")
def predict_fraud(
    ctx: typer.Context,
    order: OrderArgument = None,
    model: ModelOption = "fraud@prod",
) -> None:
    """Score one order: online features (Redis when fresh, else the database), the model,
    the decision. Prints {"fraud_score", "decision", "model_version", "features",
    "feature_source", "top_contributions"} (what `mlkit serve`'s POST /api/fraud/score
    answers).

    The order is checked first: ids are positive integers, price a finite number above 0
    (below 1,000,000,000), payment_method a known method, created_at an ISO moment (an
    offset is converted to UTC), is_resale a boolean, geo_lat/geo_lon degrees in range; a
    bad field is one error line naming it, and exit 1.

    Example: mlkit predict fraud '{"buyer_wallet_id": 12, "event_id": 3, "price": 80,
             "payment_method": "paypal", "created_at": "2026-03-01T12:00:00"}'
    """
    from mlkit.toolkit.inputs import parse_order_json
    from mlkit.toolkit.serving import FraudScorer

    # The order is checked before anything connects, so a bad one is named first.
    request = parse_order_json(sys.stdin.read() if order in (None, "-") else order)
    config, engine = load_context(ctx)
    emit_json(FraudScorer(engine, config, model).score(request))
