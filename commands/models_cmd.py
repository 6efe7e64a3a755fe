"""`mlkit models`: the registry's versions, their aliases and the history of every move."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from mlkit.toolkit.formats import version_label, when

from ._common import JsonFlag, emit_json, err, load_context, open_engine, stdout_console

if TYPE_CHECKING:
    from mlkit.toolkit.registry import AliasMove

app = typer.Typer(
    help="List, show, promote and roll back registered model versions.", no_args_is_help=True
)

AliasOption = Annotated[
    str, typer.Option("--alias", "-a", help="The alias to move, e.g. prod or candidate.")
]
NameArgument = Annotated[str, typer.Argument(help="Model name, e.g. fraud.")]
ReasonOption = Annotated[
    str | None, typer.Option("--reason", help="Why, recorded in the alias history.")
]
# Metrics worth a column in `models list`, in this order, when a version has them.
LIST_METRICS = ("auc_pr", "auc_roc", "f1", "oracle_auc_pr", "accuracy", "rmse")


def _num(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


@app.command("list")
def list_(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Argument(help="Only this model (default: every model).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Every registered version with its aliases, key metrics and creation time.

    Example: mlkit models list fraud --json
    """
    from mlkit.toolkit.registry import list_versions

    versions = list_versions(open_engine(ctx), name)
    if as_json:
        emit_json([mv.as_dict() for mv in versions])
        return
    if not versions:
        err(f"no version of {name} is registered" if name else "no model is registered yet")
        err("hint: train one with `mlkit train fraud`")
        return
    from rich.markup import escape
    from rich.table import Table

    shown = [m for m in LIST_METRICS if any(m in mv.metrics for mv in versions)][:3]
    table = Table(title="registered models")
    table.add_column("model", no_wrap=True)
    table.add_column("version", no_wrap=True)
    table.add_column("aliases")
    for metric in shown:
        table.add_column(metric, justify="right", no_wrap=True)
    table.add_column("created (UTC)")
    table.add_column("dataset", overflow="fold")
    for mv in versions:
        table.add_row(
            mv.name,
            f"v{mv.version}",
            ", ".join(mv.aliases) or "-",
            *(_num(mv.metrics.get(m)) for m in shown),
            f"{mv.created_at:%Y-%m-%d %H:%M}" if mv.created_at else "-",
            escape(_short(mv.dataset_ref)),
        )
    stdout_console().print(table)


def _short(text: str | None, width: int = 40) -> str:
    """A dataset reference by its last path parts (`dt=.../run_id=...`)."""
    if not text:
        return "-"
    tail = "/".join(text.replace("\\", "/").rstrip("/").split("/")[-2:])
    return tail if len(tail) <= width else "…" + tail[-(width - 1) :]


@app.command("show")
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="fraud@prod, fraud:3 or fraud (the latest).")],
    as_json: JsonFlag = False,
) -> None:
    """One version in full: artifact and its sha256 check, which version serves (and why
    not this one: its promotion gate's verdict), metrics, params, features.

    Example: mlkit models show fraud@prod
    """
    from mlkit.toolkit.registry import describe_version

    config, engine = load_context(ctx)
    report = describe_version(engine, ref, config.artifacts_dir)
    mv, check = report.model, report.check
    if as_json:
        emit_json(report.as_dict())
        return
    from rich.markup import escape
    from rich.table import Table

    console = stdout_console()
    table = Table(title=f"{mv.ref}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    rows = [
        ("family", mv.family),
        ("aliases", ", ".join(mv.aliases) or "-"),
        ("created", when(mv.created_at)),
        ("artifact", str(mv.artifact_path)),
        ("sha256", mv.sha256),
        ("artifact check", check),
        ("format", report.format),
        ("dataset", mv.dataset_ref or "-"),
        (
            "features",
            f"{len(mv.features)}: {', '.join(mv.features[:12])}"
            + (" …" if len(mv.features) > 12 else ""),
        ),
        ("input example", f"{len(mv.input_example)} row(s)"),
        ("serving", _serving(report.serving)),
        ("gate", report.serving["gate"] or "no verdict (registered before promotion gates)"),
    ]
    for key, value in rows:
        table.add_row(key, escape(value))
    console.print(table)
    for title, values, fmt in (("metrics", mv.metrics, _num), ("params", mv.params, str)):
        if not values:
            continue
        sub = Table(title=title)
        sub.add_column("name")
        sub.add_column("value", justify="right", overflow="fold")
        for key, value in values.items():
            sub.add_row(escape(str(key)), escape(fmt(value)))
        console.print(sub)


