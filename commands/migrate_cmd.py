"""`mlkit migrate`: move a database to another (SQLite, PostgreSQL, MySQL, any direction)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ._common import (
    JsonFlag,
    YesFlag,
    confirm_destructive,
    emit_json,
    err,
    load_config,
    options,
    progress_bar,
    stdout_console,
)

if TYPE_CHECKING:
    from mlkit.toolkit.migrate import MigrationReport


SourceOption = Annotated[
    str | None,
    typer.Option(
        "--source", metavar="URL", help="Database URL to read (default: the configured database)."
    ),
]
TargetOption = Annotated[
    str | None,
    typer.Option(
        "--target",
        metavar="URL",
        help="Database URL to fill (default: MYSQL_* when MYSQL_ENABLED=true).",
    ),
]
TablesOption = Annotated[
    list[str] | None,
    typer.Option("--tables", help="Only these tables (repeat or comma-separate).", metavar="T"),
]
ExcludeOption = Annotated[
    list[str] | None, typer.Option("--exclude", help="Leave these tables out.", metavar="T")
]
BatchSizeOption = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        min=1,
        help="Rows per batch and commit [default: migrate.batch_size, 1000; MySQL's "
        "LOAD DATA and PostgreSQL's COPY up to 50,000 as row width allows].",
    ),
]
DryRunFlag = Annotated[
    bool, typer.Option("--dry-run", help="Show DDL, rows and batches; write nothing.")
]
ResumeFlag = Annotated[bool, typer.Option("--resume", help="Continue an interrupted migration.")]
ReplaceFlag = Annotated[
    bool, typer.Option("--replace", help="Drop the target's tables of the same name first (asks).")
]
VerifyFlag = Annotated[
    bool, typer.Option("--verify/--no-verify", help="Compare row counts and checksums afterwards.")
]
ReadBackFlag = Annotated[
    bool,
    typer.Option(
        "--read-back",
        help="Verify by reading every row back and hashing it here, even where the target "
        "(PostgreSQL, MariaDB) computes its checksum itself.",
    ),
]
OnErrorOption = Annotated[
    str,
    typer.Option(
        "--on-error",
        metavar="fail|skip",
        help="A value the target cannot hold: fail, or skip the row into the reject file.",
    ),
]
RejectFileOption = Annotated[
    Path | None,
    typer.Option(
        "--reject-file",
        metavar="PATH",
        help="Where skipped rows go (default: <home>/migrations/<id>-rejects.jsonl).",
    ),
]
VerboseFlag = Annotated[
    bool, typer.Option("--verbose", "-v", help="Tracebacks and per-table steps.")
]


def migrate(
    ctx: typer.Context,
    source: SourceOption = None,
    target: TargetOption = None,
    tables: TablesOption = None,
    exclude: ExcludeOption = None,
    batch_size: BatchSizeOption = None,
    dry_run: DryRunFlag = False,
    resume: ResumeFlag = False,
    replace: ReplaceFlag = False,
    verify: VerifyFlag = True,
    read_back: ReadBackFlag = False,
    on_error: OnErrorOption = "fail",
    reject_file: RejectFileOption = None,
    verbose: VerboseFlag = False,
    yes: YesFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Move every table (or --tables) from --source to --target: types translated by
    reflection and sized by the longest stored value, rows streamed in committed batches,
    resumable after a crash, verified by row counts and order-independent checksums.
    --replace asks first on a terminal and needs --yes elsewhere.

    Example: mlkit migrate --source sqlite:///mlkit.db --target mysql+pymysql://root@127.0.0.1/shop
    """
    from mlkit.toolkit.migrate import migrate_configured

    if verbose:
        options(ctx).verbose = True
    if on_error not in ("fail", "skip"):
        raise typer.BadParameter("use fail or skip", param_hint="--on-error")
    if resume and replace:
        raise typer.BadParameter("--resume and --replace contradict each other")
    if replace and not dry_run:
        confirm_destructive("--replace drops the target's tables of the same name first", yes)
    config = load_config(ctx)
    with progress_bar(not as_json) as bar:
        report = migrate_configured(
            config,
            source=source,
            target=target,
            dry_run=dry_run,
            resume=resume,
            replace=replace,
            tables=tables or None,
            exclude=exclude or None,
            verify=verify,
            read_back=read_back,
            batch_size=batch_size,
            on_error=on_error,
            reject_file=reject_file,
            on_progress=bar,
            log=err if verbose and not as_json else None,
        )
    if as_json:
        emit_json(report.document())
    else:
        _print(report)
    failure = report.failure()
    if failure is not None:
        raise failure


def _print(report: MigrationReport) -> None:
    from rich.table import Table

    console = stdout_console()
    if report.dry_run:
        # Plain echo: DDL must not be wrapped or styled.
        typer.echo(
            f"dry run: {report.source} ({report.source_dialect}) -> {report.target} "
            f"({report.target_dialect}); nothing written"
        )
        for note in report.notes:
            typer.echo(f"note: {note}")
        for t in report.tables:
            typer.echo(f"\n-- {t.table}: {t.rows:,} rows in {t.batches:,} batch(es), {t.strategy}")
            for statement in t.ddl:
                typer.echo(statement)
            for note in t.notes:
                typer.echo(f"-- note: {note}")
    else:
        table = Table(title=f"{report.source} -> {report.target}")
        for name, justify in (
            ("table", "left"),
            ("rows", "right"),
            ("copied", "right"),
            ("rejected", "right"),
            ("rows/s", "right"),
            ("status", "left"),
            ("verified", "left"),
        ):
            table.add_column(name, justify=justify)
        for t in report.tables:
            verified = "-"
            if t.verify is not None:
                verified = ("ok" if t.verify["ok"] else "MISMATCH") + f" ({t.verify['method']})"
            rate = f"{t.copied / t.seconds:,.0f}" if t.seconds and t.copied else "-"
            table.add_row(
                t.table,
                f"{t.rows:,}",
                f"{t.copied:,}",
                f"{t.rejected:,}",
                rate,
                t.status,
                verified,
            )
        console.print(table)
        notes = [(t.table, n) for t in report.tables for n in t.notes]
        for name, note in notes:
            err(f"note: {name}: {note}")
        if report.reject_file:
            err(f"rejected rows: {report.reject_file}")
        console.print(f"{report.rows_copied:,} rows in {report.seconds:.1f}s")
    if report.views:
        err(f"note: views not copied: {', '.join(report.views)}")
    if report.skipped_tables:
        err(f"note: not copied (migration bookkeeping): {', '.join(report.skipped_tables)}")
