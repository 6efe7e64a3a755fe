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
    from mlkit.toolkit.config import Config
    from mlkit.toolkit.migrate import MigrationReport

# The trading system's variables behind each `mysql:` setting, named in errors.
MYSQL_VARIABLES = {"host": "MYSQL_HOST", "user": "MYSQL_USER", "db": "MYSQL_DB"}


def mysql_target(config: Config) -> str | None:
    """The MySQL URL from MYSQL_* (through config.yaml's `mysql:`) when MYSQL_ENABLED is
    true; None when it is not."""
    from sqlalchemy.engine import URL

    from mlkit.toolkit.errors import MlkitError

    section = config.data["mysql"]
    if not section["enabled"]:
        return None
    missing = [var for key, var in MYSQL_VARIABLES.items() if not str(section[key]).strip()]
    if missing:
        raise MlkitError(
            f"MYSQL_ENABLED is true but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set",
            hint="export the missing variable(s), or pass --target URL",
        )
    return URL.create(
        "mysql+pymysql",
        username=section["user"],
        password=section["password"] or None,
        host=section["host"],
        port=int(section["port"]) if section["port"] else None,
        database=section["db"],
        query={"charset": section["charset"]} if section["charset"] else {},
    ).render_as_string(hide_password=False)


def migrate(
    ctx: typer.Context,
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            help="Database URL to read (default: the configured database).",
            metavar="URL",
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            help="Database URL to fill (default: MYSQL_* when MYSQL_ENABLED=true).",
            metavar="URL",
        ),
    ] = None,
    tables: Annotated[
        list[str] | None,
        typer.Option("--tables", help="Only these tables (repeat or comma-separate).", metavar="T"),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="Leave these tables out.", metavar="T"),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            min=1,
            help="Rows per batch and commit [default: migrate.batch_size, 1000; MySQL's "
            "LOAD DATA up to 50,000 as row width allows].",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show DDL, rows and batches; write nothing.")
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted migration.")
    ] = False,
    replace: Annotated[
        bool,
        typer.Option("--replace", help="Drop the target's tables of the same name first (asks)."),
    ] = False,
    verify: Annotated[
        bool,
        typer.Option("--verify/--no-verify", help="Compare row counts and checksums afterwards."),
    ] = True,
    on_error: Annotated[
        str,
        typer.Option(
            "--on-error",
            help="A value the target cannot hold: fail, or skip the row into the reject file.",
            metavar="fail|skip",
        ),
    ] = "fail",
    reject_file: Annotated[
        Path | None,
        typer.Option(
            "--reject-file",
            help="Where skipped rows go (default: <home>/migrations/<id>-rejects.jsonl).",
            metavar="PATH",
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Tracebacks and per-table steps.")
    ] = False,
    yes: YesFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Move every table (or --tables) from --source to --target: types translated by
    reflection and sized by the longest stored value, rows streamed in committed batches,
    resumable after a crash, verified by row counts and order-independent checksums.
    --replace asks first on a terminal and needs --yes elsewhere.

    Example: mlkit migrate --source sqlite:///mlkit.db --target mysql+pymysql://root@127.0.0.1/shop
    """
    from mlkit.toolkit.errors import MlkitError
    from mlkit.toolkit.migrate import MigrationOptions
    from mlkit.toolkit.migrate import migrate as run
    from mlkit.toolkit.migrate.run import migration_id

    if verbose:
        options(ctx).verbose = True
    if on_error not in ("fail", "skip"):
        raise typer.BadParameter("use fail or skip", param_hint="--on-error")
    if resume and replace:
        raise typer.BadParameter("--resume and --replace contradict each other")
    if replace and not dry_run:
        confirm_destructive("--replace drops the target's tables of the same name first", yes)
    config = load_config(ctx)
    source = source or config.database_url
    target = target or mysql_target(config)
    if not target:
        raise MlkitError(
            "no target database",
            hint="pass --target URL, or set MYSQL_ENABLED=true with MYSQL_HOST, MYSQL_USER, "
            "MYSQL_PASSWORD and MYSQL_DB",
        )
    if reject_file is None:
        folder = config.home / "migrations"
        reject_file = folder / f"{migration_id(source, target)}-rejects.jsonl"
    settings = MigrationOptions(
        source=source,
        target=target,
        tables=tables or None,
        exclude=exclude or None,
        batch_size=batch_size,
        default_batch_size=int(config.data["migrate"]["batch_size"]),
        dry_run=dry_run,
        resume=resume,
        replace=replace,
        verify=verify,
        on_error=on_error,
        reject_file=reject_file,
    )
    say = err if verbose and not as_json else None
    with progress_bar(not as_json) as bar:
        report = run(settings, on_progress=bar, log=say)
    if as_json:
        emit_json(report.document())
    else:
        _print(report)
    _exit_status(report)


def _exit_status(report: MigrationReport) -> None:
    from mlkit.toolkit.errors import MlkitError

    if report.mismatched:
        raise MlkitError(
            f"verification failed for {', '.join(report.mismatched)}: the target's rows differ "
            "from the source's",
            hint="see the verify columns above; --replace copies those tables again",
        )
    if report.problems:
        raise MlkitError(report.problems[0], hint=f"{len(report.problems)} problem(s) in all")


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
                verified = "ok" if t.verify["ok"] else "MISMATCH"
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
        total = sum(t.copied for t in report.tables)
        console.print(f"{total:,} rows in {report.seconds:.1f}s")
    if report.views:
        err(f"note: views not copied: {', '.join(report.views)}")
    if report.skipped_tables:
        err(f"note: not copied (migration bookkeeping): {', '.join(report.skipped_tables)}")
