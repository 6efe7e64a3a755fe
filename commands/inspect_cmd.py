"""`mlkit inspect`: sanity-check a dataset snapshot before anything trains on it."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._common import JsonFlag, emit_json, err, load_context, stdout_console

if TYPE_CHECKING:
    from rich.console import Console

app = typer.Typer(help="Inspect datasets: shape, labels, nulls and leakage.", no_args_is_help=True)

TOP_NULL_RATES = 10
TOP_AUC = 8


class Pointer(StrEnum):
    latest = "latest"
    current = "current"


POINTER_HELP = "Inspect the snapshot the fraud _LATEST or _CURRENT file names."
PointerOption = Annotated[Pointer | None, typer.Option("--pointer", help=POINTER_HELP)]


@app.command("dataset")
def dataset(
    ctx: typer.Context,
    path: Annotated[
        str | None,
        typer.Argument(
            help="A snapshot directory or its data.parquet (default: --pointer latest).",
            show_default=False,
            metavar="PATH",
        ),
    ] = None,
    pointer: PointerOption = None,
    samples: Annotated[
        int, typer.Option("--samples", min=0, help="Sample rows shown per class.")
    ] = 3,
    as_json: JsonFlag = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 when any check fails (for cron and CI).")
    ] = False,
) -> None:
    """Rows, schema, time range, labels, duplicates, nulls, amounts, samples and leakage checks.

    Example: mlkit inspect dataset --pointer current --strict
    """
    from mlkit.toolkit.inspect import inspect_in_database

    if path is not None and pointer is not None:
        raise typer.BadParameter("give PATH or --pointer, not both", param_hint="--pointer")
    # A pointer is read in this database's datasets folder; a path needs no database.
    config, engine = load_context(ctx) if path is None else (None, None)
    report = inspect_in_database(
        path,
        pointer=pointer.value if pointer else None,
        samples=samples,
        config=config,
        engine=engine,
    )
    if as_json:
        emit_json(report)
    else:
        render(report, stdout_console())
    failed = [
        f"{check['name']} ({check['detail']})" for check in report["checks"] if not check["ok"]
    ]
    if strict and failed:
        err(f"error: {len(failed)} of {len(report['checks'])} checks failed: {'; '.join(failed)}")
        err("hint: fix the dataset build, or drop --strict to report without failing")
        raise typer.Exit(1)


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def _cell(value: Any) -> str:
    from rich.markup import escape

    if isinstance(value, float):
        return f"{value:,.2f}"
    return "-" if value is None else escape(str(value))


def render(report: dict[str, Any], console: Console) -> None:
    """The report as Rich sections: overview, nulls, amount, leakage, samples, checks."""
    for section in (_overview, _nulls, _amount, _leakage, _samples, _checks):
        section(report, console)


def _overview(report: dict[str, Any], console: Console) -> None:
    from rich.markup import escape
    from rich.table import Table

    console.print(f"[bold]dataset[/bold] {escape(report['path'])}")
    if report["pointer"]:
        console.print(
            f"pointer {report['pointer']['name']} → {escape(report['pointer']['target'])}"
        )
    manifest = report["manifest"]
    if manifest["run_id"]:
        console.print(f"run_id {escape(str(manifest['run_id']))}")
    labels = report["label_distribution"]
    rate = "-" if labels["rate"] is None else f"{labels['rate']:.3%}"
    counts = ", ".join(f"{key}: {count:,}" for key, count in labels["counts"].items())
    span = report["time_range"]
    dups = report["duplicates"]
    overview = Table(title="overview", show_header=False)
    overview.add_column(style="bold")
    overview.add_column()
    for name, value in (
        ("rows", f"{report['rows']:,}"),
        ("columns", str(report["columns"])),
        ("event_ts", f"{span['min'] or '-'} → {span['max'] or '-'}"),
        ("labels", f"{counts} (fraud rate {rate})"),
        ("distinct", ", ".join(f"{key} {count:,}" for key, count in report["distinct"].items())),
        ("duplicates", f"order_id {dups['order_id']:,}, fully duplicated rows {dups['rows']:,}"),
    ):
        overview.add_row(name, value)
    console.print(overview)


def _nulls(report: dict[str, Any], console: Console) -> None:
    from rich.markup import escape
    from rich.table import Table

    nulls = Table(title="null rates (worst first)")
    nulls.add_column("column")
    nulls.add_column("type")
    nulls.add_column("nulls", justify="right")
    nulls.add_column("rate", justify="right")
    for item in report["null_rates"][:TOP_NULL_RATES]:
        nulls.add_row(
            item["column"],
            escape(report["schema"].get(item["column"], "")),
            f"{item['nulls']:,}",
            f"{item['rate']:.2%}",
        )
    if len(report["null_rates"]) > TOP_NULL_RATES:
        nulls.caption = f"{len(report['null_rates']) - TOP_NULL_RATES} more columns in --json"
    console.print(nulls)


def _amount(report: dict[str, Any], console: Console) -> None:
    from rich.table import Table

    amount = report["amount"]
    stats = Table(title="amount")
    keys = ("count", "mean", "std", "min", "p50", "p95", "p99", "max")
    for key in keys:
        stats.add_column(key, justify="right")
    stats.add_row(*(_num(amount[key]) for key in keys))
    console.print(stats)


def _leakage(report: dict[str, Any], console: Console) -> None:
    from rich.markup import escape
    from rich.table import Table

    leakage = report["leakage"]
    late = leakage["feature_ts_after_event_ts"]
    cutoff = leakage["label_after_cutoff"]
    console.print("[bold]leakage[/bold]")
    console.print(f"  feature_ts after event_ts: {late['rows']:,} rows")
    if cutoff["rows"] is None:
        console.print("  label after cutoff: no label_cutoff to check against")
    else:
        console.print(
            f"  label after cutoff {escape(str(cutoff['cutoff']))}: {cutoff['rows']:,} rows "
            f"({cutoff['positive_rows']:,} positive)"
        )
    auc = leakage["single_feature_auc"]
    scores = Table(title=f"single-feature AUC (flag >= {auc['threshold']})")
    scores.add_column("feature")
    scores.add_column("AUC", justify="right")
    scores.add_column("")
    for item in auc["features"][:TOP_AUC]:
        verdict = "[red]suspiciously near 1[/red]" if item["flagged"] else (item["note"] or "")
        scores.add_row(item["feature"], _num(item["auc"], 3), verdict)
    console.print(scores)
    if leakage["label_history_means"]:
        history = Table(title="label-history means by label (a gap is a hint)")
        history.add_column("feature")
        history.add_column("label 0", justify="right")
        history.add_column("label 1", justify="right")
        history.add_column("gap", justify="right")
        for name, means in leakage["label_history_means"].items():
            history.add_row(
                name, _num(means["label_0"], 4), _num(means["label_1"], 4), _num(means["gap"], 4)
            )
        console.print(history)


def _samples(report: dict[str, Any], console: Console) -> None:
    from rich.table import Table

    rows = report["samples"]["fraud"] + report["samples"]["non_fraud"]
    if not rows:
        return
    shown = ("order_id", "wallet_id", "event_id", "event_ts", "amount", "payment_method", "label")
    sample = Table(title="samples")
    for key in shown:
        sample.add_column(key, justify="left" if key in ("event_ts", "payment_method") else "right")
    for row in rows:
        sample.add_row(*(_cell(row.get(key)) for key in shown))
    console.print(sample)


def _checks(report: dict[str, Any], console: Console) -> None:
    from rich.markup import escape

    console.print("[bold]checks[/bold]")
    for check in report["checks"]:
        mark = "[green]✓[/green]" if check["ok"] else "[red]✗[/red]"
        console.print(f"  {mark} {check['name']}: {escape(check['detail'])}")
    failed = sum(not check["ok"] for check in report["checks"])
    total = len(report["checks"])
    console.print(
        f"[green]all {total} checks passed[/green]"
        if not failed
        else f"[red]{failed} of {total} checks failed[/red]"
    )
