"""A simulated fortnight of unattended operation, shared by tests/test_operation.py and
benchmarks/bench_operation.py.

Day 0 seeds a demo world ending at midnight and trains every family. The crontab block of
`mlkit cron show --install` goes into a file-backed crontab. Then, for each simulated day,
one day of orders is appended (`demo seed --append --days 1`, with a price shift on the
shift day only) and every job due the following day runs by executing its crontab line
itself with `sh -c`, under an environment as bare as cron's (`env -i` with HOME, PATH,
SHELL) plus the clock, MLKIT_NOW, set to the moment the job is due; jobs due at the same
minute start together, as cron starts them. A job due many times a day runs once, at its
last due moment before noon: after the night's batch jobs.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from conftest import FAKE_CRONTAB

# Exit code of `drift check` and `alerts check` when something drifted or fires.
ALERTING = 3
NOON = 12 * 60


# ---------------------------------------------------------------- cron schedules


def _field_values(text: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if body == "*":
            first, last = low, high
        elif "-" in body:
            first, last = (int(v) for v in body.split("-"))
        else:
            first = int(body)
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    return values


def due_moments(schedule: str, day: datetime) -> list[datetime]:
    """The moments of `day` (a midnight) at which a five-field crontab schedule fires."""
    minute, hour, dom, month, dow = schedule.split()
    if day.month not in _field_values(month, 1, 12):
        return []
    days_of_month = _field_values(dom, 1, 31)
    weekdays = {d % 7 for d in _field_values(dow, 0, 7)}
    cron_weekday = (day.weekday() + 1) % 7  # cron: 0 is Sunday
    if dom != "*" and dow != "*":  # cron's rule: either restricted field may match
        runs_today = day.day in days_of_month or cron_weekday in weekdays
    else:
        runs_today = day.day in days_of_month and cron_weekday in weekdays
    if not runs_today:
        return []
    return [
        day + timedelta(hours=h, minutes=m)
        for h in sorted(_field_values(hour, 0, 23))
        for m in sorted(_field_values(minute, 0, 59))
    ]


@dataclass(frozen=True)
class CronLine:
    name: str
    schedule: str
    command: str  # as cron hands it to the shell: `\%` is a literal %

    def run_time(self, day: datetime) -> datetime | None:
        moments = due_moments(self.schedule, day)
        if not moments:
            return None
        before_noon = [m for m in moments if m < day + timedelta(minutes=NOON)]
        return (before_noon or moments)[-1] if len(moments) > 1 else moments[0]


def read_crontab(text: str) -> list[CronLine]:
    """The mlkit block's jobs: each `# name: comment` line names the schedule line below it."""
    lines, name = [], None
    for raw in text.splitlines():
        line = raw.strip()
        comment = re.match(r"#\s*([A-Za-z0-9_]+):", line)
        if comment:
            name = comment.group(1)
            continue
        if not line or line.startswith("#") or re.match(r"^[A-Z_]+=", line):
            continue
        fields = line.split(None, 5)
        schedule, command = " ".join(fields[:5]), fields[5].replace("\\%", "%")
        lines.append(CronLine(name or f"job{len(lines)}", schedule, command))
        name = None
    return lines


# ---------------------------------------------------------------- the simulation


@dataclass
class JobRun:
    day: int
    job: str
    at: datetime
    exit_code: int
    seconds: float
    stderr: str


@dataclass
class DayRecord:
    day: int
    orders_appended: int
    watermark: datetime | None = None
    orders_without_features: int = 0
    drifted_features: list[str] = field(default_factory=list)
    alerts_open: list[str] = field(default_factory=list)
    training_runs: dict[str, str] = field(default_factory=dict)  # model -> status
    prod_versions: dict[str, int] = field(default_factory=dict)


