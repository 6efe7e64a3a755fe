"""`mlkit quickstart`: from a bare machine to a working demo in one command."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from ._common import (
    JsonFlag,
    YesFlag,
    confirm_destructive,
    emit_json,
    err,
    load_config,
    progress_bar,
    stdout_console,
)

DEMO_SIGNAL_SYMBOL = "BTCUSDT"


def quickstart(
    ctx: typer.Context,
    orders: Annotated[int, typer.Option("--orders", help="Demo orders to generate.")] = 200_000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 42,
    yes: YesFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Initialise the configured database (SQLite by default), seed a demo world, compute
    the fraud features, snapshot a training set, train, validate and promote the fraud
    model, score every order, train the recommender, learn the pricing bandit, run one
    trading signal on the demo bars (training its model first), summarise.

    200,000 orders (about a minute) give a fraud model sure enough to block: with 50,000
    it scores no order above 0.79, below fraud.threshold_block. Run it again to start
    over: the demo world is replaced (it asks first on a terminal; --yes elsewhere). A
    database holding rows no demo world wrote (a platform's own) is refused untouched.

    Example: mlkit quickstart
    """
    from mlkit.toolkit.cache import redis_client
    from mlkit.toolkit.db import dialect_name, init_schema, make_engine, masked, table_counts
    from mlkit.toolkit.demo.seed import require_own_database, seed_demo
    from mlkit.toolkit.fraud.dataset import build_from_config
    from mlkit.toolkit.fraud.etl import resolve_range, run_etl
    from mlkit.toolkit.fraud.pipeline import train_fraud_model
    from mlkit.toolkit.fraud.scoring import Thresholds, score_orders
    from mlkit.toolkit.pricing.train import train_bandit
    from mlkit.toolkit.recommender.serve import Recommender
    from mlkit.toolkit.recommender.train import train_recommender
    from mlkit.toolkit.registry import promote
    from mlkit.toolkit.signal.run import run_signal
    from mlkit.toolkit.validation import validation_failures

    config = load_config(ctx)
    engine = make_engine(config.database_url)
    init_schema(engine)
    err(f"database: {masked(engine)}")
    periods = require_own_database(engine)
    if periods:
        confirm_destructive("the database already holds a demo world: quickstart replaces it", yes)
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
    scored = score_orders(
        engine, prod, Thresholds.from_config(config), artifacts_dir=config.artifacts_dir
    )
    # The recommender from the shop's interactions, and one user's picks.
    # The world ends at the start of today; windows count back from now and hold all of it.
    shop = train_recommender(engine, config, days=365, force=True)
    recommender = Recommender.open(engine, config)
    shopper = int(recommender.model.user_ids[0])
    picks = recommender.for_user(shopper, 3)
    # The pricing bandit from the same orders, state into Redis when it answers.
    bandit = train_bandit(
        engine, config, redis_client(config.redis_url, required=False), since="365d", force=True
    )
    # One trading signal on the demo's hourly bars: trains signal-BTCUSDT first when it has
    # no model yet (the automatic initial training), else uses it.
    signal = run_signal(engine, config, DEMO_SIGNAL_SYMBOL)
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
        "recommender": {
            "version": shop["version"],
            "metrics": shop["metrics"],
            "user_id": shopper,
            "items": picks["items"],
        },
        "bandit": {
            "version": bandit["version"],
            "offers": bandit["offers"],
            "best_arm": bandit["metrics"]["best_arm"],
            "mean_reward": bandit["metrics"]["mean_reward"],
        },
        "signal": {
            k: signal[k]
            for k in ("symbol", "ts", "signal", "confidence", "fallback", "model_version")
        }
        | {"training": signal["training"]["outcome"]},
        "tables": counts,
        "live": "mlkit demo stream --rate 20 --duration 600 &  mlkit dashboard",
        "next": [
            "mlkit db status",
            "mlkit features show --order 1",
            "mlkit inspect dataset --pointer current",
            "mlkit models list",
            "mlkit status",
            "mlkit signal status",
            "mlkit mab stats",
            f"mlkit recommend user {shopper}",
            "mlkit config show",
            # The appended week lies after now: drift looks at it as of its end.
            "mlkit demo seed --append --days 7 --shift price=1.5 && "
            f"mlkit --as-of {result.end + timedelta(days=7):%Y-%m-%d} drift check",
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
    rec = document["recommender"]
    console.print(
        f"recommender: recommender:{rec['version']} HitRate@10 "
        f"{rec['metrics']['hit_rate_at_10']:.3f} (popular "
        f"{rec['metrics']['popular_hit_rate_at_10']:.3f}); for user {rec['user_id']}: "
        + "; ".join(f"{i['name']} ({i['reason']})" for i in rec["items"])
    )
    mab = document["bandit"]
    console.print(
        f"bandit: pricing:{mab['version']} from {mab['offers']:,} offers, best arm "
        f"{mab['best_arm']} (mean reward {mab['mean_reward'][mab['best_arm']]:.4f})"
    )
    sig = document["signal"]
    console.print(
        f"signal: {sig['symbol']} {sig['signal']} at {sig['confidence']:.1f}% for the bar of "
        f"{sig['ts']} from {'the fallback' if sig['fallback'] else sig['model_version']}"
        + (" (trained first)" if sig["training"] == "trained" else "")
    )
    console.print(f"\n[bold]mlkit is ready[/bold] on {document['database']}.")
    console.print("next: " + "  |  ".join(document["next"]))
    console.print(f"watch it live: {document['live']}")
