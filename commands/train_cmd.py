"""`mlkit train`: train a model family and register the result."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from mlkit.toolkit.errors import NOTICE_EXIT

from ._common import (
    EngineOption,
    JsonFlag,
    SymbolOption,
    emit_json,
    err,
    load_context,
    stdout_console,
)

app = typer.Typer(help="Train models and register them.", no_args_is_help=True)

AliasOption = Annotated[
    str | None,
    typer.Option(
        "--alias",
        help="Where the new version goes: it becomes candidate once it loads, then this alias "
        "(prod: serves) once its promotion gate passes too; candidate: only that; '' for none.",
    ),
]
ForceOption = Annotated[bool, typer.Option("--force", help="Ignore a failure cooldown.")]
SkipOption = Annotated[
    bool,
    typer.Option(
        "--skip-if-too-few",
        help="Too little data in the window is a skip: exit 0, serving model kept (for cron).",
    ),
]


def _train(
    run: Callable[[], dict],
    summary: Callable[[dict], str],
    as_json: bool,
    *,
    skip_too_few: bool = False,
    model: str = "",
) -> None:
    """Run a training and show its document, or its summary line and where the alias moved.

    With `skip_too_few`, too little data is a skip said on stderr (and as JSON), not an
    error."""
    from mlkit.toolkit.errors import TooLittleData

    try:
        result = run()
    except TooLittleData as exc:
        if not skip_too_few:
            raise
        if as_json:
            emit_json({"model": model, "status": "skipped", "reason": exc.message})
        err(f"skipped {model}: {exc.message}")
        return
    if as_json:
        emit_json(result)
        return
    moved = f"; {result['alias']} -> v{result['version']}" if result["alias"] else ""
    stdout_console().print(summary(result) + moved)


def _warn(text: str) -> None:
    err(f"warning: {text}")


def _fraud_summary(result: dict) -> str:
    m = result["metrics"]
    oracle = f", oracle AUC-PR {m['oracle_auc_pr']:.4f}" if "oracle_auc_pr" in m else ""
    baselines = "".join(f", {name} {value:.4f}" for name, value in m["baselines"].items())
    engine = "" if result["engine"] == "engine local (engine.name)" else f"; {result['engine']}"
    return (
        f"fraud:{result['version']} ({result['kind']}): test AUC-PR {m['auc_pr']:.4f}{oracle}"
        f"{baselines}, AUC-ROC {m['auc_roc']:.4f}, F1 {m['f1']:.4f} at {m['threshold']:.3f}"
        f"{engine}"
    )


@app.command("fraud")
def fraud(
    ctx: typer.Context,
    dataset: Annotated[
        str,
        typer.Option(
            "--dataset",
            help="new: catch the features up and build a snapshot now; latest, current or "
            "a snapshot PATH: reuse it.",
        ),
    ] = "new",
    model: Annotated[str, typer.Option("--model", help="xgboost or logreg.")] = "xgboost",
    alias: AliasOption = "prod",
    no_etl: Annotated[
        bool,
        typer.Option(
            "--no-etl",
            help="With --dataset new: build from the stored features as they are, without "
            "catching them up.",
        ),
    ] = False,
    force: ForceOption = False,
    engine_name: EngineOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Train the fraud model on a time-ordered split and register it.

    By default it is self-sufficient for cron: it catches the features up (as `mlkit etl
    run --since last`: every order without features, late ones included), builds a fresh
    dataset snapshot with labels as of now, then trains. `--dataset latest|current|PATH`
    reuses a snapshot instead (no catch-up); `--no-etl` skips the catch-up.

    Train / validation / test by time with a label-delay gap; XGBoost (positives
    up-weighted, early stopping on validation AUC-PR, Platt-calibrated) or the logreg
    Pipeline baseline. On demo data the test metrics sit beside oracle_auc_pr, the true
    probabilities' score.

    The promotion gate, on the same test orders: the model's AUC-PR must beat the best of
    its baselines (prior: the training fraud rate for every order; logreg: the Pipeline
    fitted on the same rows) by a margin whose bootstrap 90 % interval lies above zero,
    and not be significantly below fraud@prod's. Failing it, the version stays candidate and
    the run is recorded rejected: fraud@prod keeps serving (exit 3), or, with nothing
    serving yet, the logreg baseline serves in its place when it beats the prior (exit 3);
    exit 1 when nothing serves.

    `--engine spark` fits the same XGBoost with xgboost.spark on Apache Spark (catch-up and
    snapshot too, with --dataset new) and registers the same booster format; `auto` picks
    Spark above engine.auto_rows orders.

    Example: mlkit train fraud --alias candidate
    """
    from mlkit.toolkit.fraud.pipeline import train_fraud_model

    config, engine = load_context(ctx)
    _train(
        lambda: train_fraud_model(
            engine,
            config,
            dataset=dataset,
            kind=model,
            alias=alias or None,
            force=force,
            catch_up=not no_etl,
            engine_name=engine_name,
        ),
        _fraud_summary,
        as_json,
    )


