"""`mlkit signal`: trading signals for a symbol's latest bar, and the family's status."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ._common import JsonFlag, SymbolOption, emit_json, load_config, open_engine, stdout_console

app = typer.Typer(
    help="SELL / HOLD / BUY signals from the symbol's CatBoost model, or the SMA/RSI fallback.",
    no_args_is_help=True,
)


OneSymbolOption = Annotated[
    str | None, typer.Option("--symbol", help="One symbol; default every known one.")
]


@app.command("run")
def run(
    ctx: typer.Context,
    symbol: SymbolOption,
    no_train: Annotated[
        bool, typer.Option("--no-train", help="Never start the automatic initial training.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Signal the symbol's latest bar and store it in `signals`.

    With no trained model, first trains one when no cooldown is active and there are
    at least signal.min_initial_train_samples bars; a failed training starts a
    cooldown of training.retry_cooldown_sec. Without a model the signal comes from the
    SMA(14)/SMA(50) crossover and RSI(14), marked fallback, and may execute only when
    signal.allow_fallback_execution is true.

    Example: mlkit signal run --symbol BTCUSDT --json
    """
    from mlkit.toolkit.signal.run import run_signal

    config = load_config(ctx)
    document = run_signal(open_engine(ctx, config), config, symbol, train=not no_train)
    if as_json:
        emit_json(document)
        return
    console = stdout_console()
    colour = {"BUY": "green", "SELL": "red"}.get(document["signal"], "yellow")
    source = (
        f"fallback ({document['fallback_reason']['code']})"
        if document["fallback"]
        else document["model_version"]
    )
    console.print(
        f"{document['symbol']} {document['ts']} close {document['close']:g}: "
        f"[bold {colour}]{document['signal']}[/bold {colour}] at "
        f"{document['confidence']:.1f}% confidence from {source}"
    )
    if document["fallback"]:
        ind = document["fallback_indicators"]
        console.print(
            f"  SMA(14) {ind['sma_14']:g}, SMA(50) {ind['sma_50']:g}, RSI {ind['rsi']:.1f}; "
            f"{document['fallback_reason']['detail']}"
        )
    elif document.get("probabilities"):
        console.print(
            "  " + ", ".join(f"{k} {v:.3f}" for k, v in document["probabilities"].items())
        )
    training = document["training"]
    if training["outcome"] == "trained":
        console.print(f"  trained {training['ref']} first (initial training)")
    elif training["outcome"] == "failed":
        console.print(
            f"  [red]initial training failed:[/red] {training['detail']}; next retry at "
            f"{training.get('next_retry_at') or '-'}"
        )
    console.print(
        "  execution "
        + ("allowed" if document["execution_allowed"] else "not allowed")
        + (
            " (signal.allow_fallback_execution is false)"
            if document["fallback"] and not document["allow_fallback_execution"]
            else ""
        )
    )


@app.command("status")
def status(ctx: typer.Context, symbol: OneSymbolOption = None, as_json: JsonFlag = False) -> None:
    """Per symbol: trained or fallback (and why), last training, samples, the label
    horizon (in bars and as time on the symbol's bars), class distribution and weights,
    cooldown and next retry, last error, sanitisation, untrained-prediction warnings and
    the last signal.

    Example: mlkit signal status --symbol BTCUSDT --json
    """
    from mlkit.toolkit.signal.run import signal_status

    config = load_config(ctx)
    document = signal_status(open_engine(ctx, config), config, symbol)
    if as_json:
        emit_json(document if symbol is None else next(iter(document.values())))
        return
    console = stdout_console()
    if not document:
        console.print(
            "no market data and no signal model yet; load bars with "
            "`mlkit ingest market --csv FILE --symbol SYM`"
        )
        return
    from rich.markup import escape
    from rich.table import Table

    for name, info in document.items():
        table = Table(title=name, show_header=False, title_justify="left")
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        for field, value in _rows(info):
            table.add_row(field, escape(value))
        console.print(table)


def _rows(info: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [
        ("trained", f"yes, {info['model_version']}" if info["is_trained"] else "no"),
        ("bars", f"{info['bars']:,} ({info['first_bar'] or '-'} to {info['last_bar'] or '-'})"),
    ]
    if info["fallback_active"]:
        reason = info["untrained_reason"]
        rows.append(("fallback", f"active: {reason['code']}: {reason['detail']}"))
    rows.append(
        (
            "last training",
            f"{info['last_training_status'] or 'never'} at {info['last_training_time'] or '-'}",
        )
    )
    rows.append(("samples", f"{info['samples_in_last_train']:,}"))
    if info.get("horizon"):
        rows.append(("horizon", _horizon_text(info["horizon"])))
    if info["class_distribution"]:
        rows.append(("classes", _pairs(info["class_distribution"])))
    if info["class_weights"]:
        rows.append(("class weights", _pairs(info["class_weights"])))
    if info["sanitization"]:
        s = info["sanitization"]
        dropped = ", ".join(f"{k}: {', '.join(v) or '-'}" for k, v in s["dropped"].items())
        rows.append(
            ("sanitisation", f"{s['initial_features']} -> {s['final_features']} ({dropped})")
        )
    if info["selection"]:
        sel = info["selection"]
        rows.append(("selection", f"{sel['method']}: {sel['selected']} features"))
    metrics = info["metrics"]
    if metrics:
        bt = metrics.get("backtest", {})
        rows.append(
            (
                "walk-forward",
                f"accuracy {metrics['accuracy']:.3f} (majority "
                f"{metrics['majority_accuracy']:.3f}), macro-F1 "
                f"{metrics['macro_f1']:.3f}",
            )
        )
        if bt:
            rows.append(
                (
                    "backtest",
                    f"model {bt['model']['return']:+.2%}, fallback "
                    f"{bt['fallback']['return']:+.2%}, buy and hold "
                    f"{bt['buy_and_hold']['return']:+.2%}",
                )
            )
    if info["training_cooldown_active"]:
        rows.append(("cooldown", f"until {info['next_retry_at']}"))
    if info["last_training_error"]:
        rows.append(("last error", info["last_training_error"]))
    rows.append(("untrained predictions", str(info["prediction_warning_count"])))
    rows.append(
        ("fallback execution", "allowed" if info["allow_fallback_execution"] else "not allowed")
    )
    last = info["last_signal"]
    if last:
        source = "fallback" if last["fallback"] else last["model_version"]
        rows.append(
            (
                "last signal",
                f"{last['signal']} {last['confidence']:.1f}% at {last['ts']} ({source})",
            )
        )
    return rows


def _horizon_text(horizon: dict) -> str:
    """`24 bars of 1h = 1d (signal.horizon 1d, signal-BTCUSDT:3)`."""
    if "error" in horizon:
        return horizon["error"]
    text = f"{horizon['bars']} bar{'s' if horizon['bars'] != 1 else ''}"
    if horizon["bar_interval"]:
        text += f" of {horizon['bar_interval']} = {horizon['spans']}"
    given = f"signal.horizon {horizon['duration']}" if horizon["duration"] else horizon["source"]
    note = f"; {horizon['note']}" if horizon.get("note") else ""
    return f"{text} ({given}, {horizon['of']}){note}"


def _pairs(mapping: dict) -> str:
    return ", ".join(
        f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in mapping.items()
    )
