"""`mlkit quickstart`: from a bare machine to a working demo in one command."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import JsonFlag, emit_json, err, load_config, progress_bar, stdout_console


def quickstart(
    ctx: typer.Context,
    orders: Annotated[int, typer.Option("--orders", help="Demo orders to generate.")] = 50_000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 42,
    as_json: JsonFlag = False,
) -> None:
    """Initialise the configured database (SQLite by default), seed a demo world, compute
    the fraud features, snapshot a training set, train, validate and promote the fraud
    model, score every order, summarise.

    Run it again to start over: the demo world is replaced.

    Example: mlkit quickstart
    """
    from mlkit.toolkit.db import dialect_name, init_schema, make_engine, masked, table_counts
    from mlkit.toolkit.demo.seed import seed_demo
    from mlkit.toolkit.fraud.dataset import build_from_config
    from mlkit.toolkit.fraud.etl import resolve_range, run_etl
    from mlkit.toolkit.fraud.pipeline import train_fraud_model
    from mlkit.toolkit.fraud.scoring import Thresholds, score_orders
    from mlkit.toolkit.registry import promote
    from mlkit.toolkit.validation import validation_failures

    config = load_config(ctx)
    engine = make_engine(config.database_url)
    init_schema(engine)
    err(f"database: {masked(engine)}")
    with progress_bar() as progress:
        result = seed_demo(engine, orders=orders, seed=seed, replace=True, progress=progress)
        etl_result = run_etl(engine, *resolve_range(engine, None, None), progress=progress)
    dataset = build_from_config(engine, config, set_current=True)
    # Train on that snapshot, promote to candidate (validated), then to prod, and score.
    trained = train_fraud_model(engine, config, dataset="current", alias="candidate", force=True)
    prod = promote(
        engine,
        "fraud",
        trained["version"],
        "prod",
        validate=lambda mv: validation_failures(engine, mv, config),
        reason="mlkit quickstart",
    )
    scored = score_orders(engine, prod, Thresholds.from_config(config))
    counts = table_counts(engine)
    document = {
        "database": masked(engine),
        "dialect": dialect_name(engine),
        "seed": result.as_dict(),
        "etl": etl_result.as_dict(),
        "dataset": dataset.as_dict(),
        "model": {k: trained[k] for k in ("model", "version", "kind", "alias", "artifact")}
        | {
            "metrics": {k: v for k, v in trained["metrics"].items() if isinstance(v, float)},
            "prod": prod.version,
        },
        "scoring": scored.as_dict(),
        "tables": counts,
        "next": [
            "mlkit db status",
            "mlkit features show --order 1",
            "mlkit inspect dataset --pointer current",
            "mlkit models list",
            "mlkit status",
            "mlkit config show",
            "mlkit demo seed --append --days 7 --shift price=1.5",
        ],
    }
    if as_json:
        emit_json(document)
        return
    from .demo_cmd import print_seed_summary

    print_seed_summary(document["seed"])
    console = stdout_console()
    etl = document["etl"]
    console.print(
        f"etl: {etl['rows']:,} orders into fraud_features ({etl['labelled_rows']:,} labelled) "
        f"in {etl['seconds']} s"
    )
    data = document["dataset"]
    console.print(
        f"dataset: {data['rows']:,} rows ({data['label_counts']['1']:,} fraud) at {data['path']}"
    )
    model, metrics = document["model"], document["model"]["metrics"]
    oracle = f" (oracle {metrics['oracle_auc_pr']:.3f})" if "oracle_auc_pr" in metrics else ""
    console.print(
        f"model: fraud:{model['version']} ({model['kind']}) test AUC-PR {metrics['auc_pr']:.3f}"
        f"{oracle}, validated, prod -> v{model['prod']}"
    )
    scoring = document["scoring"]
    console.print(
        f"scored {scoring['rows']:,} orders into fraud_predictions: "
        + ", ".join(f"{k} {v:,}" for k, v in scoring["decisions"].items())
    )
    console.print(f"\n[bold]mlkit is ready[/bold] on {document['database']}.")
    console.print("next: " + "  |  ".join(document["next"]))
