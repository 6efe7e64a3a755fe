"""`mlkit cron run JOB`: one crontab line's run, logged with timestamps and reported to MAILTO.

The job's commands run as child processes under a non-blocking flock, so a crash stays in the child
and a run still going makes this one a logged skip (exit 0). Each line of `<logs>/<job>.log` starts
with the clock's ISO moment and the job's name; a failed run returns exit 1 and one summary line for
stderr.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .clock import utcnow
from .config import load_config
from .cron import ENV_FILE_VARIABLE, Job, env_file_path, find_job, read_env_file
from .datasets import private_mkdir
from .errors import MlkitError

SKIP_MESSAGE = "skipped: the previous run is still going"


@dataclass(frozen=True)
class JobResult:
    job: str
    exit_code: int  # what `cron run` exits with: 0, the job's notice code, or 1
    outcome: str  # ok | skipped | failed | the job's notice word
    log: Path
    summary: str | None  # the one stderr line of a failure, for cron's MAILTO


def child_command() -> list[str]:
    """This interpreter running mlkit: the children see the same installation."""
    return [sys.executable, "-m", "mlkit.commands.main"]


def stamp() -> str:
    return utcnow().isoformat() + "Z"


@contextmanager
def _held(lock_path: Path) -> Iterator[bool]:
    """True while this process holds the flock on `lock_path`; False when another does."""
    import fcntl

    handle = open(lock_path, "a")  # noqa: SIM115 - held for the whole run
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()


def run_job(
    name: str,
    *,
    config_path: str | None = None,
    database_url: str | None = None,
    redis_url: str | None = None,
    verbose: bool = False,
    env: dict[str, str] | None = None,
    command: list[str] | None = None,
) -> JobResult:
    """Run cron job `name` under its lock, logging every line with a timestamp."""
    env = dict(os.environ if env is None else env)
    config = load_config(config_path, database_url=database_url, redis_url=redis_url, env=env)
    job = find_job(config, name)
    logs = config.logs_dir.expanduser().resolve()
    try:
        private_mkdir(logs / "locks")  # logs hold the jobs' output: customers' figures
    except OSError as exc:
        raise MlkitError(
            f"cannot create the log folder {logs / 'locks'}: {exc.strerror}",
            hint="check paths.logs (or paths.home) and its permissions",
        ) from None
    log_path = logs / f"{job.name}.log"
    lock_path = logs / "locks" / f"{job.name}.lock"
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with _held(lock_path) as mine, open(log_fd, "a", encoding="utf-8", buffering=1) as log:
        if not mine:
            _write(log, job.name, SKIP_MESSAGE)
            return JobResult(job.name, 0, "skipped", log_path, None)
        flags = _global_flags(config, database_url, redis_url, verbose)
        return _run_logged(job, log, log_path, config, env, flags, command)


def _global_flags(config, database_url, redis_url, verbose) -> list[str]:
    flags = ["--config", str(Path(config.source).resolve())] if config.source else []
    flags += ["--database", database_url] if database_url else []
    flags += ["--redis", redis_url] if redis_url else []
    return flags + (["--verbose"] if verbose else [])


def _write(log: IO[str], job: str, text: str) -> None:
    log.write(f"{stamp()} {job} {text}\n")


def _run_logged(
    job: Job,
    log: IO[str],
    log_path: Path,
    config,
    env: dict[str, str],
    flags: list[str],
    command: list[str] | None,
) -> JobResult:
    started = time.monotonic()
    _write(log, job.name, "start: " + " && ".join(_shown(args) for args in job.commands))
    last_error, code = "", 0
    try:
        path = env_file_path(config, env)
        from_file = read_env_file(path, required=bool(env.get(ENV_FILE_VARIABLE, "").strip()))
    except MlkitError as exc:
        last_error, code = f"error: {exc.message}", 1
        _write(log, job.name, f"| {last_error}")
    else:
        child_env = env | {k: v for k, v in from_file.items() if not env.get(k)}
        for args in job.commands:
            code, last_error = _run_child(
                [*(command or child_command()), *flags, *args], child_env, log, job.name
            )
            if code != 0:
                break
    seconds = time.monotonic() - started
    if code == 0:
        outcome, exit_code = "ok", 0
    elif job.notice_exit is not None and code == job.notice_exit:
        outcome, exit_code = job.notice, code
    else:
        outcome, exit_code = "failed", 1
    ended = stamp()
    log.write(f"{ended} {job.name} end: {outcome} (exit {code}) after {seconds:.1f}s\n")
    summary = None
    if outcome == "failed":
        summary = (
            f"mlkit cron: {job.name} failed with exit {code} at {ended}: "
            f"{last_error or '(no output)'}; log: {log_path}"
        )
    return JobResult(job.name, exit_code, outcome, log_path, summary)


def _shown(args: tuple[str, ...]) -> str:
    return " ".join(shlex.quote(part) for part in ("mlkit", *args))


def _run_child(argv: list[str], env: dict[str, str], log: IO[str], job: str) -> tuple[int, str]:
    """The child's exit code (-N: killed by signal N) and its last error line (else its
    last line), every output line logged as it comes."""
    try:
        child: Any = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
    except OSError as exc:
        message = f"error: cannot start {argv[0]}: {exc.strerror}"
        _write(log, job, f"| {message}")
        return 127, message
    last_error = last_line = ""
    with child:
        for raw in child.stdout:
            line = raw.rstrip()
            _write(log, job, f"| {line}")
            if line.strip():
                last_line = line.strip()
                if last_line.startswith("error:"):
                    last_error = last_line
    code = child.returncode
    if code < 0:
        last_error = last_error or f"killed by signal {-code}"
    return code, last_error or last_line
