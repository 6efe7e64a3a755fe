"""`mlkit report`: self-contained HTML pages of a model version and of feature drift."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ._common import (
    DriftModelOption,
    JsonFlag,
    WindowOption,
    emit_json,
    load_context,
    stdout_console,
)

if TYPE_CHECKING:
    from mlkit.toolkit.report.model import Report

app = typer.Typer(
    help="Self-contained HTML reports (charts inline, no network): a model version, feature drift.",
    no_args_is_help=True,
)

OutOption = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "-o",
        help="The HTML file to write [default: <home>/reports/<database-id>/<ref>.html].",
        metavar="FILE.html",
    ),
]


def _written(report: Report, as_json: bool) -> None:
    if as_json:
        emit_json(report.as_dict())
        return
    stdout_console().print(str(report.path), soft_wrap=True, highlight=False)


@app.command("model")
def model(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="fraud@prod, fraud:3, signal-BTCUSDT@prod, pricing.")],
    out: OutOption = None,
    as_json: JsonFlag = False,
) -> None:
    """One version's page: the promotion gate's verdict, its metrics beside the baselines
    and the oracle, and its family's charts (fraud: PR and ROC curves, calibration,
    decisions at the configured thresholds, importances, per-order contributions, the
    training data); the artifact is verified by its sha256 first. Prints the file's path.

    Example: mlkit report model fraud@prod --out fraud.html
    """
    from mlkit.toolkit.report.model import write_model_report

    config, engine = load_context(ctx)
    _written(write_model_report(engine, config, ref, out=out), as_json)


@app.command("drift")
def drift(
    ctx: typer.Context,
    model: DriftModelOption = None,
    window: WindowOption = None,
    out: OutOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Per-feature histograms of the training snapshot against recent orders, each with the
    drift check's statistic and threshold (the check is not recorded). Prints the path.

    Example: mlkit report drift --window 7d --out drift.html
    """
    from mlkit.toolkit.report.drift import write_drift_report

    config, engine = load_context(ctx)
    _written(write_drift_report(engine, config, model=model, window=window, out=out), as_json)
