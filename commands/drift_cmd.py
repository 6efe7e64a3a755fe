"""`mlkit drift`: a model's training snapshot against the features of recent orders."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import JsonFlag, emit_json, load_config, stdout_console

app = typer.Typer(help="Feature drift between training data and recent orders.",
                  no_args_is_help=True)  # fmt: skip

DRIFT_EXIT_CODE = 3


@app.command("check")
def check(
    ctx: typer.Context,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Model reference [default: drift.model, fraud@prod]."),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            help="Recent orders: 7d back from the newest order, or a date [default: drift.window].",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Compare each feature of the model's training snapshot with the same feature of the
    orders in the window, and record the check for the dashboard and `mlkit alerts`.

    PSI and KL(recent || training) on shared bins (the snapshot's quantiles, or its
    distinct values, plus missing), and a size-aware test: Kolmogorov-Smirnov (chi-square
    for categories) below drift.large_sample rows, else the Wasserstein distance over the
    training standard deviation (PSI for categories). A feature drifts when any measure
    crosses its threshold (drift.kl_threshold 0.15, drift.psi_threshold 0.2,
    drift.p_value, drift.wasserstein_threshold). Exit 0: no drift; 3: drift found; 1: error.

    Example: mlkit drift check --model fraud@prod --window 7d --json
    """
    from mlkit.toolkit.db import make_engine
    from mlkit.toolkit.drift import run_drift_check

    config = load_config(ctx)
    document = run_drift_check(make_engine(config.database_url), config, model=model, window=window)
    if as_json:
        emit_json(document)
    else:
        _print(document)
    if document["drifted"]:
        raise typer.Exit(DRIFT_EXIT_CODE)


def _number(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if value != 0 and abs(value) < 10**-digits:
        return f"{value:.1e}"
    return f"{value:.{digits}f}"


def _print(document: dict) -> None:
    from rich.markup import escape
    from rich.table import Table

    from ._common import err

    w = document["window"]
    verdict = (
        f"[bold red]drift in {len(document['features_drifted'])} feature(s): "
        f"{escape(', '.join(document['features_drifted']))}[/bold red]"
        if document["drifted"]
        else "[green]no drift[/green]"
    )
    table = Table(
        title=(
            f"{document['model']}: training snapshot ({document['reference_rows']:,} rows) vs "
            f"{document['current_rows']:,} orders from {w['start']:%Y-%m-%d %H:%M} to "
            f"{w['end']:%Y-%m-%d %H:%M} ({escape(w['text'])})"
        ),
        title_justify="left",
    )
    for name, justify in (("feature", "left"), ("PSI", "right"), ("KL", "right"),
                          ("test", "left"), ("statistic", "right"), ("p-value", "right"),
                          ("threshold", "right"), ("drift", "left")):  # fmt: skip
        table.add_column(name, justify=justify)
    for r in document["features"]:
        style = "red" if r["drifted"] else None
        table.add_row(
            r["feature"],
            _number(r["psi"]),
            _number(r["kl"]),
            r["test"],
            _number(r["statistic"]),
            _number(r["p_value"], 4),
            (f"p < {r['threshold']:g}" if r["test"] in ("ks", "chi2") else f"> {r['threshold']:g}"),
            ", ".join(r["reasons"]) if r["drifted"] else "no",
            style=style,
        )
    console = stdout_console()
    console.print(table)
    t = document["thresholds"]
    console.print(
        f"{verdict} (KL > {t['kl']:g}, PSI > {t['psi']:g}; KS/chi-square below "
        f"{t['large_sample']:,} rows, else Wasserstein / training std) · check "
        f"{document['check_id']} in {document['seconds']} s"
    )
    for warning in document["warnings"]:
        err(f"warning: {warning}")
