"""`mlkit drift`: a model's training snapshot against the features of recent orders."""

from __future__ import annotations

import typer

from ._common import (
    DriftModelOption,
    JsonFlag,
    WindowOption,
    emit_json,
    load_config,
    open_engine,
    stdout_console,
)

app = typer.Typer(
    help="Feature drift between training data and recent orders.", no_args_is_help=True
)

DRIFT_EXIT_CODE = 3


@app.command("check")
def check(
    ctx: typer.Context,
    model: DriftModelOption = None,  # None: the config's drift.model
    window: WindowOption = None,  # None: the config's drift.window
    as_json: JsonFlag = False,
) -> None:
    """Compare each feature of the orders of the last window before now with the last
    window-length of the model's training snapshot, and record the check for the dashboard
    and `mlkit alerts`.

    PSI and KL(recent || training) on shared bins (the snapshot's quantiles, or its
    distinct values, plus missing), and a size-aware test: Kolmogorov-Smirnov (chi-square
    for categories) below drift.large_sample rows, else the Wasserstein distance over the
    training standard deviation (PSI for categories). Each measure is judged beyond the
    feature's natural band (the most that earlier windows of the snapshot reach against
    the same slice, plus their spread): a feature drifts when that excess crosses its threshold
    (drift.kl_threshold 0.15, drift.psi_threshold 0.2, drift.p_value,
    drift.wasserstein_threshold). Fewer than 100 recent orders: skipped, exit 0.
    Exit 0: no drift (or skipped); 3: drift found; 1: error.

    Example: mlkit drift check --model fraud@prod --window 1d --json
    """
    from mlkit.toolkit.drift import run_drift_check

    config = load_config(ctx)
    document = run_drift_check(open_engine(ctx, config), config, model=model, window=window)
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
    if document["status"] == "skipped":
        stdout_console().print(
            f"{document['model']}: {escape(document['warnings'][0])} (window "
            f"{w['start']:%Y-%m-%d %H:%M} to {w['end']:%Y-%m-%d %H:%M}); nothing compared"
        )
        return
    verdict = (
        f"[bold red]drift in {len(document['features_drifted'])} feature(s): "
        f"{escape(', '.join(document['features_drifted']))}[/bold red]"
        if document["drifted"]
        else "[green]no drift[/green]"
    )
    ref = document["reference_slice"]
    described = (
        f"snapshot's last {escape(w['text'])} from {ref['start']:%Y-%m-%d %H:%M}"
        if ref["mode"] == "recent"
        else "whole snapshot"
    )
    table = Table(
        title=(
            f"{document['model']}: {described} ({document['reference_rows']:,} rows, natural "
            f"level from {ref.get('calibration_windows', 0)} earlier windows) vs "
            f"{document['current_rows']:,} orders from {w['start']:%Y-%m-%d %H:%M} to "
            f"{w['end']:%Y-%m-%d %H:%M} ({escape(w['text'])})"
        ),
        title_justify="left",
    )
    for name, justify in (
        ("feature", "left"),
        ("PSI", "right"),
        ("KL", "right"),
        ("natural KL", "right"),
        ("test", "left"),
        ("statistic", "right"),
        ("p-value", "right"),
        ("threshold", "right"),
        ("drift", "left"),
    ):
        table.add_column(name, justify=justify)
    for r in document["features"]:
        style = "red" if r["drifted"] else None
        table.add_row(
            r["feature"],
            _number(r["psi"]),
            _number(r["kl"]),
            _number(r["baseline"]["kl"]),
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
        f"{verdict} (beyond the natural band: KL > {t['kl']:g}, PSI > {t['psi']:g}; "
        f"KS/chi-square below "
        f"{t['large_sample']:,} rows, else Wasserstein / training std) · check "
        f"{document['check_id']} in {document['seconds']} s"
    )
    for warning in document["warnings"]:
        err(f"warning: {warning}")