@dataclass
class Fortnight:
    """The simulated operation of one database; `run()` returns what happened per day."""

    url: str
    workdir: Path
    orders: int = 30_000
    world_days: int = 60
    days: int = 14
    shift_day: int = 10
    shift: str = "price=1.6"
    seed: int = 7
    start: datetime = datetime(2026, 3, 1)  # day 0's midnight: the seeded world ends here
    mlkit: list[str] = field(default_factory=lambda: _mlkit_command())
    runs: list[JobRun] = field(default_factory=list)
    records: list[DayRecord] = field(default_factory=list)
    setup_seconds: dict[str, float] = field(default_factory=dict)
    seeded_orders: int = 0

    # -- files and environment

    @property
    def config_path(self) -> Path:
        return self.workdir / "ops" / "mlkit.yaml"

    @property
    def logs_dir(self) -> Path:
        return self.workdir / "home" / "logs"

    @property
    def crontab_file(self) -> Path:
        return self.workdir / "crontab.txt"

    def bare_env(self, now: datetime, **extra: str) -> dict[str, str]:
        """What cron gives a job (HOME, PATH, SHELL) plus the simulated clock."""
        return {
            "HOME": str(self.workdir / "user"),
            "PATH": "/usr/bin:/bin",
            "SHELL": "/bin/sh",
            "MLKIT_NOW": now.isoformat(),
            **extra,
        }

    def operator_env(self, now: datetime) -> dict[str, str]:
        """The shell the operator installs from: the database comes from a variable that
        the config file reads, as the platforms' DB_* do."""
        return self.bare_env(
            now,
            PATH=os.environ.get("PATH", "/usr/bin:/bin"),
            OPS_DATABASE_URL=self.url,
            MLKIT_CRONTAB_CMD=f"{shlex.quote(sys.executable)} {self.workdir / 'crontab.py'}",
            FAKE_CRONTAB_FILE=str(self.crontab_file),
        )

    def write_config(self) -> None:
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        (self.workdir / "user").mkdir(exist_ok=True)
        (self.workdir / "crontab.py").write_text(FAKE_CRONTAB)
        self.config_path.write_text(
            "database:\n"
            "  url: ${OPS_DATABASE_URL:-}\n"
            "redis:\n"
            "  enabled: false\n"
            "paths:\n"
            f"  home: {self.workdir / 'home'}\n"
            "retention:\n"
            "  older_than: 45d\n"
            # A signal model its gate keeps from prod is retrained a week later, not the
            # next day: on a world this small the gate keeps each symbol's CatBoost model a
            # candidate, and daily retraining was half of every simulated day's job time.
            "signal:\n"
            "  retrain_after_rejection: 7d\n"
        )

    def mlkit_cmd(self, *args: str, now: datetime, check: bool = True) -> dict | str:
        """One operator command (not a cron line), JSON parsed when asked for."""
        started = time.perf_counter()
        result = subprocess.run(
            [*self.mlkit, "--config", str(self.config_path), *args],
            env=self.operator_env(now),
            capture_output=True,
            text=True,
        )
        self.setup_seconds[args[0] + " " + args[1]] = round(time.perf_counter() - started, 1)
        if check and result.returncode != 0:
            raise AssertionError(
                f"mlkit {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}"
            )
        return json.loads(result.stdout) if "--json" in args else result.stdout

    # -- the days

    def setup(self) -> list[CronLine]:
        self.write_config()
        now = self.start
        self.mlkit_cmd("db", "init", now=now)
        seeded = self.mlkit_cmd(
            "demo",
            "seed",
            "--orders",
            str(self.orders),
            "--days",
            str(self.world_days),
            "--seed",
            str(self.seed),
            "--json",
            now=now,
        )
        self.seeded_orders += seeded["rows"]["orders"]
        # XGBoost, or where its gate cannot tell it from logreg on a world this small (exit 1,
        # rejected), the logreg baseline as the fallback: either way a fraud model serves.
        self.mlkit_cmd("train", "fraud", "--alias", "prod", now=now, check=False)
        self.mlkit_cmd("models", "show", "fraud@prod", "--json", now=now)
        self.mlkit_cmd("train", "recommender", "--json", now=now)
        self.mlkit_cmd("train", "mab", "--json", now=now)
        self.mlkit_cmd("cron", "show", "--install", now=now)
        return read_crontab(self.crontab_file.read_text())

    def run_day(self, day: int, lines: list[CronLine], on_job=None) -> DayRecord:
        appended_until = self.start + timedelta(days=day)
        args = ["demo", "seed", "--append", "--days", "1", "--json"]
        if day == self.shift_day:
            args += ["--shift", self.shift]
        appended = self.mlkit_cmd(*args, now=appended_until)
        self.seeded_orders += appended["rows"]["orders"]
        record = DayRecord(day, appended["rows"]["orders"])
        due = sorted(
            ((moment, line) for line in lines if (moment := line.run_time(appended_until))),
            key=lambda pair: pair[0],
        )
        # Jobs due at the same minute start together, as cron starts them.
        for moment, group in itertools.groupby(due, key=lambda pair: pair[0]):
            batch = [line for _, line in group]
            started = time.perf_counter()
            command = ["env", "-i", *(f"{k}={v}" for k, v in self.bare_env(moment).items())]
            children = [
                subprocess.Popen(
                    [*command, "sh", "-c", line.command],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for line in batch
            ]
            for line, child in zip(batch, children, strict=True):
                _, stderr = child.communicate()
                run = JobRun(
                    day,
                    line.name,
                    moment,
                    child.returncode,
                    time.perf_counter() - started,
                    stderr.strip(),
                )
                self.runs.append(run)
                if on_job:
                    on_job(run)
        self.observe(record)
        self.records.append(record)
        return record

    def observe(self, record: DayRecord) -> None:
        """What the database says after the day's jobs."""
        import sqlalchemy as sa

        from mlkit.toolkit import schema as s
        from mlkit.toolkit.db import make_engine

        day_start = self.start + timedelta(days=record.day)
        engine = make_engine(self.url)
        try:
            with engine.connect() as conn:
                record.watermark = conn.execute(
                    sa.select(s.etl_watermarks.c.watermark).where(
                        s.etl_watermarks.c.job == "fraud_features"
                    )
                ).scalar()
                f = s.fraud_features
                record.orders_without_features = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(s.orders.outerjoin(f, f.c.order_id == s.orders.c.order_id))
                    .where(f.c.order_id.is_(None))
                ).scalar_one()
                check = conn.execute(
                    sa.select(s.drift_checks.c.check_id)
                    .where(s.drift_checks.c.checked_at >= day_start)
                    .order_by(s.drift_checks.c.check_id.desc())
                    .limit(1)
                ).scalar()
                if check is not None:
                    record.drifted_features = list(
                        conn.execute(
                            sa.select(s.drift_results.c.feature).where(
                                s.drift_results.c.check_id == check,
                                s.drift_results.c.drifted.is_(True),
                            )
                        ).scalars()
                    )
                record.alerts_open = sorted(
                    conn.execute(
                        sa.select(s.alerts.c.rule).where(s.alerts.c.status == "firing")
                    ).scalars()
                )
                t = s.training_runs
                record.training_runs = {
                    row.model_name: row.status
                    for row in conn.execute(
                        sa.select(t.c.model_name, t.c.status)
                        .where(t.c.started_at >= day_start)
                        .order_by(t.c.run_id)
                    )
                }
                record.prod_versions = {
                    row.name: row.version
                    for row in conn.execute(
                        sa.select(s.model_aliases.c.name, s.model_aliases.c.version).where(
                            s.model_aliases.c.alias == "prod"
                        )
                    )
                }
        finally:
            engine.dispose()

    def reconcile(self) -> dict[str, int]:
        """Orders and their archive against everything ever seeded (the demo truth keeps
        one row per order placed, archived or not)."""
        import sqlalchemy as sa

        from mlkit.toolkit import schema as s
        from mlkit.toolkit.db import make_engine

        engine = make_engine(self.url)
        try:
            with engine.connect() as conn:

                def ids(table) -> tuple[int, int]:
                    count, total = conn.execute(
                        sa.select(sa.func.count(), sa.func.sum(table.c.order_id))
                    ).one()
                    return int(count), int(total or 0)

                live, archived, truth = (
                    ids(s.orders),
                    ids(s.orders_archive),
                    ids(s.demo_truth_orders),
                )
                overlap = conn.execute(
                    sa.select(sa.func.count()).select_from(
                        s.orders.join(
                            s.orders_archive, s.orders_archive.c.order_id == s.orders.c.order_id
                        )
                    )
                ).scalar_one()
        finally:
            engine.dispose()
        return {
            "orders": live[0],
            "orders_archive": archived[0],
            "truth_orders": truth[0],
            "seeded_orders": self.seeded_orders,
            "in_both": int(overlap),
            "order_id_sum": live[1] + archived[1],
            "truth_order_id_sum": truth[1],
        }

    def run(self, on_job=None, on_day=None) -> Fortnight:
        lines = self.setup()
        for day in range(1, self.days + 1):
            record = self.run_day(day, lines, on_job)
            if on_day:
                on_day(record)
        return self


def _mlkit_command() -> list[str]:
    """The installed `mlkit` beside this Python (absolute, as cron needs it)."""
    candidate = Path(sys.executable).with_name("mlkit")
    if candidate.exists():
        return [str(candidate)]
    return [sys.executable, "-m", "mlkit.commands.main"]
