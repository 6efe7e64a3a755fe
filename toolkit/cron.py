"""The platform's schedule as a crontab block, and its idempotent merge into a crontab.

Every line runs `mlkit cron run <job>` (see `toolkit.jobrun`) with the environment the jobs need but
never a secret (secrets go in the env file `cron run` loads); a block whose jobs would reach another
database under cron's bare environment is refused. Installing replaces only what lies between the
block's two marker comments.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .config import SECRET_KEYS, Config, load_config, mask_url
from .errors import NOTICE_EXIT, MlkitError

BEGIN = "# >>> mlkit: managed by `mlkit cron show --install`; edits here are replaced >>>"
END = "# <<< mlkit <<<"
# Overrides that change which database, home or env file a job uses; cron starts without them.
CARRIED_ENV = (
    "MLKIT_HOME",
    "MLKIT_DATABASE_URL",
    "MLKIT_REDIS_URL",
    "MLKIT_ARTIFACTS_DIR",
    "MLKIT_DATASETS_DIR",
    "MLKIT_LOGS_DIR",
    "MLKIT_ENV_FILE",
)
PATH_ENV = {
    "MLKIT_HOME",
    "MLKIT_ARTIFACTS_DIR",
    "MLKIT_DATASETS_DIR",
    "MLKIT_LOGS_DIR",
    "MLKIT_ENV_FILE",
}
# Per run, never for every run of a line: the simulated clock, the crontab program.
NEVER_CARRIED = {"MLKIT_NOW", "MLKIT_CRONTAB_CMD", "MLKIT_CONFIG"}
ENV_FILE_VARIABLE = "MLKIT_ENV_FILE"
ENV_FILE_NAME = "cron.env"
_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|API_KEY|PRIVATE_KEY", re.I)
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")
_ENV_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)")
_FIELD = re.compile(r"[0-9*/,\-A-Za-z]+")


@dataclass(frozen=True)
class Job:
    name: str  # the config key under `cron:` and the log / lock file name
    schedule: str
    commands: tuple[tuple[str, ...], ...]  # mlkit arguments; more than one run in sequence
    comment: str
    # The documented non-failure exit code of the job's check, and the word its log uses.
    notice_exit: int | None = None
    notice: str = ""


# A training whose candidate its gate kept from prod while a version serves on: not a failure.
KEPT = (NOTICE_EXIT, "kept")


def all_jobs(config: Config, symbols: list[str]) -> list[Job]:
    """Every job, scheduled or not ("" in the config leaves a job out of the block)."""
    get = config.get
    jobs = [
        Job(
            "etl",
            get("cron.etl"),
            (("etl", "run", "--since", "last"),),
            "fraud features of the new orders",
        ),
        Job(
            "features",
            # The materialized state serves online scoring from Redis: without Redis, no job.
            get("cron.features") if get("redis.enabled") else "",
            (("features", "materialize"),),
            "wallets with new activity to Redis for online scoring (period below the TTL)",
        ),
        Job(
            "kpi_refresh",
            get("cron.kpi_refresh"),
            (("kpi", "refresh"),),
            "kpi_hourly: the hours of orders and predictions added since the last refresh",
        ),
        Job(
            "retention",
            get("cron.retention"),
            (("retention", "run"),),
            "old orders and predictions into the archive tables",
        ),
        Job(
            "train_fraud",
            get("cron.train_fraud"),
            (("train", "fraud", "--alias", "prod"),),
            "features caught up, a fresh snapshot and the fraud model; prod moves only "
            "through its gate (exit 3: kept from prod, the serving version stays)",
            *KEPT,
        ),
        Job(
            "train_pricing",
            get("cron.train_pricing"),
            (("train", "mab", "--skip-if-too-few"),),
            "the pricing bandit",
            *KEPT,
        ),
        Job(
            "train_recommender",
            get("cron.train_recommender"),
            (("train", "recommender", "--skip-if-too-few"),),
            "the recommender",
            *KEPT,
        ),
    ]
    for symbol in symbols:
        run = ("signal", "run", "--symbol", symbol)
        comment = f"the {symbol} signal (trains first when it has no model)"
        jobs.append(Job(f"signals_{symbol}", get("cron.signals"), (run,), comment))
    jobs += [
        Job(
            "drift",
            get("cron.drift"),
            (("drift", "check"),),
            "training snapshot against recent orders; exit 3 when drifted",
            3,
            "drifted",
        ),
        Job(
            "alerts",
            get("cron.alerts"),
            (("alerts", "check"),),
            "the alert rules; exit 3 while any fires",
            3,
            "alerting",
        ),
    ]
    return jobs


def _jobs(config: Config, symbols: list[str]) -> list[Job]:
    return [job for job in all_jobs(config, symbols) if str(job.schedule).strip()]


def find_job(config: Config, name: str) -> Job:
    """The job `cron run NAME` runs; `signals_<SYMBOL>` for any symbol."""
    symbols = [name.removeprefix("signals_")] if name.startswith("signals_") else []
    for job in all_jobs(config, [s for s in symbols if s]):
        if job.name == name:
            return job
    known = [job.name for job in all_jobs(config, [])] + ["signals_<SYMBOL>"]
    raise MlkitError(f"no cron job named {name!r}", hint=f"known jobs: {', '.join(known)}")


def check_schedule(name: str, schedule: str) -> str:
    """Five crontab fields (or an @daily-style macro), checked for the obvious mistakes."""
    text = " ".join(str(schedule).split())
    if text.startswith("@"):
        macros = ("@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight")
        if text in macros:
            return text
    else:
        fields = text.split(" ")
        if len(fields) == 5 and all(_FIELD.fullmatch(f) for f in fields):
            return text
    raise MlkitError(
        f"cron.{name}: {schedule!r} is not a crontab schedule",
        hint="five fields: minute hour day-of-month month day-of-week, e.g. '0 2 * * *'",
    )


def mlkit_executable() -> list[str]:
    """How cron should call mlkit: the running `mlkit` script, else the one on PATH,
    else this Python with the module; always absolute."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name == "mlkit" and argv0.exists():
        return [str(argv0.resolve())]
    found = shutil.which("mlkit")
    if found:
        return [str(Path(found).resolve())]
    return [str(Path(sys.executable).resolve()), "-m", "mlkit.commands.main"]