def _bandit_summary(result: dict) -> str:
    m = result["metrics"]
    replay = m["policy_replay_reward"]
    return (
        f"pricing:{result['version']} ({result['policy']}) from {result['offers']:,} offers: "
        f"best arm {m['best_arm']} (mean reward {m['mean_reward'][m['best_arm']]:.4f}); "
        f"replay reward {'n/a' if replay is None else f'{replay:.4f}'} vs logged "
        f"{m['logged_reward']:.4f}"
    )


@app.command("mab")
def mab(
    ctx: typer.Context,
    since: Annotated[
        str, typer.Option("--since", help="History window: 90d back from now, or a date.")
    ] = "90d",
    policy: Annotated[
        str | None, typer.Option("--policy", help="thompson, ucb1 or egreedy.")
    ] = None,
    alias: AliasOption = "prod",
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Ignore a failure cooldown, and let a bandit trained on far fewer offers "
            "than prod's, or with arms never pulled, through (noted in its gate verdict).",
        ),
    ] = False,
    skip_if_too_few: SkipOption = False,
    as_json: JsonFlag = False,
) -> None:
    """Learn the pricing bandit from order history and save its arms (Redis + database).

    Strategy from price / base price (> pricing.surge_ratio surge_pricing, < early_bird_ratio
    early_bird, exactly base baseline, else ml_pricing). Reward per primary order:
    revenue (price / base) x conversion (1 completed, 0 failed or refunded) x
    (1 + popularity), popularity = the event's tickets sold before / capacity; divided by
    the window's 99.9th percentile and clipped to [0, 1]. With pricing.context event_type,
    each event type also keeps its own arms (mab:event_type=<type>:<arm>).

    The window's first four fifths train the bandit; the last fifth is replayed day by day
    and judged by the promotion gate: significantly above pricing at random (the better of
    a uniformly random arm and the logged policy), and not significantly below the best
    single arm or pricing@prod. It also needs at least pricing.min_offers_share_of_prod of
    prod's offers and every arm pulled, unless --force. The live arms (Redis + database)
    change only when it reaches prod; kept from prod: exit 3. Fewer than
    pricing.min_offers offers in the window: exit 1 and the live arms stay as they are.

    Example: mlkit train mab --since 90d --policy thompson --json
    """
    from mlkit.toolkit.pricing.train import train_bandit_configured

    config, engine = load_context(ctx)
    _train(
        lambda: train_bandit_configured(
            engine,
            config,
            since=since,
            policy=policy,
            alias=alias or None,
            force=force,
            warn=_warn,
        ),
        _bandit_summary,
        as_json,
        skip_too_few=skip_if_too_few,
        model="pricing",
    )


def _signal_summary(result: dict) -> str:
    m, bt = result["metrics"], result["metrics"]["backtest"]
    h = result["horizon"]
    return (
        f"{result['ref']}: {result['samples']:,} samples labelled {h['bars']} bars ahead "
        f"({h['bar_interval']} bars, {h['spans']}), {result['raw_features']} -> "
        f"{result['features']} features ({result['selection']['method']}); walk-forward "
        f"accuracy {m['accuracy']:.3f} (majority {m['majority_accuracy']:.3f}), macro-F1 "
        f"{m['macro_f1']:.3f}; backtest {bt['model']['return']:+.2%} vs buy and hold "
        f"{bt['buy_and_hold']['return']:+.2%}, fallback {bt['fallback']['return']:+.2%}"
    )


