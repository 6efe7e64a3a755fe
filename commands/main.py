"""The `mlkit` command: the root Typer app that joins one sub-app per area."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import typer

from mlkit.toolkit import __version__

from ._common import DatabaseOption, GlobalOptions, MlkitGroup, RedisOption

# Every command of `mlkit`, in the order `mlkit --help` lists them: (name, module, the
# module's Typer sub-app or command function). A module is imported, and its commands built
# into Click's objects, only when its command runs (or help lists it): building all of
# them cost about 0.1 s, which each one-decision command (`mab recommend`, `predict
# fraud`, ...) paid before doing anything.
COMMANDS = (
    ("status", "status_cmd", "status"),
    ("quickstart", "quickstart_cmd", "quickstart"),
    ("migrate", "migrate_cmd", "migrate"),
    ("dashboard", "dashboard_cmd", "dashboard"),
    ("serve", "serve_cmd", "serve"),
)
GROUPS = (
    ("config", "config_cmd", "app"),
    ("db", "db_cmd", "app"),
    ("sources", "sources_cmd", "app"),
    ("demo", "demo_cmd", "app"),
    ("inspect", "inspect_cmd", "app"),
    ("etl", "etl_cmd", "app"),
    ("features", "features_cmd", "app"),
    ("dataset", "dataset_cmd", "app"),
    ("train", "train_cmd", "app"),
    ("validate", "validate_cmd", "app"),
    ("score", "score_cmd", "score_app"),
    ("predict", "score_cmd", "predict_app"),
    ("models", "models_cmd", "app"),
    ("drift", "drift_cmd", "app"),
    ("alerts", "alerts_cmd", "app"),
    ("retention", "retention_cmd", "app"),
    ("kpi", "kpi_cmd", "app"),
    ("cron", "cron_cmd", "app"),
    ("ingest", "ingest_cmd", "app"),
    ("signal", "signal_cmd", "app"),
    ("mab", "mab_cmd", "app"),
    ("recommend", "recommend_cmd", "app"),
    ("export", "recommend_cmd", "export_app"),
    ("report", "report_cmd", "app"),
)


class LazyCommands(Mapping):
    """The root's commands by name, each built on first use exactly as Typer builds a
    registered sub-app (`app.add_typer(sub, name=...)`) or command (`app.command(name)`)."""

    def __init__(self, root: typer.Typer):
        self._root = root
        self._where = {name: (module, attribute, False) for name, module, attribute in COMMANDS}
        self._where |= {name: (module, attribute, True) for name, module, attribute in GROUPS}
        self._built: dict = {}

    def __getitem__(self, name: str):
        if name not in self._built:
            module, attribute, group = self._where[name]
            self._built[name] = _build(self._root, name, module, attribute, group)
        return self._built[name]

    def __iter__(self):
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


def _build(root: typer.Typer, name: str, module: str, attribute: str, group: bool):
    import importlib

    import typer.main
    from typer.models import TyperInfo

    target = getattr(importlib.import_module(f"{__package__}.{module}"), attribute)
    if group:
        return typer.main.get_group_from_info(
            TyperInfo(target, name=name),
            pretty_exceptions_short=root.pretty_exceptions_short,
            rich_markup_mode=root.rich_markup_mode,
            suggest_commands=root.suggest_commands,
        )
    holder = typer.Typer()
    holder.command(name)(target)
    return typer.main.get_command_from_info(
        holder.registered_commands[0],
        pretty_exceptions_short=root.pretty_exceptions_short,
        rich_markup_mode=root.rich_markup_mode,
    )


class MlkitRoot(MlkitGroup):
    """The `mlkit` group: its commands come from `LazyCommands`."""

    def __init__(self, **attrs):
        super().__init__(**attrs)
        self.commands = LazyCommands(app)


app = typer.Typer(
    cls=MlkitRoot,
    name="mlkit",
    help="Train, validate and operate the ML models of a commerce platform from its database.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"mlkit {__version__}")
        raise typer.Exit()


ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config", "-c", help="Config file (else $MLKIT_CONFIG, ./config.yaml).", metavar="PATH"
    ),
]
AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="Run as of this moment (sets MLKIT_NOW): every window counts back from it.",
        metavar="MOMENT",
    ),
]
VersionFlag = Annotated[
    bool,
    typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version."),
]


@app.callback()
def root(
    ctx: typer.Context,
    config: ConfigOption = None,
    database: DatabaseOption = None,
    redis: RedisOption = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show tracebacks and debug logs.")
    ] = False,
    as_of: AsOfOption = None,
    version: VersionFlag = False,
) -> None:
    ctx.obj = GlobalOptions(config, database, redis, verbose, as_of)
    if as_of is not None:
        _set_clock(ctx, as_of)
    import logging

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
    )


def _set_clock(ctx: typer.Context, moment: str) -> None:
    """MLKIT_NOW for this command (and what it starts), as a checked ISO moment in UTC."""
    import os

    from mlkit.toolkit.clock import NOW_VARIABLE, utcnow
    from mlkit.toolkit.errors import MlkitError

    previous = os.environ.get(NOW_VARIABLE)
    os.environ[NOW_VARIABLE] = moment.strip() or "unset"  # empty would mean the wall clock
    try:
        now = utcnow()
    except MlkitError:
        _restore(NOW_VARIABLE, previous)
        raise MlkitError(
            f"cannot read --as-of {moment!r}",
            hint="give an ISO moment like 2026-03-01 or 2026-03-01T02:00:00 (UTC)",
        ) from None
    os.environ[NOW_VARIABLE] = now.isoformat()
    # In-process callers (tests, the dashboard's runner) get their environment back.
    ctx.call_on_close(lambda: _restore(NOW_VARIABLE, previous))


def _restore(name: str, value: str | None) -> None:
    import os

    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def run() -> None:
    app()


if __name__ == "__main__":
    run()