# ---------------------------------------------------------------- the env file


def env_file_path(config: Config, env: dict[str, str] | None = None) -> Path:
    """$MLKIT_ENV_FILE, else `<home>/cron.env`."""
    env = os.environ if env is None else env
    given = env.get(ENV_FILE_VARIABLE, "").strip()
    return Path(given).expanduser() if given else config.home / ENV_FILE_NAME


def read_env_file(path: Path, *, required: bool = False) -> dict[str, str]:
    """KEY=value lines (`#` comments, blank lines, optional `export ` and quotes); {} when
    the file does not exist (unless `required`). Refused when group or others may open it:
    it holds the passwords the crontab must not."""
    try:
        info = path.stat()
    except FileNotFoundError:
        if required:
            raise MlkitError(
                f"env file {path} (from {ENV_FILE_VARIABLE}) not found",
                hint=f"create it (KEY=value lines, chmod 600) or unset {ENV_FILE_VARIABLE}",
            ) from None
        return {}
    except OSError as exc:
        raise MlkitError(f"cannot read the env file {path}: {exc.strerror}") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise MlkitError(
            f"env file {path} is open to group or others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}): chmod 600 it, it holds secrets",
            hint=f"chmod 600 {shlex.quote(str(path))}",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MlkitError(f"cannot read the env file {path}: {exc.strerror}") from None
    values = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _ENV_LINE.fullmatch(line)
        if match is None:  # the line may hold a secret: name its number, never its text
            raise MlkitError(
                f"env file {path}, line {number}: not a KEY=value line",
                hint="one KEY=value per line; # starts a comment",
            )
        name, value = match.group(1), match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


# ---------------------------------------------------------------- the environment of a line


def is_secret(name: str, value: str) -> bool:
    """A password-like name, or a URL with a password in it."""
    if _SECRET_NAME.search(name):
        return True
    return "://" in value and bool(_url_password(value))


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url.strip()).password
    except ValueError:
        return None