@app.command("diff")
def diff(
    ctx: typer.Context,
    a: Annotated[str, typer.Argument(help="The first version, e.g. fraud:2.")],
    b: Annotated[str, typer.Argument(help="The second version, e.g. fraud@prod.")],
    every: Annotated[bool, typer.Option("--all", help="Also the rows that are equal.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Two versions' metrics, features and parameters side by side, with B minus A.

    Example: mlkit models diff fraud:2 fraud@prod
    """
    from mlkit.toolkit.report.diff import diff_versions

    result = diff_versions(open_engine(ctx), a, b)
    if as_json:
        emit_json(result.as_dict())
        return
    from rich.markup import escape
    from rich.table import Table

    shown = result.rows if every else result.changed
    table = Table(title=f"{result.a} → {result.b}" + ("" if every else " (what differs)"))
    for column, justify in (("section", "left"), ("key", "left"), (result.a, "right")):
        table.add_column(column, justify=justify)
    table.add_column(result.b, justify="right", overflow="fold")
    table.add_column("change", justify="right")
    for row in shown:
        change = "" if row["change"] is None else f"{row['change']:+.4g}"
        cells = (row["section"], row["key"], _listed(row["a"]), _listed(row["b"]), change)
        table.add_row(*(escape(str(c)) for c in cells))
    console = stdout_console()
    console.print(table)
    console.print(
        f"features: {result.shared_features} shared; only in {result.a}: "
        f"{escape(', '.join(result.only_a) or '-')}; only in {result.b}: "
        f"{escape(', '.join(result.only_b) or '-')}",
        soft_wrap=True,
    )


def _serving(serving: dict[str, Any]) -> str:
    """Which version serves, and when not this one, why."""
    alias = serving["alias"]
    if serving["this"]:
        return f"this version ({alias})"
    serves = f"{alias}: {version_label(serving['version'])}"
    return f"{serves}; this version does not serve: " + "; ".join(serving["reasons"])


def _listed(value: Any) -> str:
    """A value for a table cell; a list's items each as `_num` writes them."""
    return ", ".join(map(_num, value)) if isinstance(value, list) else _num(value)


def _report_move(move: AliasMove, as_json: bool) -> None:
    if as_json:
        emit_json(move.as_dict())
        return
    where, to = f"{move.name}@{move.alias}", move.model.version
    if not move.moved:
        stdout_console().print(f"{where} already points at v{to}; nothing moved")
    else:
        was = "nothing" if move.from_version is None else version_label(move.from_version)
        stdout_console().print(f"{where}: {was} → v{to}")


@app.command("promote")
def promote(
    ctx: typer.Context,
    name: NameArgument,
    version: Annotated[int, typer.Argument(help="Version number to point the alias at.")],
    alias: AliasOption,
    reason: ReasonOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Point an alias at a version after it passes validation; the move is recorded.

    A version that fails validation (sha256, loading, features, metric gates) is refused
    and the alias stays where it was.

    Example: mlkit models promote fraud 3 --alias prod --reason "better AUC-PR"
    """
    from mlkit.toolkit.validation import promote_validated

    config, engine = load_context(ctx)
    _report_move(promote_validated(engine, config, name, version, alias, reason=reason), as_json)


@app.command("rollback")
def rollback(
    ctx: typer.Context,
    name: NameArgument,
    alias: AliasOption,
    reason: ReasonOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Move an alias back to the version it named before its latest move.

    Example: mlkit models rollback fraud --alias prod
    """
    from mlkit.toolkit.registry import rollback_alias

    _report_move(rollback_alias(open_engine(ctx), name, alias, reason=reason), as_json)


@app.command("history")
def history(ctx: typer.Context, name: NameArgument, as_json: JsonFlag = False) -> None:
    """Every alias move of a model, oldest first: when, who, from which version to which.

    Example: mlkit models history fraud --json
    """
    from mlkit.toolkit import registry

    rows = registry.history(open_engine(ctx), name)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        err(f"no alias of {name} has been moved yet")
        err(f"hint: `mlkit models promote {name} N --alias candidate`")
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"alias history of {name}")
    for column in ("changed", "alias", "action", "from", "to", "by", "reason"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            when(row["changed_at"]),
            row["alias"],
            row["action"],
            version_label(row["from_version"]),
            version_label(row["to_version"]),
            escape(row["changed_by"]),
            escape(row["reason"] or ""),
        )
    stdout_console().print(table)
