"""The platform's schedule as a crontab block, and its idempotent merge into a crontab.

Every line runs `mlkit` by its absolute path with the absolute config path, under
`flock -n` on a lock file of its own (a run still going makes the next one skip instead
of piling up), appending stdout and stderr to a log file per job. The block sits between
two marker comments; installing replaces what is between them and keeps every other line.
The crontab program is `crontab` (`crontab -l` to read, `crontab -` to write), or the
command in $MLKIT_CRONTAB_CMD.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import MlkitError

BEGIN = "# >>> mlkit: managed by `mlkit cron show --install`; edits here are replaced >>>"
END = "# <<< mlkit <<<"
# Environment that would change which database or home a job uses; cron starts without it.
CARRIED_ENV = (
    "MLKIT_HOME",
    "MLKIT_DATABASE_URL",
    "MLKIT_REDIS_URL",
    "MLKIT_ARTIFACTS_DIR",
    "MLKIT_DATASETS_DIR",
    "MLKIT_LOGS_DIR",
)
_FIELD = re.compile(r"[0-9*/,\-A-Za-z]+")


@dataclass(frozen=True)
class Job:
    name: str  # the config key under `cron:` and the log / lock file name
    schedule: str
    commands: tuple[tuple[str, ...], ...]  # mlkit arguments; more than one run in sequence
    comment: str


def _jobs(config, symbols: list[str]) -> list[Job]:
    get = config.get
    jobs = [
        Job("etl", get("cron.etl"), (("etl", "run", "--since", "last"),),
            "fraud features of the new orders"),
        Job("kpi_refresh", get("cron.kpi_refresh"), (("kpi", "refresh"),),
            "the kpi_hourly view"),
        Job("retention", get("cron.retention"), (("retention", "run"),),
            "old orders and predictions into the archive tables"),
        Job("train_fraud", get("cron.train_fraud"),
            (("dataset", "build", "fraud"), ("train", "fraud", "--alias", "prod")),
            "a fresh snapshot and the fraud model; prod moves only if it validates"),
        Job("train_pricing", get("cron.train_pricing"), (("train", "mab"),),
            "the pricing bandit"),
        Job("train_recommender", get("cron.train_recommender"), (("train", "recommender"),),
            "the recommender"),
    ]  # fmt: skip
    for symbol in symbols:
        run = ("signal", "run", "--symbol", symbol)
        comment = f"the {symbol} signal (trains first when it has no model)"
        jobs.append(Job(f"signals_{symbol}", get("cron.signals"), (run,), comment))
    jobs += [
        Job("drift", get("cron.drift"), (("drift", "check"),),
            "training snapshot against recent orders; exit 3 when drifted"),
        Job("alerts", get("cron.alerts"), (("alerts", "check"),),
            "the alert rules; exit 3 while any fires"),
    ]  # fmt: skip
    return [job for job in jobs if str(job.schedule).strip()]


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


def build_block(
    config,
    *,
    symbols: list[str],
    env: dict[str, str] | None = None,
    executable: list[str] | None = None,
) -> dict[str, Any]:
    """The crontab block for the configured schedule, with what each line runs."""
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
    assignments = []
    for name in CARRIED_ENV:
        value = env.get(name)
        if not value:
            continue
        if "://" in value and urlsplit(value).password:
            warnings.append(
                f"{name} holds a password and is not copied into the crontab: put the URL "
                "in the config file (cron does not see your shell's environment)"
            )
            continue
        if name in ("MLKIT_HOME", "MLKIT_ARTIFACTS_DIR", "MLKIT_DATASETS_DIR", "MLKIT_LOGS_DIR"):
            value = str(Path(value).expanduser().resolve())
        assignments.append(f"{name}={shlex.quote(value)}")
    lines = [BEGIN]
    described = []
    for job in _jobs(config, symbols):
        schedule = check_schedule(job.name, job.schedule)
        log_file = logs / f"{job.name}.log"
        lock_file = locks / f"{job.name}.lock"
        runs = [" ".join(shlex.quote(part) for part in [*prefix, *args]) for args in job.commands]
        body = runs[0] if len(runs) == 1 else "sh -c " + shlex.quote(" && ".join(runs))
        command = " ".join(
            [*assignments, "flock", "-n", shlex.quote(str(lock_file)), body,
             ">>", shlex.quote(str(log_file)), "2>&1"]
        ).replace("%", "\\%")  # cron turns an unescaped % into a newline  # fmt: skip
        lines.append(f"# {job.name}: {job.comment}")
        lines.append(f"{schedule} {command}")
        described.append(
            {
                "name": job.name,
                "schedule": schedule,
                "command": command,
                "log": str(log_file),
                "lock": str(lock_file),
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
        "warnings": warnings,
    }


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


def install_block(block: str, *, logs_dir: str, locks_dir: str,
                  env: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
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
