"""`mlkit score` (batch) and `mlkit predict` (one order)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from ._common import JsonFlag, ModelOption, SinceOption, emit_json, load_context, stdout_console

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
    as_json: JsonFlag = False,
) -> None:
    """Score orders and write score, decision, features and model version to
    fraud_predictions; re-running replaces that version's rows instead of adding more.

    The features are caught up first (as `mlkit etl run --since last`), so orders placed
    since the last ETL are scored too. A window without orders is not an error: it says
    there is nothing to score.

    Example: mlkit score fraud --since 1d --model fraud@prod
    """
    from mlkit.toolkit.clock import parse_moment, utcnow
    from mlkit.toolkit.fraud.etl import lookback_from_config
    from mlkit.toolkit.fraud.scoring import Thresholds, score_orders
    from mlkit.toolkit.registry import resolve

    config, engine = load_context(ctx)
    start = parse_moment(since, now=utcnow(), option="--since") if since else None
    result = score_orders(
        engine,
        resolve(engine, model),
        Thresholds.from_config(config),
        start,
        lookback=None if no_etl else lookback_from_config(config),
        artifacts_dir=config.artifacts_dir,
    )
    document = result.as_dict()
    if as_json:
        emit_json(document)
        return
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
    )


@predict_app.command("fraud")
def predict_fraud(
    ctx: typer.Context,
    order: OrderArgument = None,
    model: ModelOption = "fraud@prod",
) -> None:
    """Score one order: online features (Redis when fresh, else the database), the model,
    the decision. Prints {"fraud_score", "decision", "model_version", "features"}.

    The order is checked first: ids are positive integers, price a finite number above 0
    (below 1,000,000,000), payment_method a known method, created_at an ISO moment (an
    offset is converted to UTC), is_resale a boolean, geo_lat/geo_lon degrees in range; a
    bad field is one error line naming it, and exit 1.

    Example: mlkit predict fraud '{"buyer_wallet_id": 12, "event_id": 3, "price": 80,
             "payment_method": "paypal", "created_at": "2026-03-01T12:00:00"}'
    """
    from mlkit.toolkit.cache import redis_client
    from mlkit.toolkit.errors import MlkitError
    from mlkit.toolkit.fraud.scoring import FraudPredictor, Thresholds
    from mlkit.toolkit.registry import resolve

    text = sys.stdin.read() if order in (None, "-") else order
    try:
        request = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MlkitError(
            f"the order is not valid JSON ({exc.msg}, column {exc.colno})",
            hint="pass one JSON object",
        ) from None
    except RecursionError:
        raise MlkitError(
            "the order is nested too deeply", hint="pass one flat JSON object"
        ) from None
    if not isinstance(request, dict):
        raise MlkitError("the order must be a JSON object", hint="pass one JSON object")
    config, engine = load_context(ctx)
    predictor = FraudPredictor(
        engine,
        resolve(engine, model),
        Thresholds.from_config(config),
        redis=redis_client(config.redis_url, required=False),
        artifacts_dir=config.artifacts_dir,
    )
    emit_json(predictor.predict(request))
