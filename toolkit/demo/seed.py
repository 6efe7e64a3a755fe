"""Fill a database with a reproducible demo world and the truth it was sampled from.

A new world ends at the start of the clock's current day, so every window counting back from
now finds it and runs on the same day give the same rows; a given `start` pins it anywhere.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import schema
from ..clock import utcnow
from ..db import (
    analyze,
    bulk_insert,
    dialect_name,
    init_schema,
    prepare_bulk_transaction,
    refresh_kpi,
    sync_sequences,
)
from ..errors import MlkitError
from .fence import Fence, describe, record_period
from .params import FAMILIES, SHIFTS, DemoParams

# Which generator module serves which family; fraud and pricing share one ticketing world.
GENERATORS = {
    "fraud": "ticketing",
    "pricing": "ticketing",
    "signal": "market",
    "recommender": "shop",
}

ProgressCallback = Callable[[str, int, int | None], None]


@dataclass
class SeedResult:
    period: int
    seed: int
    start: datetime
    end: datetime
    families: tuple[str, ...]
    rows: dict[str, int] = field(default_factory=dict)
    generate_seconds: float = 0.0
    load_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.generate_seconds + self.load_seconds

    def as_dict(self) -> dict:
        return {
            "period": self.period,
            "seed": self.seed,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "families": list(self.families),
            "rows": self.rows,
            "orders_per_second": round(self.rows.get("orders", 0) / self.seconds)
            if self.seconds
            else None,
            "generate_seconds": round(self.generate_seconds, 2),
            "load_seconds": round(self.load_seconds, 2),
            "warnings": self.warnings,
        }


def parse_families(text: str | None) -> tuple[str, ...]:
    if not text:
        return FAMILIES
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [n for n in names if n not in FAMILIES]
    if unknown or not names:
        raise MlkitError(
            f"unknown family {unknown[0]!r}" if unknown else "no family given",
            hint=f"choose from {','.join(FAMILIES)}",
        )
    return names


def parse_shifts(items: list[str] | None) -> dict[str, float]:
    shifts: dict[str, float] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in SHIFTS:
            raise MlkitError(
                f"bad --shift {item!r}",
                hint="use NAME=FACTOR with NAME one of " + ", ".join(SHIFTS),
            )
        try:
            factor = float(value)
        except ValueError:
            raise MlkitError(f"bad --shift {item!r}: {value!r} is not a number") from None
        if not factor > 0:
            raise MlkitError(f"bad --shift {item!r}: the factor must be positive")
        shifts[name] = factor
    return shifts


def seed_demo(
    engine: Engine,
    *,
    orders: int | None = None,
    days: float = 90,
    seed: int = 42,
    families: tuple[str, ...] = FAMILIES,
    start: datetime | None = None,
    append: bool = False,
    replace: bool = False,
    shift: dict[str, float] | None = None,
    progress: ProgressCallback | None = None,
) -> SeedResult:
    """Generate one period of the demo world and load it in a single transaction; refuses a
    database holding rows no demo world wrote, and `replace` deletes only demo worlds' rows."""
    if days <= 0:
        raise MlkitError("--days must be positive")
    if orders is not None and orders < 100:
        raise MlkitError("--orders must be at least 100", hint="the demo needs some history")
    report = progress or (lambda label, done, total: None)
    init_schema(engine)
    with engine.connect() as conn:
        worlds = conn.execute(
            sa.select(schema.demo_worlds).order_by(schema.demo_worlds.c.run_id)
        ).all()
        fence = Fence(conn)
        foreign = fence.foreign_rows(conn)
    if append and not worlds:
        raise MlkitError("there is no demo world to append to", hint="run `mlkit demo seed` first")
    if not append and worlds and not replace:
        raise MlkitError(
            "the database already holds a demo world",
            hint="continue it with `mlkit demo seed --append --days D`, "
            "or start over with `--replace`",
        )
    if foreign:
        refuse_foreign_rows(engine, fence, foreign, remove=bool(replace and not append and worlds))
    params = _plan(worlds if append else [], orders, days, seed, families, start, shift or {})
    modules = {
        name: importlib.import_module(f".{name}", __package__)
        for name in dict.fromkeys(GENERATORS[f] for f in params.families)
    }

    result = SeedResult(params.period, params.seed, params.start, params.end, params.families)
    now = utcnow()
    if append and params.end > now:
        result.warnings.append(
            f"the appended period ends {params.end:%Y-%m-%d %H:%M} UTC, after now "
            f"({now:%Y-%m-%d %H:%M}): its later orders lie in the future, beyond every window "
            "until then (--as-of or MLKIT_NOW moves now)"
        )
    started = time.perf_counter()
    with engine.begin() as conn:
        if replace and not append:
            fence.remove(conn, everything=True)
        frames: dict = {}
        for name, module in modules.items():
            report(f"generate {name}", 0, 1)
            state = module.read_state(conn) if append else None
            frames.update(module.generate(params, state))
            report(f"generate {name}", 1, 1)
        result.generate_seconds = time.perf_counter() - started

        loading = time.perf_counter()
        result.rows = _load(conn, frames, report)
        _record_world(conn, params, frames, result.rows)
    _after_load(engine, result.rows)
    result.load_seconds = time.perf_counter() - loading
    return result


def seed_with_consent(
    engine: Engine,
    *,
    append: bool,
    replace: bool,
    confirm_replace: Callable[[str], None],
    **options,
) -> SeedResult:
    """`mlkit demo seed`: `seed_demo` with `options`, after `confirm_replace` (which raises
    to refuse) agreed to delete the demo world a `replace` finds."""
    if replace and not append:
        periods, _ = demo_database_state(engine)
        if periods:
            confirm_replace(
                f"--replace deletes the demo world ({periods} period(s)) of this database"
            )
    return seed_demo(engine, append=append, replace=replace, **options)


