"""`mlkit quickstart`: from a bare machine to a working demo in one command."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import (
    JsonFlag,
    YesFlag,
    confirm_destructive,
    emit_json,
    load_context,
    progress_bar,
    stdout_console,
)
from ._render import print_seed_summary


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

    The default 200,000 orders (about a minute) give a fraud model sure enough to block;
    far fewer leave every score below fraud.threshold_block. Run it again to start over:
    the demo world is replaced (it asks first on a terminal; --yes elsewhere). A database
    holding rows no demo world wrote (a platform's own) is refused untouched.

    Example: mlkit quickstart
    """
    from mlkit.toolkit.db import masked
    from mlkit.toolkit.quickstart import run_quickstart

    config, engine = load_context(ctx)
    typer.echo(f"database: {masked(engine)}", err=True)
    with progress_bar() as progress:
        document = run_quickstart(
            engine,
            config,
            orders=orders,
            seed=seed,
            confirm_replace=lambda what: confirm_destructive(what, yes),
            progress=progress,
        )
    if as_json:
        emit_json(document)
        return
    _print(document)


def _print(document: dict) -> None:
    print_seed_summary(document["seed"])
    console = stdout_console()
    for line in _summary_lines(document):
        console.print(line)
    console.print(f"\n[bold]mlkit is ready[/bold] on {document['database']}.")
    console.print("next: " + "  |  ".join(document["next"]))
    console.print(f"watch it live: {document['live']}")


def _summary_lines(document: dict) -> list[str]:
    """One line per step after the seed: features, dataset, model, scores, the others; a
    family its promotion gate kept from serving says why instead."""
    etl, data, scoring = document["etl"], document["dataset"], document["scoring"]
    model, metrics = document["model"], document["model"]["metrics"]
    oracle = f" (oracle {metrics['oracle_auc_pr']:.3f})" if "oracle_auc_pr" in metrics else ""
    rec, mab, sig = document["recommender"], document["bandit"], document["signal"]
    lines = [
        f"etl: {etl['rows']:,} orders into fraud_features ({etl['labelled_rows']:,} labelled) "
        f"in {etl['seconds']} s",
        f"dataset: {data['rows']:,} rows ({data['label_counts']['1']:,} fraud) at {data['path']}",
    ]
    if model["rejected"]:
        lines.append(f"model: {model['rejected']}")
    if model["prod"] is not None:
        lines.append(
            f"model: fraud:{model['version']} ({model['kind']}) test AUC-PR "
            f"{metrics['auc_pr']:.3f}{oracle}, validated, prod -> v{model['prod']}"
        )
    if scoring is None:
        lines.append("scores: none, no fraud model serves")
    else:
        lines.append(
            f"scored {scoring['rows']:,} orders into fraud_predictions: "
            + ", ".join(f"{k} {v:,}" for k, v in scoring["decisions"].items())
        )
    if rec["rejected"]:
        lines.append(f"recommender: {rec['rejected']}")
    else:
        picks = "; ".join(f"{i['name']} ({i['reason']})" for i in rec["items"])
        lines.append(
            f"recommender: recommender:{rec['version']} HitRate@10 "
            f"{rec['metrics']['hit_rate_at_10']:.3f} (popular "
            f"{rec['metrics']['popular_hit_rate_at_10']:.3f}); for user {rec['user_id']}: {picks}"
        )
    if mab["rejected"]:
        lines.append(f"bandit: {mab['rejected']}")
    else:
        lines.append(
            f"bandit: pricing:{mab['version']} from {mab['offers']:,} offers, best arm "
            f"{mab['best_arm']} (mean reward {mab['mean_reward'][mab['best_arm']]:.4f})"
        )
    lines.append(
        f"signal: {sig['symbol']} {sig['signal']} at {sig['confidence']:.1f}% for the bar of "
        f"{sig['ts']} from {'the fallback' if sig['fallback'] else sig['model_version']}"
        + (" (trained first)" if sig["training"] == "trained" else "")
    )
    if sig["training"] == "candidate":  # its model was kept from prod by the gate
        lines.append(f"  {sig['training_detail']}")
    return lines
