"""`mlkit demo`: a reproducible demo world with its ground truth."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from ._common import (
    JsonFlag,
    YesFlag,
    confirm_destructive,
    emit_json,
    err,
    load_context,
    open_engine,
    progress_bar,
    stdout_console,
)
from ._render import print_seed_summary

app = typer.Typer(help="Generate demo data with ground truth.", no_args_is_help=True)


@app.command("seed")
def seed(
    ctx: typer.Context,
    orders: Annotated[
        int | None,
        typer.Option(
            "--orders",
            help="Ticket orders to generate [default: 100000; on --append, the world's own pace].",
        ),
    ] = None,
    days: Annotated[float, typer.Option("--days", help="Days of history.")] = 90,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: same seed, same data.")] = 42,
    families: Annotated[
        str | None,
        typer.Option("--families", help="Comma-separated: fraud,pricing,signal,recommender."),
    ] = None,
    start: Annotated[
        datetime | None,
        typer.Option(
            "--start",
            help="First day of the world (UTC) [default: --days before today, so it ends now].",
            formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"],
        ),
    ] = None,
    append: Annotated[
        bool, typer.Option("--append", help="Continue the existing world --days more days.")
    ] = False,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace", help="Delete the recorded demo worlds' rows first (asks; see --yes)."
        ),
    ] = False,
    shift: Annotated[
        list[str] | None,
        typer.Option(
            "--shift",
            help="NAME=FACTOR drift on purpose: price, fraud, volume, volatility (repeatable).",
            metavar="NAME=FACTOR",
        ),
    ] = None,
    yes: YesFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Fill the database with a realistic demo world for all four model families.

    Records the truth it sampled from in demo_truth_* tables (models never read them).
    Loads in one transaction: a failure leaves the database as it was. A new world ends at
    the start of the clock's day (--as-of moves it), so windows from now find it; the same
    --seed and --start give the same rows. --append continues after the world's last day.

    Demo rows are fenced: each period records the ids it wrote, and a database holding rows
    no demo world wrote is refused. --replace deletes only the recorded demo worlds' rows
    (and the features, predictions and archived orders mlkit derived from them); it asks
    first on a terminal and needs --yes elsewhere.

    Examples: mlkit demo seed --orders 1000000 --seed 7
              mlkit demo seed --append --days 7 --shift price=1.5
    """
    from mlkit.toolkit.demo.seed import parse_families, parse_shifts, seed_with_consent

    chosen = parse_families(families)
    shifts = parse_shifts(shift)
    engine = open_engine(ctx)
    with progress_bar() as progress:  # draws nothing before the first step: asking comes first
        result = seed_with_consent(
            engine,
            orders=orders,
            days=days,
            seed=seed,
            families=chosen,
            start=start,
            confirm_replace=lambda what: confirm_destructive(what, yes),
            append=append,
            replace=replace,
            shift=shifts,
            progress=progress,
        )
    for warning in result.warnings:
        err(f"warning: {warning}")
    document = result.as_dict()
    if as_json:
        emit_json(document)
        return
    print_seed_summary(document)


@app.command("stream")
def stream(
    ctx: typer.Context,
    rate: Annotated[float, typer.Option("--rate", help="Orders per second.")] = 20.0,
    duration: Annotated[
        float, typer.Option("--duration", help="Seconds to run; Ctrl-C stops sooner.")
    ] = 60.0,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Place live demo orders, score them with the prod fraud model, reward the bandit.

    Traffic has the demo world's shape: normal buyers, scalper-bot bursts from new wallets
    and stolen-payment sessions, in the seeded shares, with labels that arrive days later.
    Orders are stamped by the clock, so `mlkit dashboard` in another terminal moves. Ctrl-C
    stops after the current second's orders are written.

    In-flight sessions start warm: the bursts, stolen-payment sessions and second tickets
    that would be under way at this rate are created with their earlier orders backdated
    into the last half hour (never before the world's last order minus 5 minutes; counted
    under "warm_start"), so fraud shows from the first second, not after minutes.

    Example: mlkit demo stream --rate 20 --duration 60
    """
    import signal
    import sys

    from mlkit.toolkit.demo.stream import open_stream
    from mlkit.toolkit.errors import MlkitError

    if not 0 < rate <= 1000:
        raise MlkitError(f"--rate {rate} is out of range", hint="give 0 < rate <= 1000 per second")
    config, engine = load_context(ctx)
    streamer = open_stream(engine, config, seed=seed, warn=lambda text: err(f"warning: {text}"))
    stop = {"requested": False}

    def request_stop(signum, frame) -> None:
        stop["requested"] = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C is final

    def report(t) -> None:
        err(
            f"streamed {t.orders:,} orders in {t.seconds:.0f} s ({t.completed:,} completed, "
            f"{t.scored:,} scored, {t.flagged:,} blocked or in review)"
        )

    previous = signal.signal(signal.SIGINT, request_stop)
    try:
        totals = streamer.run(
            rate,
            duration,
            on_tick=report if sys.stderr.isatty() else None,
            should_stop=lambda: stop["requested"],
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    if as_json:
        emit_json(totals.as_dict())
        return
    document = totals.as_dict()
    stdout_console().print(
        f"streamed {totals.orders:,} orders in {totals.seconds:.0f} s "
        f"({document['rate']} per second, asked {rate:g}): "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(totals.decisions.items()))
        + f"; buyers {', '.join(f'{k} {v:,}' for k, v in totals.kinds.items())}"
        + f"; {totals.new_wallets:,} new wallets, {totals.labels:,} labels to come"
        + f"; arms {', '.join(f'{k} {v:,}' for k, v in sorted(totals.arms.items()))}"
        + f"; plus {totals.warm_start.get('orders', 0):,} backdated orders of sessions under way"
    )