@app.command("signal")
def signal(
    ctx: typer.Context,
    symbol: SymbolOption,
    alias: AliasOption = "prod",
    force: ForceOption = False,
    as_json: JsonFlag = False,
) -> None:
    """Train the symbol's CatBoost SELL / HOLD / BUY model from market_data and register it.

    A compact set of period-agnostic features from past bars (returns, ratios and
    oscillators, nothing that marks a calendar period); labels from the forward return over
    signal.horizon (a duration counted in the symbol's bars; signal.horizon_bars > 0 is a
    count that wins) cut at training-period quantiles; CatBoost with class weights and
    early stopping on an inner purged split. Judged on walk-forward folds with a gap of the
    horizon between training and test: macro-F1 (beside accuracy and a backtest) against
    the training-majority, random, momentum and logistic references on the same folds,
    through the promotion gate; below it the version stays candidate and the SMA/RSI
    fallback or the serving version keeps signalling. Refused below
    signal.min_initial_train_samples bars.

    Example: mlkit train signal --symbol BTCUSDT --json
    """
    from mlkit.toolkit.signal.family import train as train_signal_model

    config, engine = load_context(ctx)
    _train(
        lambda: train_signal_model(engine, config, symbol, alias=alias or None, force=force),
        _signal_summary,
        as_json,
    )


def _recommender_summary(result: dict) -> str:
    m = result["metrics"]
    return (
        f"recommender:{result['version']} on {result['products']:,} products, "
        f"{result['interactions']:,} interactions: HitRate@10 {m['hit_rate_at_10']:.3f} "
        f"(popular {m['popular_hit_rate_at_10']:.3f}), NDCG@10 {m['ndcg_at_10']:.3f}, "
        f"coverage {m['catalog_coverage']:.1%}"
    )


@app.command("recommender")
def recommender(
    ctx: typer.Context,
    days: Annotated[
        float, typer.Option("--days", help="Interactions window in days, back from now.")
    ] = 90,
    alias: AliasOption = "prod",
    force: ForceOption = False,
    skip_if_too_few: SkipOption = False,
    as_json: JsonFlag = False,
) -> None:
    """Train the recommender (content blended with co-occurrence and popularity), register it.

    Content: TF-IDF over name, category, gender, colour, material and size, z-scored
    log-price proximity and rating / 5 (recommender.text/price/rating_weight). User profiles
    weight purchase > add_to_cart > rate (by rating) > view, and recency. Blended with item
    co-occurrence (each product's 100 most co-occurring ones) and popularity by
    recommender.content/collaborative/popularity_weight, the mix tuned on an inner time cut.
    Graded on one global time cut (the latest fifth of the interactions held out): HitRate@10,
    NDCG@10, coverage, through the promotion gate against popularity, co-occurrence and prod.
    A failed run leaves the serving version in place, and so does a window with fewer than
    recommender.min_interactions interactions (exit 1).

    Example: mlkit train recommender --days 90 --json
    """
    from mlkit.toolkit.recommender.train import train_recommender

    config, engine = load_context(ctx)
    _train(
        lambda: train_recommender(engine, config, days=days, alias=alias or None, force=force),
        _recommender_summary,
        as_json,
        skip_too_few=skip_if_too_few,
        model="recommender",
    )


@app.command("all")
def train_all(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Train every family in turn: fraud, pricing, recommender, then signal for each symbol
    with market data, each with its own command's defaults.

    Each new version becomes candidate, and prod when its promotion gate passes; one the
    gate keeps from prod is rejected (the serving version stays, not a failure). A failure
    is recorded and the next family trains anyway; a model cooling down after a failed run,
    being trained elsewhere, or without data is skipped. Prints a summary; exit 1 if any
    failed, else 3 if any was rejected.

    Example: mlkit train all --json
    """
    from mlkit.toolkit.train_all import train_every_family

    config, engine = load_context(ctx)
    document = train_every_family(
        engine, config, on_start=lambda item: err(f"training {item.model} ..."), warn=_warn
    )
    if as_json:
        emit_json(document)
    else:
        from rich.markup import escape
        from rich.table import Table

        table = Table(title="train all", title_justify="left")
        for name in ("family", "model", "status", "seconds", "detail"):
            table.add_column(name, overflow="fold")
        colours = {"ok": "green", "rejected": "yellow", "failed": "red", "skipped": "yellow"}
        for r in document["results"]:
            table.add_row(
                r["family"],
                r["model"],
                f"[{colours[r['status']]}]{r['status']}[/{colours[r['status']]}]",
                "-" if r["seconds"] is None else f"{r['seconds']:.1f}",
                escape(r["detail"] or ""),
            )
        console = stdout_console()
        console.print(table)
        console.print(
            f"{document['ok']} trained, {document['rejected']} rejected, "
            f"{document['failed']} failed, {document['skipped']} skipped"
        )
    if document["failed"]:
        raise typer.Exit(1)
    if document["rejected"]:
        raise typer.Exit(NOTICE_EXIT)