def config_variables(source: Path | None) -> dict[str, str]:
    """The variables the config file reads (`${VAR...}`, defaults included), each with
    what it feeds: "secret" (a password or webhook key), "path" (under `paths:` or
    `sqlite_path`), else "plain"."""
    if source is None:
        return {}
    import yaml

    try:
        raw = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}  # load_config has already said what is wrong with the file
    found: dict[str, str] = {}
    rank = {"plain": 0, "path": 1, "secret": 2}

    def walk(node: Any, keys: tuple[str, ...]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*keys, str(key)))
        elif isinstance(node, list):
            for item in node:
                walk(item, keys)
        elif isinstance(node, str):
            last = keys[-1] if keys else ""
            if last in SECRET_KEYS:
                kind = "secret"
            elif (keys[:1] == ("paths",)) or last == "sqlite_path":
                kind = "path"
            else:
                kind = "plain"
            for name in _REFERENCE.findall(node):
                if rank[kind] > rank[found.get(name, "plain")] or name not in found:
                    found[name] = kind

    walk(raw, ())
    return found


def _absolute_sqlite(url: str) -> str:
    """A relative SQLite URL made absolute against this directory (cron's is the home)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return url
    path, _, query = url[len(prefix) :].partition("?")
    if not path or path == ":memory:" or path.startswith("/"):
        return url
    absolute = str(Path(path).expanduser().resolve())
    return prefix + absolute + (f"?{query}" if query else "")


@dataclass(frozen=True)
class LineEnvironment:
    carried: dict[str, str]  # NAME -> value written on every line
    secrets: list[str]  # set now, secret, so only the env file may hold them
    missing_secrets: list[str]  # of those, the ones the env file does not hold yet
    env_file: Path


def line_environment(config: Config, env: dict[str, str]) -> LineEnvironment:
    """What each line carries, and which secrets belong in the env file instead."""
    kinds = dict.fromkeys(CARRIED_ENV, "plain") | config_variables(config.source)
    carried, secrets = {}, []
    for name, kind in kinds.items():
        value = env.get(name, "")
        if not value or name in NEVER_CARRIED:
            continue
        if kind == "secret" or is_secret(name, value):
            secrets.append(name)
            continue
        if "\n" in value or "\r" in value:
            raise MlkitError(
                f"{name} holds a line break, which a crontab line cannot carry",
                hint=f"set {name} to one line, or put it in the env file `mlkit cron run` loads",
            )
        if kind == "path" or name in PATH_ENV:
            value = str(Path(value).expanduser().resolve())
        elif "://" in value:
            value = _absolute_sqlite(value)
        carried[name] = value
    env_file = env_file_path(config, env)
    if ENV_FILE_VARIABLE in carried:
        env_file = Path(carried[ENV_FILE_VARIABLE])
    in_file = read_env_file(env_file, required=ENV_FILE_VARIABLE in carried)
    missing = [name for name in secrets if name not in in_file]
    return LineEnvironment(carried, secrets, missing, env_file)


def _sqlite_path(url: str) -> Path | None:
    path = url.partition("?")[0].removeprefix("sqlite:///") if url.startswith("sqlite:///") else ""
    return Path(path).expanduser() if path and path != ":memory:" else None


def _without_password(url: str | None) -> str | None:
    if not url or _url_password(url) is None:
        return url
    parts = urlsplit(url)
    user, _, host = parts.netloc.rpartition("@")
    return url.replace(parts.netloc, f"{user.split(':', 1)[0]}@{host}", 1)


def check_bare_environment(
    config: Config,
    plan: LineEnvironment,
    *,
    env: dict[str, str],
    database_flag: str | None = None,
    redis_flag: str | None = None,
) -> list[str]:
    """Refuse (MlkitError) when the jobs, seeing only what the line carries plus the env
    file, would use another database than the one in effect now; warnings for Redis."""
    bare = {name: env[name] for name in ("HOME", "PATH", "SHELL") if name in env}
    bare |= plan.carried
    in_file = read_env_file(plan.env_file)
    bare |= {k: v for k, v in in_file.items() if k not in bare or not bare[k]}
    relevant = set(CARRIED_ENV) | set(config_variables(config.source))
    differing = sorted(k for k, v in in_file.items() if k in relevant and env.get(k, "") != v)
    if plan.missing_secrets:
        hint = (
            f"put {', '.join(plan.missing_secrets)} in {plan.env_file} (KEY=value lines, "
            "chmod 600), which `mlkit cron run` loads"
        )
    elif differing:
        hint = (
            f"{plan.env_file} sets {', '.join(differing)} for cron, and this shell does "
            "not (or differently): export the same values here and run it again"
        )
    else:
        hint = (
            "set the database in the config file, or export the variables it reads when "
            "you run `mlkit cron show`"
        )
    try:
        seen = load_config(
            config.source,
            env=bare,
            database_url=_absolute_sqlite(database_flag) if database_flag else None,
            redis_url=redis_flag,
        )
    except MlkitError as exc:
        raise MlkitError(
            f"under cron's bare environment the jobs could not load their config: {exc.message}",
            hint=hint,
        ) from None
    relative = [
        str(path)
        for path in (seen.home, _sqlite_path(seen.database_url))
        if path is not None and not path.is_absolute()
    ]
    if relative:
        raise MlkitError(
            f"{relative[0]} is a relative path, and cron runs the jobs in your home directory",
            hint="make paths.home and database paths absolute in the config file",
        )
    now_url = _absolute_sqlite(config.database_url)
    cron_url = _absolute_sqlite(seen.database_url)
    if _without_password(now_url) != _without_password(cron_url):
        raise MlkitError(
            f"under cron's bare environment the jobs would use {mask_url(cron_url)}, not "
            f"{mask_url(now_url)}: refusing to print lines that write elsewhere",
            hint=hint,
        )
    warnings = []
    if _without_password(config.redis_url) != _without_password(seen.redis_url):
        shown = mask_url(seen.redis_url) if seen.redis_url else "none"
        warnings.append(
            f"under cron's bare environment the jobs would use Redis {shown}, not "
            f"{mask_url(config.redis_url) if config.redis_url else 'none'} ({hint})"
        )
    return warnings


# ---------------------------------------------------------------- the block


def build_block(
    config: Config,
    *,
    symbols: list[str],
    env: dict[str, str] | None = None,
    executable: list[str] | None = None,
    database_flag: str | None = None,
    redis_flag: str | None = None,
) -> dict[str, Any]:
    """The crontab block for the configured schedule, with what each line runs; `database_flag` /
    `redis_flag` (the global flags given now) are passed on, refused when they hold a password.
    """
    env = dict(os.environ if env is None else env)
    executable = executable or mlkit_executable()
    logs = config.logs_dir.expanduser().resolve()
    locks = logs / "locks"
    prefix = list(executable)
    warnings = []
    if config.source is not None:
        prefix += ["--config", str(Path(config.source).resolve())]
    else:
        warnings.append(
            "no config file is in use: the jobs run with the built-in defaults; write one "
            "(e.g. copy config.yaml) and pass --config to pin it"
        )
    for option, value in (("--database", database_flag), ("--redis", redis_flag)):
        if not value:
            continue
        if _url_password(value):
            raise MlkitError(
                f"{option} holds a password, which a crontab line must not",
                hint="read the URL from a variable in the config file and put that variable "
                "in the env file `mlkit cron run` loads (chmod 600)",
            )
        prefix += [option, _absolute_sqlite(value)]
    plan = line_environment(config, env)
    warnings += check_bare_environment(
        config, plan, env=env, database_flag=database_flag, redis_flag=redis_flag
    )
    if plan.missing_secrets:
        warnings.append(
            f"{', '.join(plan.missing_secrets)} stay out of the crontab (secrets): put them "
            f"in {plan.env_file} as KEY=value lines and `chmod 600` it; `mlkit cron run` "
            "loads it"
        )
    assignments = [f"{name}={shlex.quote(value)}" for name, value in plan.carried.items()]
    lines = [BEGIN]
    described = []
    for job in _jobs(config, symbols):
        schedule = check_schedule(job.name, job.schedule)
        parts = [*assignments, *(shlex.quote(p) for p in [*prefix, "cron", "run", job.name])]
        command = " ".join(parts).replace("%", "\\%")  # cron turns a bare % into a newline
        lines.append(f"# {job.name}: {job.comment}")
        lines.append(f"{schedule} {command}")
        described.append(
            {
                "name": job.name,
                "schedule": schedule,
                "command": command,
                "runs": [" ".join(["mlkit", *args]) for args in job.commands],
                "log": str(logs / f"{job.name}.log"),
                "lock": str(locks / f"{job.name}.lock"),
            }
        )
    if not symbols:
        warnings.append(
            "no market data yet: the hourly signal lines are left out (run `mlkit cron show "
            "--install` again after `mlkit ingest market`)"
        )
    lines.append(END)
    return {
        "block": "\n".join(lines) + "\n",
        "jobs": described,
        "logs_dir": str(logs),
        "locks_dir": str(locks),
        "env_file": str(plan.env_file),
        "carried_env": sorted(plan.carried),
        "env_file_needs": plan.secrets,
        "warnings": warnings,
    }


def cron_block(
    config: Config,
    *,
    database_flag: str | None = None,
    redis_flag: str | None = None,
    install: bool = False,
) -> dict[str, Any]:
    """`mlkit cron show`: the block with a signal line per symbol with market data, merged
    into the crontab when `install` (the outcome under "install")."""
    symbols, warnings = market_symbols(config)
    document = build_block(
        config, symbols=symbols, database_flag=database_flag, redis_flag=redis_flag
    )
    document["warnings"] = warnings + document["warnings"]
    if install:
        document["install"] = install_block(
            document["block"], logs_dir=document["logs_dir"], locks_dir=document["locks_dir"]
        )
    return document


def market_symbols(config: Config) -> tuple[list[str], list[str]]:
    """Symbols with market data, for the hourly signal lines, and a warning when they
    cannot be read."""
    import sqlalchemy as sa

    from .db import config_engine, dialect_name, parse_url
    from .signal.market import symbols_overview

    url = parse_url(config.database_url)
    if dialect_name(url) == "sqlite" and not Path(url.database or "").expanduser().is_file():
        return [], []  # no database yet: reading it would create an empty file
    try:
        engine = config_engine(config)
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("market_data"):
                return [], []
        return list(symbols_overview(engine)), []
    except MlkitError as exc:
        return [], [f"cannot read the symbols with market data ({exc.message})"]


# ---------------------------------------------------------------- merging


def merge_block(existing: str, block: str) -> str:
    """`existing` with its mlkit block replaced by `block` (appended when there is none);
    every other line is kept as it was."""
    lines = existing.splitlines()
    begins = [i for i, line in enumerate(lines) if line.strip() == BEGIN]
    ends = [i for i, line in enumerate(lines) if line.strip() == END]
    if len(begins) != len(ends) or any(e < b for b, e in zip(begins, ends, strict=False)):
        raise MlkitError(
            "the crontab holds an mlkit marker without its partner",
            hint=f"fix it with `crontab -e`: the block runs from {BEGIN!r} to {END!r}",
        )
    new = block.rstrip("\n").splitlines()
    if not begins:
        kept = list(lines)
        while kept and not kept[-1].strip():
            kept.pop()
        merged = kept + ([""] if kept else []) + new
    else:
        merged, position = [], 0
        for index, (b, e) in enumerate(zip(begins, ends, strict=True)):
            merged += lines[position:b]
            if index == 0:  # the block stays where the user put it; duplicates go
                merged += new
            position = e + 1
        merged += lines[position:]
    return "\n".join(merged) + "\n"


def crontab_command(env: dict[str, str] | None = None) -> list[str]:
    env = os.environ if env is None else env
    custom = env.get("MLKIT_CRONTAB_CMD", "").strip()
    return shlex.split(custom) if custom else ["crontab"]


def _run(command: list[str], args: list[str], stdin: str | None = None):
    try:
        return subprocess.run(
            [*command, *args], input=stdin, capture_output=True, text=True, timeout=30
        )
    except FileNotFoundError:
        raise MlkitError(
            f"{command[0]!r} is not installed",
            hint="install cron, or copy the block from `mlkit cron show` into your scheduler",
        ) from None
    except subprocess.TimeoutExpired:
        raise MlkitError(f"`{' '.join(command)} {' '.join(args)}` did not answer in 30 s") from None


def read_crontab(command: list[str]) -> str:
    result = _run(command, ["-l"])
    if result.returncode == 0:
        return result.stdout
    if "no crontab" in (result.stderr + result.stdout).lower():
        return ""
    raise MlkitError(
        f"`{' '.join(command)} -l` failed: {(result.stderr or result.stdout).strip()}",
        hint="check that you may use cron (/etc/cron.allow)",
    )


def install_block(
    block: str, *, logs_dir: str, locks_dir: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Merge the block into the user's crontab; writes only when something changes."""
    command = crontab_command(env)
    current = read_crontab(command)
    merged = merge_block(current, block)
    for folder in (logs_dir, locks_dir):
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MlkitError(f"cannot create {folder}: {exc.strerror}") from None
    if merged == current:
        return {"changed": False}
    result = _run(command, ["-"], stdin=merged)
    if result.returncode != 0:
        raise MlkitError(
            f"`{' '.join(command)} -` refused the new crontab: "
            f"{(result.stderr or result.stdout).strip()}",
            hint="nothing was changed; check the block with `mlkit cron show`",
        )
    return {"changed": True}