def _load(conn: sa.Connection, frames: dict, report: ProgressCallback) -> dict[str, int]:
    """Bulk-insert every frame in foreign-key order; the rows loaded per table."""
    rows: dict[str, int] = {}
    prepare_bulk_transaction(conn)
    for table in schema.metadata.sorted_tables:
        frame = frames.get(table.name)
        if frame is None or frame.empty:
            continue
        done = 0

        def advance(n: int, label: str = f"load {table.name}", total: int = len(frame)):
            nonlocal done
            done += n
            report(label, done, total)

        try:
            rows[table.name] = bulk_insert(conn, table, frame, on_rows=advance)
        except Exception as exc:
            if not _is_integrity_error(exc):
                raise
            raise MlkitError(
                f"demo rows collide with rows already in {table.name}: "
                f"{str(exc).strip().splitlines()[0]}",
                hint="nothing was loaded; seed into an empty database "
                "(--database sqlite:///demo.db)",
            ) from None
    sync_sequences(conn, [schema.metadata.tables[name] for name in rows])
    return rows


def _record_world(conn: sa.Connection, params: DemoParams, frames: dict, rows: dict) -> None:
    """The period's row in demo_worlds and its id ranges in the fence."""
    bars = record_period(conn, params.period, frames)
    conn.execute(
        schema.demo_worlds.insert().values(
            run_id=params.period,
            seed=params.seed,
            families=",".join(params.families),
            start_ts=params.start,
            end_ts=params.end,
            orders=rows.get("orders", 0),
            params={
                "orders": params.orders,
                "days": params.days,
                "world_orders": params.world_orders,
                "shift": params.shift,
                "bars": bars,
            },
            created_at=utcnow(),
        )
    )


def demo_database_state(engine: Engine) -> tuple[int, dict[str, int]]:
    """The recorded demo periods of a database and its rows per table no demo world wrote."""
    init_schema(engine)
    with engine.connect() as conn:
        fence = Fence(conn)
        return fence.worlds, fence.foreign_rows(conn)


def require_own_database(engine: Engine) -> int:
    """The recorded demo periods of a database, or an error when it holds rows no demo
    world wrote (then nothing is changed)."""
    init_schema(engine)
    with engine.connect() as conn:
        fence = Fence(conn)
        foreign = fence.foreign_rows(conn)
    if foreign:
        refuse_foreign_rows(engine, fence, foreign)
    return fence.worlds


def refuse_foreign_rows(
    engine: Engine, fence: Fence, foreign: dict[str, int], *, remove: bool = False
) -> None:
    """Raise the error for a database holding rows no demo world wrote, after deleting the
    recorded demo worlds when `remove` (what `demo seed --replace` asked for)."""
    hint = (
        "mlkit seeds demo data only into a database of its own: point --database (or "
        "MLKIT_DATABASE_URL) at an empty one, e.g. sqlite:///demo.db"
    )
    if not remove:
        raise MlkitError(
            f"the database holds rows no demo world wrote ({describe(foreign)}); "
            "nothing was changed",
            hint=hint,
        )
    with engine.begin() as conn:
        removed = fence.remove(conn)
    refresh_kpi(engine)
    raise MlkitError(
        f"deleted the demo world ({removed:,} rows) but seeded no new one: the database holds "
        f"rows no demo world wrote ({describe(foreign)}), left as they were",
        hint=hint,
    )


def _is_integrity_error(exc: BaseException) -> bool:
    """A unique or foreign-key violation, from SQLAlchemy or straight from a driver's COPY."""
    return any(cls.__name__ == "IntegrityError" for cls in type(exc).__mro__)


def default_start(days: float) -> datetime:
    """The first moment of a world of `days` that ends at the start of the clock's day."""
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days)


def _plan(
    worlds: list,
    orders: int | None,
    days: float,
    seed: int,
    families: tuple[str, ...],
    start: datetime | None,
    shift: dict[str, float],
) -> DemoParams:
    """The parameters of the next period: a fresh world, or the continuation of the last one."""
    if not worlds:
        n = orders if orders is not None else 100_000
        return DemoParams(
            seed=seed,
            orders=round(n * shift.get("volume", 1.0)),
            days=days,
            start=(start or default_start(days)).replace(microsecond=0),
            families=families,
            shift=shift,
            period=0,
            world_orders=n,
        )
    first, last = worlds[0], worlds[-1]
    world_days = (first.end_ts - first.start_ts).total_seconds() / 86400
    world_orders = int(first.params["world_orders"])
    # Continue at the world's own pace unless told otherwise.
    n = orders if orders is not None else max(100, round(world_orders * days / world_days))
    return DemoParams(
        seed=int(first.seed),
        orders=round(n * shift.get("volume", 1.0)),
        days=days,
        start=last.end_ts,  # periods are half-open: [start, end)
        families=tuple(first.families.split(",")),
        shift=shift,
        period=int(last.run_id) + 1,
        world_orders=world_orders,
    )


def _after_load(engine: Engine, rows: dict[str, int]) -> None:
    """Fresh planner statistics and KPIs, so the first queries on the new data are fast."""
    dialect = dialect_name(engine)
    if dialect == "postgresql":
        analyze(engine, list(rows))
    elif dialect == "sqlite":
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    refresh_kpi(engine)
