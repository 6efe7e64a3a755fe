"""What every command shares: global options, the error boundary, output and progress."""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    from mlkit.toolkit.config import Config
    from mlkit.toolkit.db import Engine


# The same `--json` flag on every command: one JSON document on stdout, nothing else there.
JsonFlag = Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")]


# The same `--yes` on every destructive command: it answers the question a terminal is asked.
YesFlag = Annotated[
    bool,
    typer.Option("--yes", "-y", help="Go ahead without asking (needed when not on a terminal)."),
]


# Options several commands take, said the same way everywhere.
SinceOption = Annotated[
    str | None,
    typer.Option("--since", help="30d, 12h (back from now) or 2026-01-01 [default: every order]."),
]
UntilOption = Annotated[
    str | None, typer.Option("--until", help="End of the range, exclusive [default: now].")
]
EngineOption = Annotated[
    str | None,
    typer.Option(
        "--engine",
        help="local, spark, or auto (spark above engine.auto_rows orders) [default: engine.name].",
    ),
]
ModelOption = Annotated[
    str, typer.Option("--model", help="The model version: NAME@ALIAS, NAME:VERSION or NAME.")
]
SymbolOption = Annotated[str, typer.Option("--symbol", help="The symbol, e.g. BTCUSDT.")]
# The drift check's model and window, shared by `drift check` and `report drift`.
DriftModelOption = Annotated[
    str | None,
    typer.Option("--model", help="The model version [default: drift.model, fraud@prod]."),
]
WindowOption = Annotated[
    str | None,
    typer.Option(
        "--window", help="Recent orders: 1d back from now, or a date [default: drift.window]."
    ),
]
OVERRIDES = "overrides config and environment."
DatabaseOption = Annotated[
    str | None, typer.Option("--database", help=f"Database URL; {OVERRIDES}", metavar="URL")
]
RedisOption = Annotated[
    str | None, typer.Option("--redis", help=f"Redis URL; {OVERRIDES}", metavar="URL")
]


def confirm_destructive(what: str, yes: bool, *, unattended: bool = False) -> None:
    """Go ahead when `--yes` was given or the user at a terminal agrees; else exit 1.

    `what` says what will be lost. Off a terminal (pipes, scripts) nobody can be asked, so
    `--yes` is required, unless `unattended` (a job cron runs whose work is reversible).
    """
    if yes:
        return
    if stdin_is_terminal():
        if typer.confirm(f"{what}. Go ahead?", default=False, err=True):
            return
        fail("aborted: nothing was changed")
    if unattended:
        return
    fail(f"{what}; not confirmed", hint="add --yes to go ahead (stdin is not a terminal)")


def stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


@dataclass
class GlobalOptions:
    config_path: str | None = None
    database_url: str | None = None
    redis_url: str | None = None
    verbose: bool = False
    as_of: str | None = None  # the clock's moment for this process (MLKIT_NOW), when given


def options(ctx: typer.Context) -> GlobalOptions:
    root = ctx.find_root()
    if not isinstance(root.obj, GlobalOptions):
        root.obj = GlobalOptions()
    return root.obj


def load_config(ctx: typer.Context, *, check_database: bool = True) -> Config:
    """The effective configuration, the global --config, --database and --redis applied."""
    from mlkit.toolkit.config import load_config as load

    opts = options(ctx)
    return load(
        opts.config_path,
        database_url=opts.database_url,
        redis_url=opts.redis_url,
        check_database=check_database,
    )


def open_engine(ctx: typer.Context, config: Config | None = None, *, check: bool = True) -> Engine:
    """The engine on the configured database: the one way every command and the dashboard
    connect. `check` connects once, so bad settings fail here as one error line."""
    from mlkit.toolkit.db import config_engine

    config = config or load_config(ctx)
    return config_engine(config, check=check)


def load_context(ctx: typer.Context, *, check: bool = True) -> tuple[Config, Engine]:
    """The configuration and an engine on its database."""
    config = load_config(ctx)
    return config, open_engine(ctx, config, check=check)


class MlkitGroup(TyperGroup):
    """The root group: turns failures into one `error:` line and exit code 1."""

    def invoke(self, ctx: typer.Context) -> Any:
        from mlkit.toolkit.errors import MlkitError, explain_unexpected

        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException, SystemExit):
            raise
        except MlkitError as exc:
            fail(exc.message, exc.hint, verbose=options(ctx).verbose, code=exc.exit_code)
        except KeyboardInterrupt:
            err("interrupted")
            raise typer.Exit(130) from None
        except Exception as exc:
            explained = explain_unexpected(exc)
            fail(explained.message, explained.hint, verbose=options(ctx).verbose)


def fail(message: str, hint: str | None = None, *, verbose: bool = False, code: int = 1) -> None:
    """`error:` and exit 1; a notice that is not a failure (exit 3) says `warning:`."""
    if verbose:
        traceback.print_exc(file=sys.stderr)
    err(f"{'error' if code == 1 else 'warning'}: {message}")
    if hint:
        err(f"hint: {hint}")
    raise typer.Exit(code)


def err(text: str) -> None:
    typer.echo(text, err=True)


def emit_json(document: Any) -> None:
    """One standard JSON document on stdout and nothing else there (NaN and infinities
    become null, see `formats.json_safe`)."""
    from mlkit.toolkit.formats import json_safe

    typer.echo(json.dumps(json_safe(document), indent=2, allow_nan=False))


# Pipes and log files (cron's) get whole table rows instead of Rich's 80 columns.
_PIPE_WIDTH = 10_000


def stdout_console():
    return _console(stderr=False)


def stderr_console():
    return _console(stderr=True)


def _console(*, stderr: bool):
    from rich.console import Console

    console = Console(stderr=stderr)
    if console.is_terminal:
        return console
    return Console(file=_StrippedLines(stderr=stderr), width=_PIPE_WIDTH)


class _StrippedLines:
    """A text stream writing each line to stdout or stderr without its trailing spaces,
    which Rich adds to pad titles and cells out to the (wide) console width."""

    def __init__(self, *, stderr: bool) -> None:
        self._stderr = stderr
        self._pending = ""

    @property
    def _target(self):
        return sys.stderr if self._stderr else sys.stdout

    @property
    def encoding(self) -> str:
        return getattr(self._target, "encoding", None) or "utf-8"

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        if lines:
            self._target.write("".join(line.rstrip(" ") + "\n" for line in lines))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._target.write(self._pending)
            self._pending = ""
        self._target.flush()


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Any]:
    """A callback `(label, done, total)` drawing a bar per label on stderr, silent when not a
    terminal. Nothing is drawn before the first call, so a question may come first."""
    console = stderr_console()
    if not enabled or not console.is_terminal:
        yield lambda label, done, total: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    tasks: dict[str, Any] = {}
    progress = Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )

    def update(label: str, done: int, total: int | None) -> None:
        if not tasks:
            progress.start()
        if label not in tasks:
            tasks[label] = progress.add_task(label, total=total)
        progress.update(tasks[label], completed=done, total=total)

    try:
        yield update
    finally:
        if tasks:
            progress.stop()
